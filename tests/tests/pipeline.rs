//! The reconcile pipeline's promises on the real control plane: what a tenant stops declaring
//! goes, and only that (the CA, certificate and bundles of a removed `spec.tls`; the CronJobs,
//! service accounts, CA ConfigMaps and egress policies of a removed `spec.backup`, its password
//! staying; a removed workload's Deployment, budget and Service); a removed zone's namespace,
//! claim and key stay until the retention deadline, then go; a reduced tenant costs no write at
//! rest; and the Events about the objects applied name their real API version, and the object
//! by namespace and name.
//!
//! Every object is counted by an inventory of everything labelled with the tenant's uid, of
//! every kind the operator makes, so each step asserts the exact difference, not only that the
//! expected objects went. The steps of the removal test run to the end even when one fails, and
//! the test then reports every broken promise at once.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result, bail, ensure};
use chrono::Timelike as _;
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, LimitRange, Namespace, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long the operator has to make a tenant, or to carry out one edit.
const WAIT: Duration = Duration::from_secs(120);
/// How long a step's edit may take to show in the inventory.
const STEP_WAIT: Duration = Duration::from_secs(60);
/// The tenant whose spec is reduced step by step.
const TENANT: &str = "shrink";
/// Its `lifecycle.retention`.
const RETENTION: Duration = Duration::from_secs(30);
/// The tenant of the Events test.
const EVENTS_TENANT: &str = "evref";
/// The label tying an object to its tenant (README: "labelled with the tenant's uid").
const TENANT_UID: &str = "enclave.dev/tenant-uid";
/// The annotation of a zone namespace that left the spec.
const PURGE_AFTER: &str = "enclave.dev/purge-after";

/// Every kind the operator makes objects of, as the API server serves it.
fn managed_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Namespace>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<LimitRange>(&()),
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<CronJob>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
    ]
}

