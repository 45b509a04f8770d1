//! A purge the tenant tries to stall, on the real control plane: while active, the tenant's
//! admin binds a claim of her own (no Enclave labels) to a volume that retains its data, and
//! puts a finalizer nobody will ever remove on a ConfigMap. Decommissioned with a short
//! retention, the tenant keeps everything until its deadline; after it, the purge switches both
//! volumes to `Delete`, removes the foreign finalizer once the namespace has been terminating
//! past the grace period (a Warning Event naming the ConfigMap), and ends verified: `Purged`.

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const TENANT: &str = "stall";
const NAMESPACE: &str = "stall-data";
const ADMINS: &str = "stall-admins";
/// The class the operator makes for the tenant's volume (3 replicas, encrypted); it retains.
const CLASS: &str = "enclave-default-r3-encrypted";
/// The operator's claim (`spec.volumes[0]`) and the volume made for it.
const MANAGED_CLAIM: &str = "db";
const MANAGED_PV: &str = "pv-stall-db";
/// Alice's own claim and the volume made for it.
const OWN_CLAIM: &str = "mine";
const OWN_PV: &str = "pv-stall-mine";
/// Alice's ConfigMap and the finalizer she puts on it, which no controller ever removes.
const HELD: &str = "held";
const HOLD: &str = "example.com/hold";
/// How long after the deadline the purge must be verified: the 60 s grace period before the
/// purge removes foreign finalizers, and time for the namespace controller and the purge's
/// verification around it.
const PURGE_WITHIN: Duration = Duration::from_secs(180);

fn tenant() -> Result<Tenant> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": TENANT},
        "spec": {
            "zones": [{"name": "data", "ports": [{"port": 5432}]}],
            "access": {"admins": [{"kind": "Group", "name": ADMINS}]},
            "volumes": [{"name": MANAGED_CLAIM, "zone": "data", "size": "1Gi"}],
            "lifecycle": {"retention": "20s"}
        }
    }))?)
}

/// A volume bound in advance to `NAMESPACE/claim` that retains its data, as an administrator
/// (or a static provisioner) would make it: the controller-manager's binder binds the claim to
/// it. Tenants cannot create volumes; the cluster admin does.
async fn pre_bound_volume(client: &Client, name: &str, claim: &str) -> Result<()> {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": CLASS,
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": "driver.longhorn.io", "volumeHandle": name},
            "claimRef": {"namespace": NAMESPACE, "name": claim}
        }
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(())
}

fn reclaim_policy(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
}

fn pv_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Seconds from `deadline` to `at`, for the timings printed.
fn after(deadline: Timestamp, at: Option<Timestamp>) -> String {
    at.map_or_else(
        || "never seen".into(),
        |t| {
            format!(
                "{t} (deadline {:+.1}s)",
                t.duration_since(deadline).as_secs_f64()
            )
        },
    )
}

/// What the test saw of the purge, polling once a second.
#[derive(Default)]
struct Seen {
    namespace_terminating: Option<Timestamp>,
    config_map_terminating: Option<Timestamp>,
    namespace_gone: Option<Timestamp>,
    /// When each volume was first seen switched to `Delete`.
    switched: BTreeMap<&'static str, Timestamp>,
    /// When the test, standing in for the storage driver, deleted each volume.
    deleted: BTreeMap<&'static str, Timestamp>,
    /// Volumes found gone without the test deleting them.
    vanished: Vec<&'static str>,
}

impl Seen {
    /// One look at the namespace, the ConfigMap and the volumes. kwok runs no storage driver:
    /// a volume switched to `Delete` whose claim is gone (`Released`, or `Failed` once the
    /// controller-manager finds no in-tree deleter for a CSI volume) would stay forever, still
    /// naming its claim in the tenant's namespace, and the purge's verification would wait on
    /// it. The test deletes such a volume, as the driver would once it has erased the data; it
    /// deletes only volumes the operator switched to `Delete` and never a bound one, for both
    /// the operator's volume and alice's.
    async fn look(&mut self, client: &Client) -> Result<()> {
        let now = Timestamp::now();
        match Api::<Namespace>::all(client.clone())
            .get_opt(NAMESPACE)
            .await?
        {
            None => {
                self.namespace_gone.get_or_insert(now);
            }
            Some(ns) => {
                if ns.metadata.deletion_timestamp.is_some() {
                    self.namespace_terminating.get_or_insert(now);
                }
                let held = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
                    .get_opt(HELD)
                    .await?;
                if held.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
                    self.config_map_terminating.get_or_insert(now);
                }
            }
        }
        let volumes = Api::<PersistentVolume>::all(client.clone());
        for name in [MANAGED_PV, OWN_PV] {
            let Some(pv) = volumes.get_opt(name).await? else {
                if !self.deleted.contains_key(name) && !self.vanished.contains(&name) {
                    self.vanished.push(name);
                }
                continue;
            };
            if reclaim_policy(&pv) != Some("Delete") {
                continue;
            }
            self.switched.entry(name).or_insert(now);
            let released = matches!(pv_phase(&pv), Some("Released" | "Failed"));
            if released && pv.metadata.deletion_timestamp.is_none() {
                volumes.delete(name, &DeleteParams::default()).await?;
                self.deleted.entry(name).or_insert(now);
            }
        }
        Ok(())
    }
}

