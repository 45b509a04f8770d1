//! Fleet-wide patch rollout (R7): changing a default image in the operator's configuration
//! file rolls every tenant using it, one pod at a time, and no workload is ever seen with fewer
//! than N available replicas.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::Result;
use enclave_crds::Tenant;
use enclave_tests::harness::{env, eventually};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const OLD: &str = "registry.example/nginx:1.27.3";
const NEW: &str = "registry.example/nginx:1.27.4";

/// What the samplers saw of one workload (`namespace/name`).
#[derive(Debug, Default, Clone)]
struct Seen {
    samples: usize,
    min_available: Option<i32>,
    max_pods: usize,
    mid_rollout: bool,
    /// Each sample: generation/observed, updated/available/replicas of the status.
    trail: Vec<String>,
}

async fn settled_on(tenants: &Api<Tenant>, name: &str, image: &str) -> Result<Option<()>> {
    let status = tenants.get(name).await?.status.unwrap_or_default();
    let workloads = &status.workloads;
    Ok((!workloads.is_empty()
        && workloads
            .iter()
            .all(|w| w.image == image && w.updated == w.desired && w.available == w.desired))
    .then_some(()))
}

#[tokio::test]
async fn a_new_default_image_rolls_every_tenant_never_below_capacity() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    // Two tenants, three workloads of different capacities, all on `default:nginx`.
    let capacities: BTreeMap<&str, i32> = [
        ("fleet-a-app/web", 2),
        ("fleet-b-app/web", 1),
        ("fleet-b-app/api", 3),
    ]
    .into();
    for (name, workloads) in [
        (
            "fleet-a",
            json!([{"name": "web", "zone": "app", "image": "default:nginx", "capacity": 2, "ports": [{"port": 8080}]}]),
        ),
        (
            "fleet-b",
            json!([
                {"name": "web", "zone": "app", "image": "default:nginx", "capacity": 1, "ports": [{"port": 8080}]},
                {"name": "api", "zone": "app", "image": "default:nginx", "capacity": 3}
            ]),
        ),
    ] {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"zones": [{"name": "app", "ports": [{"port": 8080}]}], "workloads": workloads}
        }))?;
        tenants.create(&PostParams::default(), &tenant).await?;
    }
    for name in ["fleet-a", "fleet-b"] {
        eventually(&format!("{name} on {OLD}"), WAIT, || {
            settled_on(&tenants, name, OLD)
        })
        .await?;
    }

    // Sample every change the API server reports of the Deployments, and the pods themselves.
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    // The image is bumped only once the watch has its first list: a rollout faster than the
    // watch's start would otherwise go unseen.
    let (listed, watching) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let seen = seen.clone();
        let mut listed = Some(listed);
        let deployments = Api::<Deployment>::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher(
                deployments,
                watcher::Config::default().labels("app.kubernetes.io/managed-by=enclave-operator"),
            )
            .boxed();
            // A watch error is retried by the watcher, not the end of the sampling.
            while let Some(event) = events.next().await {
                let Ok(event) = event else {
                    eprintln!("[fleet] the watch of the Deployments: {event:?}");
                    continue;
                };
                if let watcher::Event::InitDone = event
                    && let Some(listed) = listed.take()
                {
                    let _ = listed.send(());
                }
                let (watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event else {
                    continue;
                };
                let key = format!(
                    "{}/{}",
                    d.metadata.namespace.clone().unwrap_or_default(),
                    d.metadata.name.clone().unwrap_or_default()
                );
                let status = d.status.clone().unwrap_or_default();
                let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(key).or_default();
                entry.samples += 1;
                let available = status.available_replicas.unwrap_or_default();
                entry.min_available =
                    Some(entry.min_available.map_or(available, |m| m.min(available)));
                entry.mid_rollout |= status.updated_replicas.unwrap_or_default() < desired;
                entry.trail.push(format!(
                    "rv {} gen {}/{} updated {} available {} replicas {}",
                    d.metadata.resource_version.clone().unwrap_or_default(),
                    d.metadata.generation.unwrap_or_default(),
                    status.observed_generation.unwrap_or_default(),
                    status.updated_replicas.unwrap_or_default(),
                    available,
                    status.replicas.unwrap_or_default()
                ));
            }
        })
    };
    let poll = {
        let seen = seen.clone();
        let pods = Api::<Pod>::all(client.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods
                    .list(&ListParams::default().labels("enclave.dev/workload"))
                    .await
                {
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for pod in list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                    {
                        let labels = pod.metadata.labels.clone().unwrap_or_default();
                        let key = format!(
                            "{}/{}",
                            pod.metadata.namespace.clone().unwrap_or_default(),
                            labels["enclave.dev/workload"]
                        );
                        *counts.entry(key).or_default() += 1;
                    }
                    let mut seen = seen.lock().unwrap();
                    for (key, count) in counts {
                        let entry = seen.entry(key).or_default();
                        entry.max_pods = entry.max_pods.max(count);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    tokio::time::timeout(WAIT, watching).await??;
    // The platform team bumps the image in the operator's configuration file.
    let config = std::fs::read_to_string(&env().config_file)?;
    assert!(
        config.contains(OLD),
        "the example configuration names {OLD}"
    );
    std::fs::write(&env().config_file, config.replace(OLD, NEW))?;

    for name in ["fleet-a", "fleet-b"] {
        eventually(&format!("{name} on {NEW}"), WAIT, || {
            settled_on(&tenants, name, NEW)
        })
        .await?;
    }
    watch.abort();
    poll.abort();
    let seen = seen.lock().unwrap().clone();
    println!("rollout samples: {seen:#?}");
    for (workload, capacity) in &capacities {
        let s = seen.get(*workload).cloned().unwrap_or_default();
        assert!(
            s.mid_rollout,
            "{workload}: the rollout itself was sampled: {s:?}"
        );
        // The policy's floor is N; surge-only updates keep the spare too.
        assert!(
            s.min_available.is_some_and(|m| m > *capacity),
            "{workload}: fewer than N+1={} available at some moment: {s:?}",
            capacity + 1
        );
        // One surge pod at a time: the Deployment controller bounds its ReplicaSets' replicas
        // by N+1+1, while the pods of the old one may outlive its scale-down for a moment
        // (the ReplicaSet controller deletes them after): one more is the controllers' lag,
        // not a second surge (CI saw it once).
        assert!(
            s.max_pods <= usize::try_from(capacity + 3)?,
            "{workload}: more than one surge pod at a time: {s:?}"
        );
        let (namespace, name) = workload.split_once('/').unwrap();
        let live = Api::<Deployment>::namespaced(client.clone(), namespace)
            .get(name)
            .await?;
        let rolling = live
            .spec
            .and_then(|s| s.strategy)
            .and_then(|s| s.rolling_update)
            .unwrap_or_default();
        assert_eq!(
            (rolling.max_surge, rolling.max_unavailable),
            (
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
            ),
            "{workload}: surge one, never one unavailable"
        );
    }
    // Every pod now runs the new image.
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().labels("enclave.dev/workload"))
        .await?;
    for pod in pods.items.iter().filter(|p| {
        p.metadata
            .namespace
            .as_deref()
            .is_some_and(|n| n.starts_with("fleet-"))
            && p.metadata.deletion_timestamp.is_none()
    }) {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some(NEW));
    }
    Ok(())
}
