//! The foundation on a real control plane: zone namespaces, drift, zero writes at rest,
//! refusal of invalid Tenants, retention on deletion, foreign namespaces, and proof that the
//! control plane enforces RBAC, Pod Security and schedules onto the fake nodes.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn create_tenant(client: &Client, manifest: Value) -> Result<Tenant> {
    let tenant: Tenant = serde_json::from_value(manifest)?;
    Ok(Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?)
}

async fn wait_for_phase(client: &Client, name: &str, phase: Phase) -> Result<Tenant> {
    let api = Api::<Tenant>::all(client.clone());
    eventually(&format!("tenant {name} to be {phase:?}"), WAIT, || async {
        let t = api.get(name).await?;
        let current = t.status.as_ref().and_then(|s| s.phase);
        let observed =
            t.status.as_ref().and_then(|s| s.observed_generation) == t.metadata.generation;
        Ok((current == Some(phase) && observed).then_some(t))
    })
    .await
}

fn tenant(name: &str) -> Value {
    json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": {}})
}

#[tokio::test]
async fn zone_namespaces_carry_labels_and_pod_security_without_owner() -> Result<()> {
    let client = env().client().await?;
    let created = create_tenant(&client, tenant("found-ns")).await?;
    let ready = wait_for_phase(&client, "found-ns", Phase::Ready).await?;
    let status = ready.status.clone().context("status")?;
    assert_eq!(
        status.namespaces,
        ["found-ns-dmz", "found-ns-app", "found-ns-data"]
    );
    let ready_condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .context("Ready condition")?;
    assert_eq!(ready_condition.status, "True");
    assert!(
        ready
            .finalizers()
            .contains(&"enclave.dev/retain-data".to_string())
    );

    let namespaces = Api::<Namespace>::all(client.clone());
    for zone in ["dmz", "app", "data"] {
        let ns = namespaces.get(&format!("found-ns-{zone}")).await?;
        let labels = ns.labels();
        assert_eq!(
            labels["enclave.dev/tenant-uid"],
            created.uid().context("uid")?
        );
        assert_eq!(labels["enclave.dev/zone"], zone);
        assert_eq!(labels["app.kubernetes.io/managed-by"], "enclave-operator");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        // Data holders carry no owner reference: only the operator deletes them.
        assert!(ns.owner_references().is_empty());
    }

    // Every namespace created is an Event on the Tenant.
    let notes = eventually("creation events", Duration::from_secs(10), || async {
        let notes = tenant_events(&client, "found-ns").await?;
        Ok((notes.len() >= 3).then_some(notes))
    })
    .await?;
    for zone in ["dmz", "app", "data"] {
        assert!(
            notes.contains(&format!("Created: created Namespace found-ns-{zone}")),
            "{notes:?}"
        );
    }
    Ok(())
}

/// `reason: note` of the Events about a tenant.
async fn tenant_events(client: &Client, tenant: &str) -> Result<Vec<String>> {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default");
    let selector = format!("regarding.kind=Tenant,regarding.name={tenant}");
    let list = events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect())
}