/// What an operator would look at when a purge does not end: the Tenant's status and Events,
/// the namespaces, the tenant namespace's conditions and the volumes.
async fn report(client: &Client) {
    if let Ok(t) = Api::<Tenant>::all(client.clone()).get(TENANT).await {
        let status = t.status.unwrap_or_default();
        eprintln!(
            "Tenant {TENANT}: phase {:?}, purgeAfter {:?}, conditions:\n{}",
            status.phase,
            status.purge_after,
            serde_json::to_string_pretty(&status.conditions).unwrap_or_default()
        );
    }
    if let Ok(events) = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("involvedObject.name={TENANT}")))
        .await
    {
        eprintln!("Events on Tenant {TENANT}:");
        for e in events.items {
            eprintln!(
                "  {} {} x{}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.count.unwrap_or(1),
                e.message.unwrap_or_default()
            );
        }
    }
    for args in [
        &["get", "ns"][..],
        &["get", "ns", NAMESPACE, "-o", "jsonpath={.status}"],
        &["get", "pv", "-o", "wide"],
        &["get", "all,cm,pvc", "-n", NAMESPACE],
    ] {
        if let Ok(out) = env().kubectl().args(args).output() {
            eprintln!(
                "kubectl {}:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[tokio::test]
async fn a_tenant_cannot_stall_its_purge() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants.create(&PostParams::default(), &tenant()?).await?;

    // Active: the operator's claim, its class (which retains) and alice's access.
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
    eventually("the db claim", WAIT, || async {
        Ok(claims.get_opt(MANAGED_CLAIM).await?)
    })
    .await?;
    let class = eventually("the storage class", WAIT, || async {
        Ok(Api::<StorageClass>::all(client.clone())
            .get_opt(CLASS)
            .await?)
    })
    .await?;
    assert_eq!(class.reclaim_policy.as_deref(), Some("Retain"));
    eventually("alice's admin binding", WAIT, || async {
        Ok(Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE)
            .get_opt("enclave-admins")
            .await?)
    })
    .await?;
    pre_bound_volume(&client, MANAGED_PV, MANAGED_CLAIM).await?;

    // Alice, tenant admin, tries each stall: a claim of her own on a class that retains, bound
    // to a volume that retains; and a ConfigMap held by a finalizer nobody removes.
    let alice = env().client_as("alice", &[ADMINS]).await?;
    let own: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": OWN_CLAIM},
        "spec": {
            "storageClassName": CLASS,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}
        }
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(alice.clone(), NAMESPACE)
        .create(&PostParams::default(), &own)
        .await
        .context("alice creates her own claim")?;
    pre_bound_volume(&client, OWN_PV, OWN_CLAIM).await?;
    let held: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": HELD, "finalizers": [HOLD]},
        "data": {"purpose": "hold the namespace's deletion"}
    }))?;
    Api::<ConfigMap>::namespaced(alice.clone(), NAMESPACE)
        .create(&PostParams::default(), &held)
        .await
        .context("alice creates a ConfigMap with a finalizer")?;
    let mut uids = BTreeMap::new();
    for (claim, volume) in [(MANAGED_CLAIM, MANAGED_PV), (OWN_CLAIM, OWN_PV)] {
        let uid = eventually(&format!("{claim} bound to {volume}"), WAIT, || async {
            let c = claims.get(claim).await?;
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                && c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(volume);
            Ok(bound.then_some(c.metadata.uid).flatten())
        })
        .await?;
        uids.insert(claim, uid);
    }

    // Decommissioned by the cluster admin: a deadline 20 s on.
    tenants
        .patch(
            TENANT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": {"state": "Decommissioned"}}})),
        )
        .await?;
    let status = eventually("decommissioning with a deadline", WAIT, || async {
        let status = tenants.get(TENANT).await?.status.unwrap_or_default();
        Ok(
            (status.phase == Some(Phase::Decommissioning) && status.purge_after.is_some())
                .then_some(status),
        )
    })
    .await?;
    let since = status.decommissioned_at.context("decommissionedAt")?.0;
    let deadline = status.purge_after.context("purgeAfter")?.0;
    assert_eq!(
        deadline.duration_since(since),
        SignedDuration::from_secs(20)
    );
    eprintln!("decommissioned at {since}, purge deadline {deadline}");

    // (a) Until the deadline nothing is deleted: the namespace, both claims, the ConfigMap,
    // both volumes still retaining.
    let namespaces = Api::<Namespace>::all(client.clone());
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE);
    let volumes = Api::<PersistentVolume>::all(client.clone());
    while Timestamp::now() < deadline.checked_sub(Duration::from_secs(3))? {
        let ns = namespaces.get(NAMESPACE).await?;
        assert!(
            ns.metadata.deletion_timestamp.is_none(),
            "namespace {NAMESPACE} deleted before the deadline"
        );
        for (claim, uid) in &uids {
            let c = claims.get_opt(claim).await?;
            assert!(
                c.is_some_and(|c| c.metadata.uid.as_ref() == Some(uid)
                    && c.metadata.deletion_timestamp.is_none()),
                "claim {claim} deleted before the deadline"
            );
        }
        let cm = config_maps.get(HELD).await?;
        assert!(cm.metadata.deletion_timestamp.is_none());
        for name in [MANAGED_PV, OWN_PV] {
            let pv = volumes.get(name).await?;
            assert_eq!(
                reclaim_policy(&pv),
                Some("Retain"),
                "volume {name} switched to Delete before the deadline"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // (b) After the deadline: verified and Purged, the stalls notwithstanding.
    let limit = deadline.checked_add(PURGE_WITHIN)?;
    let mut seen = Seen::default();
    let purged = loop {
        seen.look(&client).await?;
        let status = tenants.get(TENANT).await?.status.unwrap_or_default();
        if status.phase == Some(Phase::Purged) {
            break Some((Timestamp::now(), status));
        }
        if Timestamp::now() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("purge deadline:                 {deadline}");
    eprintln!(
        "namespace terminating seen:     {}",
        after(deadline, seen.namespace_terminating)
    );
    eprintln!(
        "ConfigMap held, terminating:    {}",
        after(deadline, seen.config_map_terminating)
    );
    for name in [MANAGED_PV, OWN_PV] {
        eprintln!(
            "{name} switched to Delete: {}; deleted by the test: {}",
            after(deadline, seen.switched.get(name).copied()),
            after(deadline, seen.deleted.get(name).copied())
        );
    }
    if !seen.vanished.is_empty() {
        eprintln!(
            "volumes gone without the test deleting them: {:?}",
            seen.vanished
        );
    }
    eprintln!(
        "namespace gone:                 {}",
        after(deadline, seen.namespace_gone)
    );
    eprintln!(
        "Purged seen:                    {}",
        after(deadline, purged.as_ref().map(|(t, _)| *t))
    );
    let Some((_, status)) = purged else {
        report(&client).await;
        anyhow::bail!(
            "the tenant was not Purged within {PURGE_WITHIN:?} of its deadline {deadline}"
        );
    };
    assert!(status.purged_at.is_some_and(|t| t.0 >= deadline));
    assert!(
        seen.namespace_gone.is_some() && namespaces.get_opt(NAMESPACE).await?.is_none(),
        "namespace {NAMESPACE} gone"
    );
    for name in [MANAGED_PV, OWN_PV] {
        // Switched to Delete (then deleted by the test as its driver), or deleted outright.
        assert!(
            seen.switched.contains_key(name) || seen.vanished.contains(&name),
            "volume {name} switched to Delete by the purge"
        );
        assert!(volumes.get_opt(name).await?.is_none(), "volume {name} gone");
    }
    // The switch of alice's volume is the operator's own write.
    if env().control_plane.is_some() {
        let writes = env()
            .operator_writes(|o| o["resource"] == "persistentvolumes" && o["name"] == OWN_PV)?;
        assert!(
            !writes.is_empty(),
            "the operator patched alice's volume {OWN_PV}"
        );
    }
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("involvedObject.name={TENANT}")))
        .await?;
    let held_name = format!("ConfigMap {NAMESPACE}/{HELD}");
    let removed = events.items.iter().find(|e| {
        e.reason.as_deref() == Some("FinalizersRemoved")
            && e.type_.as_deref() == Some("Warning")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains(&held_name) && m.contains(HOLD))
    });
    assert!(
        removed.is_some(),
        "a Warning Event FinalizersRemoved names {held_name} and {HOLD}"
    );
    if let Some(message) = removed.and_then(|e| e.message.as_deref()) {
        eprintln!("FinalizersRemoved: {message}");
    }
    let verified = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("PurgeVerified"));
    assert!(verified.is_some(), "an Event PurgeVerified");
    if let Some(message) = verified.and_then(|e| e.message.as_deref()) {
        eprintln!("PurgeVerified: {message}");
    }
    Ok(())
}

