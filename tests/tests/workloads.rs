//! N+1 workloads on the kwok nodes: available with a spare on distinct nodes, the PDB refusing
//! an eviction below N, and the redundancy condition following lost and recovered pods.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

async fn condition(
    tenants: &Api<Tenant>,
    name: &str,
    type_: &str,
) -> Result<Option<(String, String)>> {
    let t = tenants.get(name).await?;
    Ok(t.status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == type_))
        .map(|c| (c.status, c.reason)))
}

async fn set_unschedulable(client: &kube::Client, unschedulable: bool) -> Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    for node in nodes.list(&ListParams::default()).await? {
        let name = node.metadata.name.context("node name")?;
        nodes
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
            )
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn workloads_run_n_plus_one_and_report_lost_redundancy() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "wl"},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "app", "ports": [{"port": 8080}], "allowFrom": ["dmz"]}],
            "workloads": [
                {"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 2, "ports": [{"port": 443}]},
                {"name": "api", "zone": "app", "image": "registry.example/api:1", "capacity": 1, "ports": [{"port": 8080}]}
            ]
        }
    }))?;
    tenants.create(&PostParams::default(), &tenant).await?;

    // N+1 available, the spare on its own node, and the tenant says so.
    eventually("workloads redundant", WAIT, || async {
        let t = tenants.get("wl").await?;
        let status = t.status.unwrap_or_default();
        let redundant = status
            .conditions
            .iter()
            .any(|c| c.type_ == "WorkloadsRedundant" && c.status == "True");
        Ok((redundant
            && status.phase == Some(Phase::Ready)
            && status.ready_workloads.as_deref() == Some("2/2"))
        .then_some(()))
    })
    .await?;
    let web_pods = Api::<Pod>::namespaced(client.clone(), "wl-dmz")
        .list(&ListParams::default().labels("enclave.dev/workload=web"))
        .await?;
    let nodes: BTreeSet<String> = web_pods
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(web_pods.items.len(), 3, "capacity 2 runs 3");
    assert_eq!(nodes.len(), 3, "one replica per node: {nodes:?}");
    let deployment = Api::<Deployment>::namespaced(client.clone(), "wl-app")
        .get("api")
        .await?;
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(2));

    // With no node to reschedule on, an eviction down to N is allowed, and one below N is refused.
    set_unschedulable(&client, true).await?;
    let api_pods = Api::<Pod>::namespaced(client.clone(), "wl-app");
    let names: Vec<String> = api_pods
        .list(&ListParams::default().labels("enclave.dev/workload=api"))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2);
    eventually("the budget allows one disruption", WAIT, || async {
        let pdb = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
            client.clone(),
            "wl-app",
        )
        .get("api")
        .await?;
        Ok((pdb.status.map(|s| s.disruptions_allowed) == Some(1)).then_some(()))
    })
    .await?;
    api_pods.evict(&names[0], &EvictParams::default()).await?;
    eventually("RedundancyLost", WAIT, || async {
        Ok(condition(&tenants, "wl", "WorkloadsRedundant")
            .await?
            .filter(|(s, r)| s == "False" && r == "RedundancyLost")
            .map(|_| ()))
    })
    .await?;
    let t = tenants.get("wl").await?;
    assert_eq!(
        t.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Degraded)
    );
    // The PDB now allows no disruption: the API server answers the eviction with 429 (which
    // kube-rs retries), and the pod stays.
    let pdb = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        client.clone(),
        "wl-app",
    )
    .get("api")
    .await?;
    assert_eq!(pdb.status.map(|s| s.disruptions_allowed), Some(0));
    match tokio::time::timeout(
        Duration::from_secs(10),
        api_pods.evict(&names[1], &EvictParams::default()),
    )
    .await
    {
        Err(_elapsed) => {}
        Ok(Err(kube::Error::Api(status))) => assert_eq!(status.code, 429, "{}", status.message),
        Ok(other) => panic!("an eviction below N was allowed: {other:?}"),
    }
    let survivor = api_pods.get(&names[1]).await?;
    assert!(
        survivor.metadata.deletion_timestamp.is_none(),
        "the last replica above N-1 was evicted"
    );

    // Nodes back: the replacement is scheduled and redundancy returns.
    set_unschedulable(&client, false).await?;
    eventually("redundancy restored", WAIT, || async {
        Ok(condition(&tenants, "wl", "WorkloadsRedundant")
            .await?
            .filter(|(s, _)| s == "True")
            .map(|_| ()))
    })
    .await?;
    Ok(())
}