#[tokio::test]
async fn drift_is_restored() -> Result<()> {
    let client = env().client().await?;
    create_tenant(&client, tenant("found-drift")).await?;
    wait_for_phase(&client, "found-drift", Phase::Ready).await?;
    let namespaces = Api::<Namespace>::all(client.clone());

    // A removed label and a weakened Pod Security level come back.
    let patch = json!({"metadata": {"labels": {"enclave.dev/zone": null, "pod-security.kubernetes.io/enforce": "privileged"}}});
    namespaces
        .patch(
            "found-drift-app",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    eventually("labels restored", Duration::from_secs(20), || async {
        let ns = namespaces.get("found-drift-app").await?;
        let labels = ns.labels();
        Ok(
            (labels.get("enclave.dev/zone").map(String::as_str) == Some("app")
                && labels
                    .get("pod-security.kubernetes.io/enforce")
                    .map(String::as_str)
                    == Some("restricted"))
            .then_some(()),
        )
    })
    .await?;

    // A deleted namespace comes back once the namespace controller has finished deleting it.
    let old_uid = namespaces.get("found-drift-data").await?.uid();
    namespaces
        .delete("found-drift-data", &DeleteParams::default())
        .await?;
    eventually("namespace recreated", WAIT, || async {
        let ns = namespaces.get_opt("found-drift-data").await?;
        Ok(ns
            .filter(|ns| ns.uid() != old_uid && ns.metadata.deletion_timestamp.is_none())
            .map(|_| ()))
    })
    .await?;
    wait_for_phase(&client, "found-drift", Phase::Ready).await?;
    Ok(())
}

#[tokio::test]
async fn unchanged_tenant_costs_zero_writes() -> Result<()> {
    let client = env().client().await?;
    // Every kind of object, and quantities the server rewrites in canonical form.
    let mut manifest = tenant("found-quiet");
    manifest["spec"] = json!({
        "access": {"admins": [{"kind": "Group", "name": "quiet-admins"}], "viewers": [{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]},
        "quota": {"cpu": "2000m", "memory": "2048Mi", "pods": 10},
        "firewall": {"denyCidrs": ["203.0.113.0/24"]},
        "egress": [{"cidr": "198.51.100.0/24", "ports": [{"port": 443}]}]
    });
    create_tenant(&client, manifest).await?;
    wait_for_phase(&client, "found-quiet", Phase::Ready).await?;
    let ours = |object: &Value| {
        object["name"].as_str().is_some_and(|n| n.starts_with("found-quiet"))
            || object["namespace"].as_str().is_some_and(|n| n.starts_with("found-quiet"))
            // Events about the tenant live in `default`, named after it.
            || object["resource"] == "events" && object["name"].as_str().is_some_and(|n| n.starts_with("found-quiet."))
    };
    // Let the first reconciles settle, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = env().operator_writes(ours)?;
    assert!(
        !before.is_empty(),
        "the audit log must show the operator's first writes"
    );
    // Setting the tenant up wrote each object once: no reconcile raced another.
    let mut per_object: std::collections::BTreeMap<String, usize> =
        std::collections::BTreeMap::new();
    for event in before.iter().filter(|e| {
        !matches!(
            e["objectRef"]["resource"].as_str(),
            Some("tenants" | "events")
        )
    }) {
        let o = &event["objectRef"];
        *per_object
            .entry(format!(
                "{} {}/{}",
                o["resource"], o["namespace"], o["name"]
            ))
            .or_default() += 1;
    }
    let repeated: Vec<_> = per_object.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "objects written more than once while setting up: {repeated:?}"
    );
    assert!(
        per_object.len() == 3 + 7 + 3 + 3 + 6 + 3 + 3 + 3,
        "3 namespaces, 7 policies (app and data serve no port: no ingress policy), 3 quotas, 3 limits, 6 bindings, 3 TLS policies, 3 security options, 3 reports: {per_object:?}"
    );

    // Make the operator reconcile again: a metadata change that leaves the spec as is.
    env().reconcile_again(&client, "found-quiet").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env().operator_writes(ours)?;
    let extra: Vec<_> = after[before.len()..]
        .iter()
        .map(|e| format!("{} {}", e["verb"], e["objectRef"]))
        .collect();
    assert!(
        extra.is_empty(),
        "an unchanged tenant was written to: {extra:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn invalid_tenants_are_refused_naming_the_field() -> Result<()> {
    let client = env().client().await?;
    let api = Api::<Tenant>::all(client.clone());
    let zones = |extra: Value| {
        let mut spec = json!({"zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "app", "allowFrom": ["dmz"]}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    };
    let volume = |size: &str| json!({"volumes": [{"name": "files", "zone": "app", "size": size}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("Bad.Name", json!({}), "metadata.name"),
        (
            "a-tenant-name-that-is-much-too-long-for-a-prefix",
            json!({}),
            "metadata.name",
        ),
        (
            "bad-dup-zones",
            json!({"zones": [{"name": "app"}, {"name": "app"}]}),
            "spec.zones[1]",
        ),
        (
            "bad-allow-from",
            json!({"zones": [{"name": "app", "allowFrom": ["nowhere"]}]}),
            "spec.zones",
        ),
        (
            "bad-port-high",
            json!({"zones": [{"name": "dmz", "ports": [{"port": 70000}]}]}),
            "spec.zones[0].ports[0].port",
        ),
        (
            "bad-port-zero",
            json!({"zones": [{"name": "dmz", "ports": [{"port": 0}]}]}),
            "spec.zones[0].ports[0].port",
        ),
        (
            "bad-cidr",
            json!({"firewall": {"allowCidrs": ["10.0.0.0/33"]}}),
            "spec.firewall.allowCidrs",
        ),
        (
            "bad-download-threshold",
            json!({"security": {"downloadThreshold": "-1Gi"}}),
            "spec.security.downloadThreshold",
        ),
        (
            "bad-host-bits",
            json!({"egress": [{"cidr": "198.51.100.7/24", "ports": [{"port": 443}]}]}),
            "spec.egress[0].cidr",
        ),
        (
            "bad-egress-cidr",
            json!({"egress": [{"cidr": "not-a-cidr", "ports": [{"port": 443}]}]}),
            "spec.egress[0].cidr",
        ),
        (
            "bad-replicas",
            zones(
                json!({"volumes": [{"name": "files", "zone": "app", "size": "1Gi", "replicas": 2}]}),
            ),
            "spec.volumes[0].replicas",
        ),
        (
            "bad-retention",
            json!({"lifecycle": {"retention": "31d"}}),
            "spec.lifecycle.retention",
        ),
        (
            "bad-retention-hours",
            json!({"lifecycle": {"retention": "721h"}}),
            "spec.lifecycle.retention",
        ),
        (
            "bad-zone-name",
            json!({"zones": [{"name": "Zone_1"}]}),
            "spec.zones[0].name",
        ),
        (
            "bad-workload-zone",
            zones(
                json!({"workloads": [{"name": "web", "zone": "elsewhere", "image": "nginx", "capacity": 2}]}),
            ),
            "spec.workloads",
        ),
        (
            "bad-exposure",
            json!({"zones": [{"name": "dmz", "exposure": "Everywhere"}]}),
            "spec.zones[0].exposure",
        ),
        ("bad-size", zones(volume("lots")), "spec.volumes[0].size"),
        ("bad-size-zero", zones(volume("0")), "spec.volumes[0].size"),
        (
            "bad-quota-negative",
            json!({"quota": {"cpu": "-1", "memory": "8Gi"}}),
            "spec.quota.cpu",
        ),
        (
            "bad-port-twice",
            json!({"zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}, {"port": 443, "protocol": "TCP"}]}]}),
            "spec.zones[0].ports",
        ),
        (
            "bad-deny-outside",
            json!({"firewall": {"allowCidrs": ["198.51.100.0/24"], "denyCidrs": ["203.0.113.0/24"]}}),
            "spec.firewall.denyCidrs",
        ),
        (
            "bad-schedule",
            zones(
                json!({"volumes": [{"name": "files", "zone": "app", "size": "1Gi"}],
                "backup": {"schedule": "every day at 2", "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "s3"}}}),
            ),
            "spec.backup.schedule",
        ),
        (
            "bad-keep-nothing",
            zones(
                json!({"backup": {"schedule": "0 2 * * *", "retention": {"daily": 0, "weekly": 0, "monthly": 0},
                "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "s3"}}}),
            ),
            "spec.backup.retention",
        ),
        (
            "bad-mount-tmp",
            zones(
                json!({"volumes": [{"name": "files", "zone": "app", "size": "1Gi", "perReplica": true}],
                "workloads": [{"name": "api", "zone": "app", "image": "nginx", "capacity": 1,
                    "volumeMounts": [{"volume": "files", "mountPath": "/tmp"}]}]}),
            ),
            "spec.workloads[0].volumeMounts",
        ),
        (
            "bad-readiness-path",
            zones(
                json!({"workloads": [{"name": "api", "zone": "app", "image": "nginx", "capacity": 1, "readinessPath": "healthz"}]}),
            ),
            "spec.workloads[0].readinessPath",
        ),
        (
            "bad-workload-cpu",
            zones(
                json!({"workloads": [{"name": "api", "zone": "app", "image": "nginx", "capacity": 1, "resources": {"cpu": "0"}}]}),
            ),
            "spec.workloads[0].resources.cpu",
        ),
        (
            "bad-profile",
            zones(
                json!({"volumes": [{"name": "files", "zone": "app", "size": "1Gi", "profile": "Fast_SSD"}]}),
            ),
            "spec.volumes[0].profile",
        ),
        (
            "bad-sa-name",
            json!({"access": {"admins": [{"kind": "ServiceAccount", "name": "CI_Bot", "namespace": "ci"}]}}),
            "spec.access.admins[0].name",
        ),
        (
            "bad-sa-subject",
            json!({"access": {"admins": [{"kind": "ServiceAccount", "name": "ci"}]}}),
            "spec.access.admins[0]",
        ),
    ];
    let raw: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<Tenant>(&()),
    );
    let mut failures = Vec::new();
    for (name, spec, field) in &cases {
        let manifest = json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec});
        // Sent as raw JSON: some values cannot even be held by the Rust types.
        let object: kube::api::DynamicObject = serde_json::from_value(manifest)?;
        let result = raw
            .create(&PostParams::default(), &object)
            .await
            .map(|_| ());
        match result {
            Err(kube::Error::Api(status))
                // 422 from the schema or CEL, 403 from the guard's Tenant validation.
                if (status.code == 422 || status.code == 403) && status.message.contains(field) => {}
            Err(kube::Error::Api(status)) => failures.push(format!(
                "{name}: refused without naming {field}: {}",
                status.message
            )),
            Err(other) => failures.push(format!("{name}: {other}")),
            Ok(()) => failures.push(format!("{name}: accepted")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(cases.len() >= 12);

    // Transition rules: a volume cannot shrink, and its zone cannot change.
    let good: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "found-volume"}, "spec": zones(volume("10Gi"))}),
    )?;
    api.create(&PostParams::default(), &good).await?;
    for (patch, field, message) in [
        (
            json!({"spec": {"volumes": [{"name": "files", "zone": "app", "size": "5Gi"}]}}),
            "spec.volumes[0].size",
            "cannot shrink",
        ),
        (
            json!({"spec": {"volumes": [{"name": "files", "zone": "dmz", "size": "10Gi"}]}}),
            "spec.volumes[0].zone",
            "immutable",
        ),
    ] {
        let result = api
            .patch(
                "found-volume",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        match result {
            Err(kube::Error::Api(status)) => {
                assert!(
                    status.message.contains(field) && status.message.contains(message),
                    "{}",
                    status.message
                );
            }
            other => panic!("{patch} was not refused: {other:?}"),
        }
    }
    let grow = json!({"spec": {"volumes": [{"name": "files", "zone": "app", "size": "20Gi"}]}});
    api.patch(
        "found-volume",
        &PatchParams::default(),
        &Patch::Merge(&grow),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn deletion_keeps_namespaces_until_purge_after() -> Result<()> {
    let client = env().client().await?;
    let mut manifest = tenant("found-purge");
    manifest["spec"] = json!({"lifecycle": {"retention": "15s"}});
    create_tenant(&client, manifest).await?;
    wait_for_phase(&client, "found-purge", Phase::Ready).await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let namespaces = Api::<Namespace>::all(client.clone());

    tenants
        .delete("found-purge", &DeleteParams::default())
        .await?;
    let deleting = wait_for_phase(&client, "found-purge", Phase::Decommissioning).await?;
    let deleted_at = deleting
        .metadata
        .deletion_timestamp
        .clone()
        .context("deletionTimestamp")?
        .0;
    let purge_after = deleting
        .status
        .and_then(|s| s.purge_after)
        .context("purgeAfter")?
        .0;
    assert_eq!(purge_after.duration_since(deleted_at).as_secs(), 15);

    // Until the deadline, every namespace (and so its data) is kept.
    while k8s_openapi::jiff::Timestamp::now() < purge_after.checked_sub(Duration::from_secs(2))? {
        for zone in ["dmz", "app", "data"] {
            let ns = namespaces.get(&format!("found-purge-{zone}")).await?;
            assert!(
                ns.metadata.deletion_timestamp.is_none(),
                "{zone} deleted before purgeAfter"
            );
        }
        assert!(tenants.get_opt("found-purge").await?.is_some());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // After it, the namespaces go and then the Tenant.
    eventually("tenant and namespaces purged", WAIT, || async {
        let left = namespaces
            .list_metadata(
                &kube::api::ListParams::default().labels("enclave.dev/tenant=found-purge"),
            )
            .await?;
        let tenant = tenants.get_opt("found-purge").await?;
        Ok((left.items.is_empty() && tenant.is_none()).then_some(()))
    })
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    assert!(now >= purge_after, "purged before the deadline");
    Ok(())
}

#[tokio::test]
async fn foreign_namespace_is_never_taken_over_and_others_go_on() -> Result<()> {
    let client = env().client().await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    let foreign: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "found-taken-app", "labels": {"owner": "someone-else"}}}),
    )?;
    namespaces.create(&PostParams::default(), &foreign).await?;

    create_tenant(&client, tenant("found-taken")).await?;
    create_tenant(&client, tenant("found-beside")).await?;
    let blocked = wait_for_phase(&client, "found-taken", Phase::Blocked).await?;
    let ready = blocked
        .status
        .context("status")?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .context("Ready")?;
    assert_eq!(ready.reason, "NamespaceConflict");
    assert!(
        ready.message.contains("found-taken-app"),
        "{}",
        ready.message
    );

    // The foreign namespace is untouched, and no other zone was half-applied.
    let ns = namespaces.get("found-taken-app").await?;
    assert_eq!(
        ns.labels().get("owner").map(String::as_str),
        Some("someone-else")
    );
    assert!(!ns.labels().contains_key("enclave.dev/tenant-uid"));
    assert!(ns.owner_references().is_empty());
    assert!(
        namespaces.get_opt("found-taken-dmz").await?.is_none(),
        "a blocked tenant must not be half-applied"
    );
    // A blocked tenant does not hold up the others.
    wait_for_phase(&client, "found-beside", Phase::Ready).await?;
    Ok(())
}

#[tokio::test]
async fn removed_zone_is_retained_then_purged() -> Result<()> {
    let client = env().client().await?;
    let mut manifest = tenant("found-shrink");
    manifest["spec"] =
        json!({"zones": [{"name": "web"}, {"name": "old"}], "lifecycle": {"retention": "8s"}});
    create_tenant(&client, manifest).await?;
    wait_for_phase(&client, "found-shrink", Phase::Ready).await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let patch = json!({"spec": {"zones": [{"name": "web"}]}});
    tenants
        .patch(
            "found-shrink",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    let marked = eventually("retention mark", Duration::from_secs(20), || async {
        let ns = namespaces.get("found-shrink-old").await?;
        Ok(ns.annotations().get("enclave.dev/purge-after").cloned())
    })
    .await?;
    let deadline: k8s_openapi::jiff::Timestamp = marked.parse()?;
    assert!(
        namespaces
            .get("found-shrink-old")
            .await?
            .metadata
            .deletion_timestamp
            .is_none()
    );
    eventually("retained namespace purged", WAIT, || async {
        let ns = namespaces.get_opt("found-shrink-old").await?;
        Ok(ns
            .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
            .then_some(()))
    })
    .await?;
    assert!(k8s_openapi::jiff::Timestamp::now() >= deadline);
    assert!(namespaces.get_opt("found-shrink-web").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn control_plane_enforces_rbac() -> Result<()> {
    let nobody = env()
        .client_as("mallory@example.com", &["system:authenticated"])
        .await?;
    let result = Api::<Namespace>::all(nobody)
        .list(&kube::api::ListParams::default())
        .await;
    match result {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{}", status.message),
        other => panic!("a user with no bindings listed namespaces: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn pod_security_refuses_a_privileged_pod_in_a_tenant_namespace() -> Result<()> {
    let client = env().client().await?;
    create_tenant(&client, tenant("found-psa")).await?;
    wait_for_phase(&client, "found-psa", Phase::Ready).await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}
    }))?;
    let result = Api::<Pod>::namespaced(client, "found-psa-app")
        .create(&PostParams::default(), &pod)
        .await;
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                status.message
            );
        }
        other => panic!("privileged pod admitted: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available_on_the_fake_nodes() -> Result<()> {
    let client = env().client().await?;
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "found-deploy"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    }))?;
    let api = Api::<Deployment>::namespaced(client.clone(), "found-deploy");
    eventually("default service account", WAIT, || async {
        Ok(
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                client.clone(),
                "found-deploy",
            )
            .get_opt("default")
            .await?
            .map(|_| ()),
        )
    })
    .await?;
    api.create(&PostParams::default(), &deployment).await?;
    eventually("3 available replicas", WAIT, || async {
        let d = api.get("web").await?;
        Ok((d.status.and_then(|s| s.available_replicas) == Some(3)).then_some(()))
    })
    .await?;
    let pods = Api::<Pod>::namespaced(client, "found-deploy")
        .list(&kube::api::ListParams::default())
        .await?;
    assert_eq!(pods.items.len(), 3);
    assert!(pods.items.iter().all(|p| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with("kwok-node"))
    }));
    Ok(())
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics() -> Result<()> {
    let addr = env().admin_addr;
    let get = |path: &str| -> Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr)?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    };
    let ready = eventually("admin server", Duration::from_secs(10), || async {
        Ok(get("/readyz").ok())
    })
    .await?;
    assert!(
        ready.starts_with("HTTP/1.0 200") || ready.starts_with("HTTP/1.1 200"),
        "{ready}"
    );
    assert!(get("/livez")?.contains("ok"));
    let metrics = get("/metrics")?;
    assert!(metrics.contains("enclave_reconciles_total"), "{metrics}");
    assert!(
        metrics.contains("enclave_reconcile_duration_seconds"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() -> Result<()> {
    let env = env();
    for (field, needle) in [
        ("tenant.spec.lifecycle.retention", "at most 30 days"),
        (
            "tenant.spec.zones.allowFrom",
            "Zones of the same tenant allowed to reach",
        ),
        (
            "tenant.status.purgeAfter",
            "retained data of a deleted or decommissioned tenant is destroyed",
        ),
    ] {
        // The API server publishes a new CRD's OpenAPI within seconds, not at once.
        let text = eventually(
            &format!("kubectl explain {field}"),
            Duration::from_secs(30),
            || async {
                let out = env.kubectl().args(["explain", field]).output()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                Ok((out.status.success() && !text.is_empty()).then_some(text))
            },
        )
        .await?;
        assert!(text.contains(needle), "kubectl explain {field}:\n{text}");
    }
    let out = env.kubectl().args(["get", "tnt"]).output()?;
    assert!(
        out.status.success(),
        "short name `tnt` not served: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn security_options_reach_every_zone_and_follow_the_spec() -> Result<()> {
    let client = env().client().await?;
    let mut manifest = tenant("sec-opts");
    manifest["spec"] = json!({
        "zones": [{"name": "web"}, {"name": "app"}],
        "security": {"passwordPolicy": "Strict", "downloadThreshold": "500Mi"}
    });
    create_tenant(&client, manifest).await?;
    wait_for_phase(&client, "sec-opts", Phase::Ready).await?;
    for zone in ["web", "app"] {
        let data = Api::<ConfigMap>::namespaced(client.clone(), &format!("sec-opts-{zone}"))
            .get("enclave-security")
            .await?
            .data
            .unwrap_or_default();
        assert_eq!(data["password.minLength"], "16", "{zone}");
        assert_eq!(data["password.hash.algorithm"], "argon2id");
        assert_eq!(data["download.thresholdBytesPerHour"], "524288000");
    }
    // Changed in the spec: reflected at once, in place.
    Api::<Tenant>::all(client.clone())
        .patch(
            "sec-opts",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"security": {"passwordPolicy": "Standard", "downloadThreshold": null}}})),
        )
        .await?;
    let configs = Api::<ConfigMap>::namespaced(client.clone(), "sec-opts-app");
    let data = eventually("the changed security options", WAIT, || async {
        let data = configs
            .get("enclave-security")
            .await?
            .data
            .unwrap_or_default();
        Ok((data.get("password.minLength").map(String::as_str) == Some("8")).then_some(data))
    })
    .await?;
    assert!(
        !data.contains_key("download.thresholdBytesPerHour"),
        "{data:?}"
    );
    Ok(())
}