/// A delete the operator decided on one object (seen in a cache, listed a moment before) never
/// deletes another made under its name since: a tenant member who deletes a claim due for
/// purge and makes a new one of the same name keeps the new one.
#[tokio::test]
async fn a_delete_decided_on_one_object_spares_the_one_made_under_its_name_since() -> Result<()> {
    use enclave_operator::cluster::Note;
    use k8s_openapi::api::core::v1::ConfigMap;
    let client = env().client().await?;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let map = |data: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(
            json!({"metadata": {"name": "renamed"}, "data": {"v": data}}),
        )?)
    };
    let first = maps.create(&PostParams::default(), &map("first")?).await?;
    let seen = first.metadata.uid.clone().context("uid")?;
    maps.delete("renamed", &DeleteParams::default()).await?;
    maps.create(&PostParams::default(), &map("second")?).await?;

    let gateway = gateway(&client);
    let writer = gateway.writer(enclave_operator::error::Phase::Sweep, None);
    let resource = kube::api::ApiResource::erase::<ConfigMap>(&());
    let note = || Note::normal("Deleted", "Delete", "test".into());
    writer
        .remove(&resource, Some("default"), "renamed", Some(&seen), note())
        .await?;
    let kept = maps.get("renamed").await?;
    assert_eq!(
        kept.data.unwrap_or_default().get("v").map(String::as_str),
        Some("second"),
        "the object made since is kept"
    );
    // The object seen is the one there: deleted.
    let now = kept.metadata.uid.clone().context("uid")?;
    writer
        .remove(&resource, Some("default"), "renamed", Some(&now), note())
        .await?;
    let gone = maps.get_opt("renamed").await?;
    assert!(
        gone.is_none_or(|m| m.metadata.deletion_timestamp.is_some()),
        "deleted"
    );
    Ok(())
}

