//! Replicated, encrypted volumes on the real control plane: the StorageClasses and claims the
//! operator keeps, keys in the operator's namespace only, `StorageReplicated` following the
//! binding of pre-created volumes, growth, refusals with messages naming the field, a removed
//! volume retained until its deadline and then destroyed, and per-replica volumes.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::Tenant;
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn tenant(value: Value) -> Tenant {
    serde_json::from_value(value).unwrap()
}

async fn condition(tenants: &Api<Tenant>, name: &str, type_: &str) -> Result<Option<String>> {
    let t = tenants.get(name).await?;
    Ok(t.status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == type_))
        .map(|c| c.reason))
}

/// A volume bound in advance to `namespace/claim`, as an administrator (or a static
/// provisioner) would make it: the controller-manager's binder binds the claim to it.
async fn pre_bound_volume(
    client: &kube::Client,
    name: &str,
    class: &str,
    size: &str,
    mode: &str,
    namespace: &str,
    claim: &str,
) -> Result<()> {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": [mode],
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": "driver.longhorn.io", "volumeHandle": name},
            "claimRef": {"namespace": namespace, "name": claim}
        }
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(())
}

async fn refused(tenants: &Api<Tenant>, t: &Tenant) -> String {
    match tenants
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            t,
        )
        .await
    {
        Ok(_) => panic!("the API server accepted {:?}", t.spec),
        Err(kube::Error::Api(e)) => e.message,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn volumes_are_replicated_encrypted_grown_and_retained() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &tenant(json!({
                "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "vault"},
                "spec": {
                    "zones": [{"name": "app", "ports": [{"port": 8080}]}, {"name": "data", "ports": [{"port": 5432}], "allowFrom": ["app"]}],
                    "volumes": [
                        {"name": "db", "zone": "data", "size": "1Gi"},
                        {"name": "shared", "zone": "app", "size": "2Gi", "replicas": 5, "encrypted": false, "accessMode": "ReadWriteMany"}
                    ],
                    "workloads": [{"name": "web", "zone": "app", "image": "registry.example/web:1", "capacity": 1,
                                   "volumeMounts": [{"volume": "shared", "mountPath": "/srv/shared"}]}],
                    "lifecycle": {"retention": "30s"}
                }
            })),
        )
        .await?;

    // A class per (profile, replicas, encrypted), carrying the replica count and encryption.
    let classes = Api::<StorageClass>::all(client.clone());
    let encrypted = eventually("the encrypted class", WAIT, || async {
        Ok(classes.get_opt("enclave-default-r3-encrypted").await?)
    })
    .await?;
    let params = encrypted.parameters.clone().unwrap_or_default();
    assert_eq!(encrypted.provisioner, "driver.longhorn.io");
    assert_eq!(params["numberOfReplicas"], "3");
    assert_eq!(params["encrypted"], "true");
    assert_eq!(
        params["csi.storage.k8s.io/node-stage-secret-name"],
        "enclave-volume-key-${pvc.namespace}"
    );
    assert_eq!(
        params["csi.storage.k8s.io/node-stage-secret-namespace"],
        OPERATOR_NAMESPACE
    );
    assert_eq!(encrypted.reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(encrypted.allow_volume_expansion, Some(true));
    let plain = eventually("the plain class", WAIT, || async {
        Ok(classes.get_opt("enclave-default-r5").await?)
    })
    .await?;
    let plain_params = plain.parameters.unwrap_or_default();
    assert_eq!(plain_params["numberOfReplicas"], "5");
    assert!(!plain_params.contains_key("encrypted"));

    // Claims in the zone namespaces, on those classes.
    let db_claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "vault-data");
    let app_claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "vault-app");
    let db = eventually("the db claim", WAIT, || async {
        Ok(db_claims.get_opt("db").await?)
    })
    .await?;
    let db_spec = db.spec.clone().context("claim spec")?;
    assert_eq!(
        db_spec.storage_class_name.as_deref(),
        Some("enclave-default-r3-encrypted")
    );
    assert_eq!(db_spec.access_modes, Some(vec!["ReadWriteOnce".into()]));
    assert!(db.metadata.owner_references.is_none(), "no GC of data");
    let shared = eventually("the shared claim", WAIT, || async {
        Ok(app_claims.get_opt("shared").await?)
    })
    .await?;
    assert_eq!(
        shared.spec.and_then(|s| s.storage_class_name).as_deref(),
        Some("enclave-default-r5")
    );

    // The key: in the operator's namespace, random, and nowhere in the tenant's namespaces.
    let keys = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let key = eventually("the key Secret", WAIT, || async {
        Ok(keys.get_opt("enclave-volume-key-vault-data").await?)
    })
    .await?;
    let value = key
        .data
        .as_ref()
        .and_then(|d| d.get("CRYPTO_KEY_VALUE"))
        .context("key entry")?;
    let text = String::from_utf8(value.0.clone())?;
    assert_eq!(text.len(), 64, "256 bits as hex");
    assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        key.data
            .as_ref()
            .and_then(|d| d.get("CRYPTO_KEY_PROVIDER"))
            .map(|v| v.0.as_slice()),
        Some(b"secret".as_slice())
    );
    assert!(
        keys.get_opt("enclave-volume-key-vault-app")
            .await?
            .is_none(),
        "no key for a zone without encrypted volumes"
    );
    for namespace in ["vault-app", "vault-data"] {
        let secrets = Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?;
        for s in secrets.items {
            let holds_key = s.data.iter().flatten().any(|(_, v)| v.0 == value.0);
            assert!(!holds_key, "the key leaked into {namespace}");
        }
    }

    // Not bound yet: StorageReplicated says which claims wait.
    eventually("StorageReplicated=Pending", WAIT, || async {
        Ok((condition(&tenants, "vault", "StorageReplicated")
            .await?
            .as_deref()
            == Some("Pending"))
        .then_some(()))
    })
    .await?;

    // Volumes made in advance for the claims: the binder binds them, the condition turns true,
    // and the workload mounting the shared volume runs N+1.
    pre_bound_volume(
        &client,
        "pv-vault-db",
        "enclave-default-r3-encrypted",
        "1Gi",
        "ReadWriteOnce",
        "vault-data",
        "db",
    )
    .await?;
    pre_bound_volume(
        &client,
        "pv-vault-shared",
        "enclave-default-r5",
        "2Gi",
        "ReadWriteMany",
        "vault-app",
        "shared",
    )
    .await?;
    eventually("StorageReplicated=True", WAIT, || async {
        let t = tenants.get("vault").await?;
        let status = t.status.unwrap_or_default();
        Ok(status
            .conditions
            .iter()
            .any(|c| {
                c.type_ == "StorageReplicated" && c.status == "True" && c.reason == "Replicated"
            })
            .then_some(()))
    })
    .await?;
    eventually("web runs N+1 with the shared volume", WAIT, || async {
        let t = tenants.get("vault").await?;
        Ok((t.status.unwrap_or_default().ready_workloads.as_deref() == Some("1/1")).then_some(()))
    })
    .await?;

    // Growing a volume expands its claim.
    tenants
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "replace", "path": "/spec/volumes/0/size", "value": "2Gi"}
            ]))?),
        )
        .await?;
    eventually("db claim grown to 2Gi", WAIT, || async {
        let claim = db_claims.get("db").await?;
        let request = claim
            .spec
            .and_then(|s| s.resources?.requests?.get("storage").cloned());
        Ok((request.map(|q| q.0).as_deref() == Some("2Gi")).then_some(()))
    })
    .await?;

    // Shrinking and fewer than 3 replicas are refused by the API server, naming the field.
    let shrink = tenants
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "replace", "path": "/spec/volumes/0/size", "value": "1Gi"}
            ]))?),
        )
        .await
        .expect_err("shrinking is refused");
    let message = shrink.to_string();
    assert!(
        message.contains("spec.volumes[0].size") && message.contains("size cannot shrink"),
        "{message}"
    );
    let replicas = tenants
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "replace", "path": "/spec/volumes/0/replicas", "value": 4}
            ]))?),
        )
        .await
        .expect_err("changing replicas is refused");
    assert!(
        replicas.to_string().contains("spec.volumes[0].replicas"),
        "{replicas}"
    );
    let two = refused(
        &tenants,
        &tenant(json!({
            "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "vault-two"},
            "spec": {"volumes": [{"name": "db", "zone": "data", "size": "1Gi", "replicas": 2}]}
        })),
    )
    .await;
    assert!(
        two.contains("spec.volumes[0].replicas") && two.contains("greater than or equal to 3"),
        "{two}"
    );

    // Removing a volume keeps its claim, marked and reported, until the deadline.
    tenants
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::<Value>::Json(serde_json::from_value(json!([
                {"op": "remove", "path": "/spec/workloads/0/volumeMounts"},
                {"op": "remove", "path": "/spec/volumes/1"}
            ]))?),
        )
        .await?;
    let marked = eventually("shared claim retained", WAIT, || async {
        let claim = app_claims.get("shared").await?;
        let labels = claim.metadata.labels.clone().unwrap_or_default();
        Ok(
            (labels.get("enclave.dev/retained").map(String::as_str) == Some("true"))
                .then_some(claim),
        )
    })
    .await?;
    assert!(
        marked
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("enclave.dev/purge-after")
    );
    eventually("retained volume in status", WAIT, || async {
        let t = tenants.get("vault").await?;
        let retained = t.status.unwrap_or_default().retained_volumes;
        Ok(retained
            .iter()
            .any(|r| r.name == "shared" && r.namespace == "vault-app")
            .then_some(()))
    })
    .await?;
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("involvedObject.name=vault"))
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Retained")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("vault-app/shared"))),
        "a Retained event names the claim"
    );

    // After the 30 s window: the claim is deleted and its volume switched to Delete, so the
    // driver erases the data rather than leave it on disk.
    eventually("shared claim purged", Duration::from_secs(120), || async {
        Ok(app_claims.get_opt("shared").await?.is_none().then_some(()))
    })
    .await?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get("pv-vault-shared")
        .await?;
    assert_eq!(
        pv.spec
            .and_then(|s| s.persistent_volume_reclaim_policy)
            .as_deref(),
        Some("Delete")
    );
    assert!(
        db_claims.get_opt("db").await?.is_some(),
        "the other volume stays"
    );
    Ok(())
}

