//! Decommissioning on the real control plane: stopped and closed at once, data kept until the
//! deadline, reactivation restoring the same volumes, then a verified purge; and an accidental
//! (foreground) deletion of the Tenant that deletes no claim before its deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn tenant(name: &str, retention: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "data", "allowFrom": ["dmz"]}],
            "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "tls": {"dnsNames": [format!("{name}.example")]},
            "backup": {"schedule": "0 2 * * *",
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": format!("{name}-s3")}},
            "lifecycle": {"retention": retention}
        }
    }))
    .unwrap()
}

async fn set_state(tenants: &Api<Tenant>, name: &str, state: &str) -> Result<()> {
    tenants
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"lifecycle": {"state": state}}})),
        )
        .await?;
    Ok(())
}

async fn replicas(client: &kube::Client, namespace: &str) -> Result<(i32, i32)> {
    let d = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get("web")
        .await?;
    Ok((
        d.spec.and_then(|s| s.replicas).unwrap_or_default(),
        d.status
            .and_then(|s| s.available_replicas)
            .unwrap_or_default(),
    ))
}

/// True when the zone's ingress admits anything from outside the tenant.
async fn faces_internet(client: &kube::Client, namespace: &str) -> Result<bool> {
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(policies.items.iter().any(|p| {
        p.spec
            .iter()
            .flat_map(|s| s.ingress.iter().flatten())
            .flat_map(|r| r.from.iter().flatten())
            .any(|peer| {
                peer.ip_block.is_some()
                    || peer.namespace_selector.as_ref().is_some_and(|s| {
                        s.match_labels
                            .as_ref()
                            .is_some_and(|l| l.contains_key("kubernetes.io/metadata.name"))
                    })
            })
    }))
}

#[tokio::test]
async fn decommission_stops_at_once_keeps_data_and_purges_verified_after_the_deadline() -> Result<()>
{
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(&PostParams::default(), &tenant("life", "40s"))
        .await?;
    eventually("web at N+1", WAIT, || async {
        Ok((replicas(&client, "life-dmz").await.ok() == Some((2, 2))).then_some(()))
    })
    .await?;
    assert!(faces_internet(&client, "life-dmz").await?);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "life-data");
    let claim_uid = eventually("db claim", WAIT, || async {
        Ok(claims.get_opt("db").await?.and_then(|c| c.metadata.uid))
    })
    .await?;
    eventually("CA and key", WAIT, || async {
        let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
        Ok(secrets.get_opt("enclave-ca-life").await?.map(|_| ()))
    })
    .await?;

    // Decommissioned: stopped and closed at once, data kept, a deadline in status.
    set_state(&tenants, "life", "Decommissioned").await?;
    let status = eventually("stopped and closed", WAIT, || async {
        let status = tenants.get("life").await?.status.unwrap_or_default();
        let stopped = replicas(&client, "life-dmz").await? == (0, 0);
        let closed = !faces_internet(&client, "life-dmz").await?;
        Ok((stopped && closed && status.phase == Some(Phase::Decommissioning)).then_some(status))
    })
    .await?;
    let since = status.decommissioned_at.context("decommissionedAt")?.0;
    let deadline = status.purge_after.context("purgeAfter")?.0;
    assert_eq!(deadline.as_second() - since.as_second(), 40);
    assert_eq!(
        claims.get("db").await?.metadata.uid.as_ref(),
        Some(&claim_uid),
        "the volume is kept"
    );

    // Back to Active before the deadline: the same volume, the workloads again.
    set_state(&tenants, "life", "Active").await?;
    eventually("running again", WAIT, || async {
        let status = tenants.get("life").await?.status.unwrap_or_default();
        let running = replicas(&client, "life-dmz").await? == (2, 2);
        Ok(
            (running && status.purge_after.is_none() && status.decommissioned_at.is_none())
                .then_some(()),
        )
    })
    .await?;
    assert!(faces_internet(&client, "life-dmz").await?);
    assert_eq!(
        claims.get("db").await?.metadata.uid.as_ref(),
        Some(&claim_uid)
    );

    // Decommissioned again, left past the deadline: purged, and the purge verified.
    set_state(&tenants, "life", "Decommissioned").await?;
    let deadline = eventually("a new deadline", WAIT, || async {
        let status = tenants.get("life").await?.status.unwrap_or_default();
        Ok(status.purge_after.map(|t| t.0))
    })
    .await?;
    // Until then, every namespace and the claim stand.
    while Timestamp::now() < deadline.checked_sub(Duration::from_secs(3))? {
        assert!(
            claims.get_opt("db").await?.is_some(),
            "claim deleted before its deadline"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let purged = eventually("purged", Duration::from_secs(120), || async {
        let status = tenants.get("life").await?.status.unwrap_or_default();
        Ok((status.phase == Some(Phase::Purged)).then_some(status))
    })
    .await?;
    assert!(purged.purged_at.is_some_and(|t| t.0 >= deadline));
    let namespaces = Api::<Namespace>::all(client.clone());
    for zone in ["dmz", "data"] {
        let ns = namespaces.get_opt(&format!("life-{zone}")).await?;
        assert!(ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some()));
    }
    let uid = tenants.get("life").await?.metadata.uid.context("uid")?;
    let left = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .list(&ListParams::default().labels(&format!("enclave.dev/tenant-uid={uid}")))
        .await?;
    assert!(left.items.is_empty(), "keys and CA destroyed");
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("involvedObject.name=life"))
        .await?;
    for reason in ["RepositoryPurged", "PurgeVerified"] {
        assert!(
            events
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason)),
            "an Event {reason}: the backups, then everything, purged and verified"
        );
    }
    Ok(())
}

#[tokio::test]
async fn accidental_foreground_deletion_deletes_no_claim_before_the_deadline() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(&PostParams::default(), &tenant("oops", "30s"))
        .await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "oops-data");
    eventually("db claim", WAIT, || async {
        Ok(claims.get_opt("db").await?)
    })
    .await?;
    eventually("web at N+1", WAIT, || async {
        Ok((replicas(&client, "oops-dmz").await.ok() == Some((2, 2))).then_some(()))
    })
    .await?;

    // The worst deletion: foreground, which has the garbage collector delete dependents first.
    tenants.delete("oops", &DeleteParams::foreground()).await?;
    let deadline = eventually("a deadline", WAIT, || async {
        let t = tenants.get_opt("oops").await?;
        Ok(t.and_then(|t| t.status?.purge_after).map(|t| t.0))
    })
    .await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    let mut stopped = false;
    while Timestamp::now() < deadline.checked_sub(Duration::from_secs(3))? {
        assert!(
            claims.get_opt("db").await?.is_some(),
            "a claim was deleted before the deadline"
        );
        for zone in ["dmz", "data"] {
            let ns = namespaces.get(&format!("oops-{zone}")).await?;
            assert!(
                ns.metadata.deletion_timestamp.is_none(),
                "namespace oops-{zone} deleted early"
            );
        }
        stopped |= replicas(&client, "oops-dmz").await.ok() == Some((0, 0));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(stopped, "the workloads were stopped at once");
    assert!(
        !faces_internet(&client, "oops-dmz").await?,
        "exposure closed"
    );
    // After the deadline: purged, verified, and the Tenant gone.
    eventually("tenant released", Duration::from_secs(120), || async {
        Ok(tenants.get_opt("oops").await?.is_none().then_some(()))
    })
    .await?;
    assert!(claims.get_opt("db").await?.is_none());
    Ok(())
}