/// cert-manager's `Certificate`, which the operator keeps when `spec.tls.issuer` is set.
fn certificate_kind() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// One line of an inventory: `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
fn entry(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Everything labelled with the tenant's uid, cluster-wide, of every kind the operator makes
/// (cert-manager `Certificate`s too when that CRD is installed). An object being deleted counts
/// as gone.
async fn inventory(client: &Client, uid: &str) -> Result<BTreeSet<String>> {
    let mut kinds = managed_kinds();
    if Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt("certificates.cert-manager.io")
        .await?
        .is_some()
    {
        kinds.push(certificate_kind());
    }
    let params = ListParams::default().labels(&format!("{TENANT_UID}={uid}"));
    let mut found = BTreeSet::new();
    for kind in &kinds {
        let api = Api::<DynamicObject>::all_with(client.clone(), kind);
        for object in api.list_metadata(&params).await? {
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            found.insert(entry(
                &kind.kind,
                object.metadata.namespace.as_deref(),
                object.metadata.name.as_deref().unwrap_or_default(),
            ));
        }
    }
    Ok(found)
}

/// What differs between an inventory and the one expected, for a failure message.
fn difference(expected: &BTreeSet<String>, found: &BTreeSet<String>) -> String {
    let list = |set: Vec<&String>| {
        if set.is_empty() {
            "  (none)".to_string()
        } else {
            set.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    format!(
        "still there but should be gone, or made though never declared:\n{}\nexpected but missing:\n{}",
        list(found.difference(expected).collect()),
        list(expected.difference(found).collect()),
    )
}

/// Waits until the inventory is `expected`; then has the operator reconcile once more and checks
/// that it still is, so that a step is done and nothing else follows it.
async fn settles_to(client: &Client, uid: &str, expected: &BTreeSet<String>) -> Result<()> {
    let deadline = Instant::now() + STEP_WAIT;
    loop {
        let found = inventory(client, uid).await?;
        if &found == expected {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after {STEP_WAIT:?} the inventory differs:\n{}",
                difference(expected, &found)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env().reconcile_again(client, TENANT).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = inventory(client, uid).await?;
    ensure!(
        &found == expected,
        "the inventory changed again after another reconcile:\n{}",
        difference(expected, &found)
    );
    Ok(())
}

fn set(entries: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    entries.into_iter().collect()
}

fn namespace_of(zone: &str) -> String {
    format!("{TENANT}-{zone}")
}

/// What every zone has (README, "What the operator keeps today, per zone namespace"): the
/// namespace, the network zone's policies (every zone here serves a port, so each has an
/// ingress policy), the quota, the limits, the binding of `spec.access`, the TLS policy,
/// which is published with or without `spec.tls`, and the security options, which are
/// published with or without `spec.security`, and the compliance report.
fn zone_objects(zone: &str) -> BTreeSet<String> {
    let ns = namespace_of(zone);
    let ns = Some(ns.as_str());
    set([
        entry("Namespace", None, &namespace_of(zone)),
        entry("NetworkPolicy", ns, "enclave-default-deny"),
        entry("NetworkPolicy", ns, "enclave-ingress"),
        entry("NetworkPolicy", ns, "enclave-egress"),
        entry("ResourceQuota", ns, "enclave-quota"),
        entry("LimitRange", ns, "enclave-limits"),
        entry("RoleBinding", ns, "enclave-admins"),
        entry("ConfigMap", ns, "enclave-tls-policy"),
        entry("ConfigMap", ns, "enclave-security"),
        entry("ConfigMap", ns, "enclave-report"),
    ])
}

/// The built-in issuer's objects: the tenant's CA in the operator's namespace, the serving
/// certificate in the internet-facing zone (dmz), the CA bundle in every zone.
fn tls_objects(zones: &[&str]) -> BTreeSet<String> {
    let mut objects = set([
        entry(
            "Secret",
            Some(OPERATOR_NAMESPACE),
            &format!("enclave-ca-{TENANT}"),
        ),
        entry("Secret", Some(&namespace_of("dmz")), "enclave-tls"),
    ]);
    for zone in zones {
        objects.insert(entry(
            "ConfigMap",
            Some(&namespace_of(zone)),
            "enclave-ca-bundle",
        ));
    }
    objects
}

/// The backups of the zone holding volumes (data): the CronJob and the service account its
/// pods run as (both `enclave-backup`), the CA of the operator's endpoint, the pods' egress.
fn backup_objects() -> BTreeSet<String> {
    let ns = namespace_of("data");
    let ns = Some(ns.as_str());
    set([
        entry("CronJob", ns, "enclave-backup"),
        entry("ServiceAccount", ns, "enclave-backup"),
        entry("ConfigMap", ns, "enclave-operator-ca"),
        entry("NetworkPolicy", ns, "enclave-backup-egress"),
    ])
}

/// The repository password: it decrypts backups that outlive `spec.backup`, so it stays.
fn backup_password() -> String {
    entry(
        "Secret",
        Some(OPERATOR_NAMESPACE),
        &format!("enclave-backup-{TENANT}"),
    )
}

/// The volume `db` of the data zone: its claim, and its zone's key in the operator's namespace.
fn volume_objects() -> BTreeSet<String> {
    set([
        entry("PersistentVolumeClaim", Some(&namespace_of("data")), "db"),
        volume_key(),
    ])
}

fn volume_key() -> String {
    entry(
        "Secret",
        Some(OPERATOR_NAMESPACE),
        &format!("enclave-volume-key-{}", namespace_of("data")),
    )
}

/// A workload's Deployment, PodDisruptionBudget and Service (it has ports), named after it.
fn workload_objects(zone: &str, name: &str) -> BTreeSet<String> {
    let ns = namespace_of(zone);
    let ns = Some(ns.as_str());
    set([
        entry("Deployment", ns, name),
        entry("PodDisruptionBudget", ns, name),
        entry("Service", ns, name),
    ])
}

fn initial_inventory() -> BTreeSet<String> {
    let zones = ["dmz", "app", "data"];
    let mut all = BTreeSet::new();
    for zone in zones {
        all.extend(zone_objects(zone));
    }
    all.extend(tls_objects(&zones));
    all.extend(backup_objects());
    all.insert(backup_password());
    all.extend(volume_objects());
    all.extend(workload_objects("dmz", "web"));
    all.extend(workload_objects("app", "api"));
    all
}

/// Edits the tenant with a JSON patch, then checks that exactly `removed` goes: the inventory
/// before the edit, less `removed`, is what it settles to.
async fn removes_exactly(
    client: &Client,
    uid: &str,
    patch: Value,
    removed: &BTreeSet<String>,
) -> Result<()> {
    let before = inventory(client, uid).await?;
    let absent: Vec<&String> = removed.difference(&before).collect();
    ensure!(
        absent.is_empty(),
        "the step would remove what is not there: {absent:?}"
    );
    Api::<Tenant>::all(client.clone())
        .patch(
            TENANT,
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(patch)?),
        )
        .await?;
    let expected: BTreeSet<String> = before.difference(removed).cloned().collect();
    settles_to(client, uid, &expected).await
}

/// Removes the data zone and its volume: the namespace is marked with its purge deadline, not
/// deleted; its claim and its key stay (sampled all along) until the retention window has
/// passed; nothing outside the zone changes; then the namespace, the claim and the key go, and
/// the claim's volume is switched to `Delete`.
async fn zone_is_retained_then_purged(client: &Client, uid: &str) -> Result<()> {
    let data = namespace_of("data");
    let before = inventory(client, uid).await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &data);
    let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let namespaces = Api::<Namespace>::all(client.clone());
    let key_name = format!("enclave-volume-key-{data}");
    let claim_uid = claims.get("db").await?.metadata.uid.context("claim uid")?;
    let key_uid = secrets
        .get(&key_name)
        .await?
        .metadata
        .uid
        .context("key uid")?;
    let in_zone =
        |e: &String| e.contains(&format!(" {data}/")) || *e == entry("Namespace", None, &data);
    let outside: BTreeSet<String> = before.iter().filter(|e| !in_zone(e)).cloned().collect();

    let removed_at = Timestamp::now();
    Api::<Tenant>::all(client.clone())
        .patch(
            TENANT,
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "test", "path": "/spec/zones/2/name", "value": "data"},
                {"op": "test", "path": "/spec/volumes/0/name", "value": "db"},
                {"op": "remove", "path": "/spec/volumes"},
                {"op": "remove", "path": "/spec/zones/2"}
            ]))?),
        )
        .await?;
    // The retention window starts at the removal: nothing holding data may go before it ends.
    let earliest = Timestamp::from_second(removed_at.as_second())?.checked_add(RETENTION)?;
    let alive = |uid: &str, meta: Option<&ObjectMeta>| {
        meta.is_some_and(|m| m.deletion_timestamp.is_none() && m.uid.as_deref() == Some(uid))
    };
    let mut marked: Option<Timestamp> = None;
    let mut samples = 0_u32;
    loop {
        let claim = claims.get_opt("db").await?;
        let key = secrets.get_opt(&key_name).await?;
        let namespace = namespaces.get_opt(&data).await?;
        let seen = Timestamp::now();
        if seen >= earliest {
            break;
        }
        samples += 1;
        let left = seen.duration_until(earliest);
        ensure!(
            alive(&claim_uid, claim.as_ref().map(|c| &c.metadata)),
            "the claim {data}/db was deleted {left:#} before the end of its retention window ({earliest})"
        );
        ensure!(
            alive(&key_uid, key.as_ref().map(|k| &k.metadata)),
            "the key {OPERATOR_NAMESPACE}/{key_name} of the retained volume was deleted {left:#} before the end of its retention window ({earliest})"
        );
        ensure!(
            namespace
                .as_ref()
                .is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
            "the namespace {data} was deleted {left:#} before the end of its retention window ({earliest})"
        );
        if marked.is_none() {
            marked = namespace
                .and_then(|n| n.metadata.annotations)
                .and_then(|a| a.get(PURGE_AFTER).cloned())
                .map(|deadline| deadline.parse::<Timestamp>())
                .transpose()?;
        }
        if marked.is_some() {
            // Nothing outside the removed zone changes, while the zone is retained.
            let found = inventory(client, uid).await?;
            let found_outside: BTreeSet<String> =
                found.iter().filter(|e| !in_zone(e)).cloned().collect();
            ensure!(
                found_outside == outside,
                "removing the zone changed objects outside it:\n{}",
                difference(&outside, &found_outside)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = marked.with_context(|| {
        format!("the namespace {data} was not annotated {PURGE_AFTER} within the retention window")
    })?;
    ensure!(
        deadline >= earliest && deadline <= earliest.checked_add(Duration::from_secs(30))?,
        "the namespace {data} is to be purged after {deadline}, not at the end of its retention window ({earliest})"
    );
    eprintln!(
        "[pipeline] zone retained until {deadline}: {samples} samples, the claim, its key and the namespace there all along"
    );

    // After the deadline: the zone's namespace and everything in it go, and the key with them.
    let mut expected = outside;
    expected.remove(&volume_key());
    settles_to(client, uid, &expected).await?;
    ensure!(
        namespaces
            .get_opt(&data)
            .await?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "the namespace {data} stays after its deadline"
    );
    let volume = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&format!("pv-{TENANT}-db"))
        .await?;
    let policy = volume
        .as_ref()
        .and_then(|v| v.spec.as_ref()?.persistent_volume_reclaim_policy.as_deref());
    ensure!(
        volume.is_none() || policy == Some("Delete"),
        "the purged claim's volume is still {policy:?}: its data would stay on disk"
    );
    Ok(())
}

#[tokio::test]
async fn removing_tls_backup_a_workload_and_a_zone_removes_what_they_made() -> Result<()> {
    let started = Instant::now();
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let store: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{TENANT}-s3")},
        "stringData": {"AWS_ACCESS_KEY_ID": "shrink-key-id", "AWS_SECRET_ACCESS_KEY": "shrink-secret"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &store)
        .await?;
    // Daily, twelve hours from now: no backup Job runs during the test.
    let schedule = format!("0 {} * * *", (chrono::Utc::now().hour() + 12) % 24);
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": TENANT},
        "spec": {
            "zones": [
                {"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]},
                {"name": "app", "ports": [{"port": 8080}], "allowFrom": ["dmz"]},
                {"name": "data", "ports": [{"port": 5432}], "allowFrom": ["app"]}
            ],
            "access": {"admins": [{"kind": "User", "name": "shrink-admin@example.com"}]},
            "quota": {"cpu": "8", "memory": "16Gi"},
            "workloads": [
                {"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]},
                {"name": "api", "zone": "app", "image": "registry.example/api:1", "capacity": 1, "ports": [{"port": 8080}]}
            ],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "tls": {"dnsNames": ["shrink.example"]},
            "backup": {"schedule": schedule,
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": format!("{TENANT}-s3")}},
            "lifecycle": {"retention": "30s"}
        }
    }))?;
    tenants.create(&PostParams::default(), &tenant).await?;
    // A volume bound in advance to the claim, so that StorageReplicated can be true.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("pv-{TENANT}-db")},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "enclave-default-r3-encrypted",
                 "persistentVolumeReclaimPolicy": "Retain",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": format!("pv-{TENANT}-db")},
                 "claimRef": {"namespace": namespace_of("data"), "name": "db"}}
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;

    // In place: Ready for the spec as created, and exactly the objects README names.
    let uid = eventually("the tenant Ready", WAIT, || async {
        let t = tenants.get(TENANT).await?;
        let status = t.status.clone().unwrap_or_default();
        let ready = status.phase == Some(Phase::Ready)
            && status.observed_generation == t.metadata.generation;
        Ok(ready.then_some(t.metadata.uid).flatten())
    })
    .await?;
    let expected = initial_inventory();
    let found = inventory(&client, &uid).await?;
    ensure!(
        found == expected,
        "the tenant's objects are not those README names:\n{}",
        difference(&expected, &found)
    );
    eprintln!(
        "[pipeline] tenant {TENANT} Ready with {} objects after {:?}",
        found.len(),
        started.elapsed()
    );

    let mut failures = Vec::new();
    let mut report = |step: &str, result: Result<()>, since: Instant| {
        eprintln!(
            "[pipeline] {step}: {} in {:?}",
            if result.is_ok() { "ok" } else { "FAILED" },
            since.elapsed()
        );
        if let Err(e) = result {
            failures.push(format!("{step}: {e:#}"));
        }
    };

    // spec.tls removed: the CA, the certificate and the bundles go; the TLS policy stays.
    let step = Instant::now();
    let result = removes_exactly(
        &client,
        &uid,
        json!([{"op": "remove", "path": "/spec/tls"}]),
        &tls_objects(&["dmz", "app", "data"]),
    )
    .await;
    report("removing spec.tls", result, step);

    // spec.backup removed: the CronJob, its service account, the operator's CA and the egress
    // policy go; the password (for the backups that remain) and the claim stay.
    let step = Instant::now();
    let result = removes_exactly(
        &client,
        &uid,
        json!([{"op": "remove", "path": "/spec/backup"}]),
        &backup_objects(),
    )
    .await;
    report("removing spec.backup", result, step);

    // One workload removed: its Deployment, budget and Service go, nothing else.
    let step = Instant::now();
    let result = removes_exactly(
        &client,
        &uid,
        json!([
            {"op": "test", "path": "/spec/workloads/1/name", "value": "api"},
            {"op": "remove", "path": "/spec/workloads/1"}
        ]),
        &workload_objects("app", "api"),
    )
    .await;
    report("removing the workload api", result, step);

    // The data zone removed: retained until its deadline, then purged.
    let step = Instant::now();
    let result = zone_is_retained_then_purged(&client, &uid).await;
    report("removing the zone data", result, step);

    // The reduced tenant at rest costs no write.
    let step = Instant::now();
    let prefix = format!("{TENANT}-");
    let keys = [
        format!("enclave-ca-{TENANT}"),
        format!("enclave-backup-{TENANT}"),
        format!("enclave-volume-key-{TENANT}-data"),
    ];
    let ours = |o: &Value| {
        let name = o["name"].as_str().unwrap_or_default();
        !matches!(o["resource"].as_str(), Some("tenants" | "events"))
            && (o["namespace"]
                .as_str()
                .is_some_and(|n| n.starts_with(&prefix))
                || (o["resource"] == "namespaces" && name.starts_with(&prefix))
                || (o["namespace"] == OPERATOR_NAMESPACE && keys.iter().any(|k| k == name)))
    };
    let result = async {
        let (before, at_rest) = env().writes_at_rest(&client, TENANT, ours).await?;
        ensure!(
            before > 0,
            "the audit log shows none of the operator's writes"
        );
        ensure!(at_rest.is_empty(), "writes at rest: {at_rest:#?}");
        Ok(())
    }
    .await;
    report("no write at rest", result, step);

    // The operator runs as the chart's service account with the chart's RBAC: through TLS,
    // backups, volumes, workloads and zones made and removed, nothing was refused.
    let result = async {
        let refused = env().operator_forbidden()?;
        ensure!(
            refused.is_empty(),
            "403s to the chart's identity: {refused:#?}"
        );
        Ok(())
    }
    .await;
    report(
        "the chart's RBAC refuses the operator nothing",
        result,
        step,
    );

    eprintln!("[pipeline] removal test done in {:?}", started.elapsed());
    ensure!(
        failures.is_empty(),
        "{} step(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// The API version of every kind the operator records Events about.
fn api_versions() -> BTreeMap<String, String> {
    managed_kinds()
        .into_iter()
        .chain([
            ApiResource::erase::<StorageClass>(&()),
            ApiResource::erase::<ClusterRole>(&()),
            certificate_kind(),
        ])
        .map(|r| (r.kind, r.api_version))
        .collect()
}

#[tokio::test]
async fn events_name_the_real_api_version() -> Result<()> {
    let started = Instant::now();
    let client = env().client().await?;
    // A zone's NetworkPolicies, and a StatefulSet for the workload with per-replica volumes.
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": EVENTS_TENANT},
        "spec": {
            "zones": [{"name": "data", "ports": [{"port": 5432}]}],
            "volumes": [{"name": "pgdata", "zone": "data", "size": "1Gi", "perReplica": true}],
            "workloads": [{"name": "pg", "zone": "data", "image": "registry.example/pg:17", "capacity": 1,
                           "ports": [{"port": 5432}],
                           "volumeMounts": [{"volume": "pgdata", "mountPath": "/var/lib/postgresql"}]}]
        }
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    let events = Api::<Event>::all(client.clone());
    let params = ListParams::default().fields(&format!("involvedObject.name={EVENTS_TENANT}"));
    // The Events on the Tenant about one of its objects: reason and the `related` reference.
    let about = eventually(
        "Created Events about a NetworkPolicy and a StatefulSet",
        WAIT,
        || async {
            let about: Vec<(String, ObjectReference)> = events
                .list(&params)
                .await?
                .items
                .into_iter()
                .filter(|e| e.involved_object.kind.as_deref() == Some("Tenant"))
                .filter_map(|e| Some((e.reason.unwrap_or_default(), e.related?)))
                .collect();
            let created = |kind: &str| {
                about
                    .iter()
                    .any(|(reason, r)| reason == "Created" && r.kind.as_deref() == Some(kind))
            };
            Ok((created("NetworkPolicy") && created("StatefulSet")).then_some(about))
        },
    )
    .await?;

    // Each carries the API version its kind is served at...
    let versions = api_versions();
    let mut wrong: Vec<String> = about
        .iter()
        .filter_map(|(reason, r)| {
            let kind = r.kind.as_deref().unwrap_or_default();
            let object = format!(
                "{reason} {kind} {}{}",
                r.namespace
                    .as_deref()
                    .map_or_else(String::new, |n| format!("{n}/")),
                r.name.as_deref().unwrap_or_default()
            );
            match versions.get(kind) {
                Some(want) if r.api_version.as_deref() == Some(want.as_str()) => None,
                Some(want) => Some(format!(
                    "{object}: apiVersion {:?}, not {want}",
                    r.api_version.as_deref().unwrap_or_default()
                )),
                None => Some(format!("{object}: a kind the operator does not make")),
            }
        })
        .collect();
    // ...and names its object as a reference does: the namespace and the name apart.
    let ns = format!("{EVENTS_TENANT}-data");
    for (kind, name) in [
        ("NetworkPolicy", "enclave-default-deny"),
        ("StatefulSet", "pg"),
    ] {
        let named = about.iter().any(|(reason, r)| {
            reason == "Created"
                && r.kind.as_deref() == Some(kind)
                && r.namespace.as_deref() == Some(ns.as_str())
                && r.name.as_deref() == Some(name)
        });
        if !named {
            wrong.push(format!(
                "no Created Event's related reference has namespace {ns:?} and name {name:?} for the {kind}"
            ));
        }
    }
    eprintln!(
        "[pipeline] {} Events about objects checked in {:?}",
        about.len(),
        started.elapsed()
    );
    ensure!(
        wrong.is_empty(),
        "Events about {} objects, wrong:\n  {}",
        about.len(),
        wrong.join("\n  ")
    );
    Ok(())
}