#[tokio::test]
async fn read_write_once_volume_cannot_be_shared_by_replicas() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let message = refused(
        &tenants,
        &tenant(json!({
            "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "rwo"},
            "spec": {
                "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
                "workloads": [{"name": "pg", "zone": "data", "image": "postgres:17", "capacity": 1,
                               "volumeMounts": [{"volume": "db", "mountPath": "/var/lib/postgresql"}]}]
            }
        })),
    )
    .await;
    assert!(
        message.contains("spec.workloads")
            && message.contains("ReadWriteOnce volume cannot be mounted")
            && message.contains("perReplica"),
        "{message}"
    );
    let elsewhere = refused(
        &tenants,
        &tenant(json!({
            "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "rwo"},
            "spec": {
                "volumes": [{"name": "db", "zone": "data", "size": "1Gi", "accessMode": "ReadWriteMany"}],
                "workloads": [{"name": "pg", "zone": "app", "image": "postgres:17", "capacity": 1,
                               "volumeMounts": [{"volume": "db", "mountPath": "/var/lib/postgresql"}]}]
            }
        })),
    )
    .await;
    assert!(elsewhere.contains("in the workload's zone"), "{elsewhere}");
    Ok(())
}

#[tokio::test]
async fn per_replica_volumes_run_as_a_stateful_set() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &tenant(json!({
                "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "ledger"},
                "spec": {
                    "zones": [{"name": "data", "ports": [{"port": 5432}]}],
                    "volumes": [{"name": "pgdata", "zone": "data", "size": "1Gi", "perReplica": true}],
                    "workloads": [{"name": "pg", "zone": "data", "image": "registry.example/pg:17", "capacity": 1,
                                   "ports": [{"port": 5432}],
                                   "volumeMounts": [{"volume": "pgdata", "mountPath": "/var/lib/postgresql"}]}]
                }
            })),
        )
        .await?;
    // The claims exist before the StatefulSet needs them, one per replica.
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "ledger-data");
    for ordinal in 0..2 {
        let name = format!("pgdata-pg-{ordinal}");
        eventually(&name, WAIT, || async { Ok(claims.get_opt(&name).await?) }).await?;
        pre_bound_volume(
            &client,
            &format!("pv-ledger-{ordinal}"),
            "enclave-default-r3-encrypted",
            "1Gi",
            "ReadWriteOnce",
            "ledger-data",
            &name,
        )
        .await?;
    }
    let sets = Api::<StatefulSet>::namespaced(client.clone(), "ledger-data");
    let set = eventually("the StatefulSet", WAIT, || async {
        Ok(sets.get_opt("pg").await?)
    })
    .await?;
    let spec = set.spec.context("spec")?;
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .and_then(|p| p.when_deleted)
            .as_deref(),
        Some("Retain")
    );
    eventually("pg redundant and storage replicated", WAIT, || async {
        let t = tenants.get("ledger").await?;
        let status = t.status.unwrap_or_default();
        let ok = |type_: &str| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        };
        Ok((ok("WorkloadsRedundant") && ok("StorageReplicated")).then_some(status))
    })
    .await
    .map(|status| {
        let workload = &status.workloads[0];
        assert_eq!(
            (
                workload.name.as_str(),
                workload.image.as_str(),
                workload.available
            ),
            ("pg", "registry.example/pg:17", 2)
        );
    })?;

    // Settled, the StatefulSet (with its live claim templates) and the claims cost no write.
    let ours = |o: &Value| {
        o["namespace"] == "ledger-data"
            && matches!(
                o["resource"].as_str(),
                Some("statefulsets" | "persistentvolumeclaims")
            )
    };
    let (before, at_rest) = env().writes_at_rest(&client, "ledger", ours).await?;
    assert!(before > 0, "the audit log shows the operator's writes");
    assert!(at_rest.is_empty(), "no write at rest: {at_rest:?}");
    Ok(())
}