/// The apply's twin of the test above: an object compared against (from a cache that lags,
/// say) and since deleted and made again under its name by someone else, without Enclave's
/// labels, is not written to: the write names the uid it was decided on.
#[tokio::test]
async fn an_apply_decided_on_one_object_spares_the_one_made_under_its_name_since() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let client = env().client().await?;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let managed = json!({"app.kubernetes.io/managed-by": "enclave-operator"});
    let first: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "reapplied",
        "labels": managed}, "data": {"v": "first"}}))?;
    let seen = maps.create(&PostParams::default(), &first).await?;
    maps.delete("reapplied", &DeleteParams::default()).await?;
    let theirs: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "reapplied"}, "data": {"v": "theirs"}}),
    )?;
    maps.create(&PostParams::default(), &theirs).await?;

    let gateway = gateway(&client);
    let writer = gateway.writer(enclave_operator::error::Phase::Apply, None);
    let desired: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "reapplied",
        "namespace": "default", "labels": managed}, "data": {"v": "ours"}}))?;
    let refused = writer
        .apply(&desired, Some(&seen))
        .await
        .expect_err("the object seen is gone: nothing is written");
    assert!(refused.is_conflict(), "{refused}");
    let kept = maps.get("reapplied").await?;
    assert_eq!(
        kept.data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(String::as_str),
        Some("theirs"),
        "the object made since is left as it was"
    );
    assert!(
        !kept.labels().contains_key("app.kubernetes.io/managed-by"),
        "and not adopted"
    );
    // Compared against the object that is there, it is refused as someone else's.
    let now = writer.apply(&desired, Some(&kept)).await;
    assert!(
        matches!(now, Err(enclave_operator::error::Error::Foreign { .. })),
        "{now:?}"
    );
    maps.delete("reapplied", &DeleteParams::default()).await?;
    Ok(())
}

/// The operator's gateway, for a test that drives one write as the operator would.
fn gateway(client: &Client) -> enclave_operator::cluster::Gateway {
    enclave_operator::cluster::Gateway::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "enclave-test".into(),
            instance: None,
        },
        std::sync::Arc::default(),
    )
}
