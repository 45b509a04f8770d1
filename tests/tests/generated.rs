//! Generated tenants: the pure builders over TenantSpecs within the schema (proptest) never
//! panic and always build, and what they build for a sample is accepted by the real API server
//! (server-side apply with `dryRun=All`): no valid Tenant can be half-applied because the API
//! server refuses one of its objects.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::Result;
use enclave_crds::Tenant;
use enclave_operator::config::{Config, ConfigFile};
use enclave_operator::desired;
use enclave_tests::controlplane::repo_root;
use enclave_tests::harness::env;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const ZONES: [&str; 5] = ["dmz", "app", "data", "ops", "edge"];
/// Public ranges (never the cluster's), and a range inside each for the deny lists.
const NETWORKS: [(&str, &str); 4] = [
    ("198.51.100.0/24", "198.51.100.16/28"),
    ("203.0.113.0/24", "203.0.113.128/25"),
    ("192.0.2.0/24", "192.0.2.0/26"),
    ("0.0.0.0/0", "198.18.0.0/15"),
];

fn ports(internet: bool) -> impl Strategy<Value = Vec<Value>> {
    let any_port = prop_oneof![Just(80), Just(443), Just(993), 1..=65535i32];
    let port = if internet {
        prop_oneof![Just(80), Just(443), Just(993)].boxed()
    } else {
        any_port.boxed()
    };
    proptest::collection::btree_set((port, any::<bool>()), 0..4).prop_map(|set| {
        set.into_iter()
            .map(|(port, udp)| json!({"port": port, "protocol": if udp { "UDP" } else { "TCP" }}))
            .collect()
    })
}

/// A TenantSpec (as JSON) the schema admits and the example configuration can honour.
fn spec() -> impl Strategy<Value = Value> {
    proptest::sample::subsequence(ZONES.to_vec(), 1..=4).prop_flat_map(|zones| {
        let n = zones.len();
        let zone = proptest::sample::select(zones.clone());
        let per_zone = proptest::collection::vec(
            (any::<bool>(), proptest::sample::subsequence(zones.clone(), 0..=n))
                .prop_flat_map(|(internet, from)| (Just(internet), Just(from), ports(internet))),
            n,
        );
        let firewall = proptest::sample::subsequence(NETWORKS.to_vec(), 0..=2)
            .prop_flat_map(|allowed| {
                let k = allowed.len();
                (Just(allowed), proptest::collection::vec(any::<bool>(), k))
            });
        let egress = proptest::collection::vec(
            (
                proptest::option::of(zone.clone()),
                prop_oneof![
                    Just("198.51.100.0/24"),
                    Just("0.0.0.0/0"),
                    Just("2001:db8::/32"),
                    Just("100.0.0.0/8")
                ],
                ports(false).prop_filter("egress needs a port", |p| !p.is_empty()),
            ),
            0..3,
        );
        let quota = proptest::option::of((1..64u32, 1..64u32, 0..200i32));
        let volumes = proptest::collection::vec((zone.clone(), 1..100u32, 0..3u8), 0..3);
        let workloads = proptest::collection::vec((zone, 1..4i32, ports(false), any::<bool>()), 0..3);
        (
            Just(zones),
            per_zone,
            firewall,
            egress,
            quota,
            volumes,
            workloads,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(zones, per_zone, (allowed, denies), egress, quota, volumes, workloads, backup, tls)| {
                    let zones: Vec<Value> = zones
                        .iter()
                        .zip(per_zone)
                        .map(|(name, (internet, from, ports))| {
                            json!({"name": name, "exposure": if internet { "Internet" } else { "Internal" },
                                "ports": ports, "allowFrom": from})
                        })
                        .collect();
                    let allow: Vec<&str> = allowed.iter().map(|(a, _)| *a).collect();
                    let deny: Vec<&str> = allowed
                        .iter()
                        .zip(denies)
                        .filter(|(_, d)| *d)
                        .map(|((_, d), _)| *d)
                        .collect();
                    let egress: Vec<Value> = egress
                        .into_iter()
                        .map(|(zone, cidr, ports)| json!({"zone": zone, "cidr": cidr, "ports": ports}))
                        .collect();
                    // Every volume mountable by N+1 replicas: shared (ReadWriteMany) or per replica.
                    let volumes: Vec<Value> = volumes
                        .into_iter()
                        .enumerate()
                        .map(|(i, (zone, size, kind))| {
                            json!({"name": format!("v{i}"), "zone": zone, "size": format!("{size}Gi"),
                                "accessMode": if kind == 0 { "ReadWriteOnce" } else { "ReadWriteMany" },
                                "perReplica": kind == 0})
                        })
                        .collect();
                    let workloads: Vec<Value> = workloads
                        .into_iter()
                        .enumerate()
                        .map(|(i, (zone, capacity, ports, mount))| {
                            let mounts: Vec<Value> = volumes
                                .iter()
                                .filter(|v| mount && v["zone"] == zone)
                                .map(|v| json!({"volume": v["name"], "mountPath": format!("/mnt/{}", v["name"].as_str().unwrap())}))
                                .collect();
                            json!({"name": format!("w{i}"), "zone": zone, "image": "registry.example/app:1",
                                "capacity": capacity, "ports": ports, "volumeMounts": mounts,
                                "resources": {"cpu": "250m", "memory": "256Mi"}, "readinessPath": "/healthz"})
                        })
                        .collect();
                    let mut spec = json!({
                        "zones": zones,
                        "firewall": {"allowCidrs": allow, "denyCidrs": deny},
                        "egress": egress,
                        "volumes": volumes,
                        "workloads": workloads,
                        "security": {"passwordPolicy": "Strict", "downloadThreshold": "1Gi"}
                    });
                    if let Some((cpu, memory, pods)) = quota {
                        spec["quota"] = json!({"cpu": cpu.to_string(), "memory": format!("{memory}Gi"), "pods": pods});
                    }
                    if backup {
                        spec["backup"] = json!({"schedule": "0 2 * * *", "destination":
                            {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "s3"}});
                    }
                    if tls {
                        spec["tls"] = json!({"dnsNames": ["shop.example.com", "www.shop.example.com"]});
                    }
                    spec
                },
            )
    })
}

fn tenant(name: &str, spec: &Value) -> Tenant {
    serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "uid": format!("00000000-0000-4000-8000-{:012}", name.len())},
        "spec": spec}),
    )
    .unwrap()
}

/// The example configuration, with the operator's endpoint as the guard would publish it.
fn config() -> Config {
    let text = std::fs::read_to_string(repo_root().join("examples/operator-config.yaml")).unwrap();
    let mut config = ConfigFile::parse(&text)
        .unwrap()
        .apply_to(&Config::default());
    config.operator_ca = Some("CA".into());
    config.broker_url = Some("https://enclave-webhook.enclave-system.svc:443/credentials".into());
    config
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_tenant_the_schema_admits_builds(spec in spec()) {
        let t = tenant("gen", &spec);
        let built = desired::desired(&t, &config());
        let built = match built {
            Ok(built) => built,
            Err(invalid) => return Err(TestCaseError::fail(format!("{}: {}", invalid.reason, invalid.message))),
        };
        let namespaces: Vec<String> = built.namespaces.iter().map(ResourceExt::name_any).collect();
        for object in built.objects() {
            let meta = &object["metadata"];
            let name = meta["name"].as_str().unwrap_or_default();
            prop_assert!(!name.is_empty() && name.len() <= 253, "{object}");
            if let Some(ns) = meta["namespace"].as_str() {
                prop_assert!(ns == "enclave-system" || namespaces.iter().any(|n| n == ns), "{ns}");
            }
            for value in meta["labels"].as_object().into_iter().flatten().map(|(_, v)| v) {
                prop_assert!(value.as_str().is_some_and(|v| v.len() <= 63), "{object}");
            }
        }
    }
}

/// Server-side applies `items` with `dryRun=All`; each refusal as a line.
async fn dry_run<K>(client: &Client, items: &[K]) -> Vec<String>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let mut refused = Vec::new();
    for item in items {
        let resource = ApiResource::erase::<K>(&());
        let api: Api<DynamicObject> = match item.meta().namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply("enclave-generated").dry_run().force();
        if let Err(error) = api
            .patch(&item.name_any(), &params, &Patch::Apply(item))
            .await
        {
            refused.push(format!("{} {}: {error}", K::kind(&()), item.name_any()));
        }
    }
    refused
}

#[tokio::test]
async fn a_sample_of_generated_tenants_is_accepted_by_the_api_server() -> Result<()> {
    let client = env().client().await?;
    let mut runner = TestRunner::deterministic();
    let strategy = spec();
    let config = config();
    let mut refused = Vec::new();
    let mut objects_sent = 0;
    for i in 0..16 {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        let t = tenant(&format!("gen-{i}"), &spec);
        let built = desired::desired(&t, &config).map_err(|e| anyhow::anyhow!(e.message))?;
        // The namespaces for real: what lives in them is only tried.
        for namespace in &built.namespaces {
            Api::<Namespace>::all(client.clone())
                .patch(
                    &namespace.name_any(),
                    &PatchParams::apply("enclave-generated").force(),
                    &Patch::Apply(namespace),
                )
                .await?;
        }
        objects_sent += built.objects().len();
        refused.extend(dry_run(&client, &built.network_policies).await);
        refused.extend(dry_run(&client, &built.role_bindings).await);
        refused.extend(dry_run(&client, &built.resource_quotas).await);
        refused.extend(dry_run(&client, &built.limit_ranges).await);
        refused.extend(dry_run(&client, &built.workloads.deployments).await);
        refused.extend(dry_run(&client, &built.workloads.stateful_sets).await);
        refused.extend(dry_run(&client, &built.workloads.disruption_budgets).await);
        refused.extend(dry_run(&client, &built.workloads.services).await);
        refused.extend(dry_run(&client, &built.storage.storage_classes).await);
        refused.extend(dry_run(&client, &built.storage.claims).await);
        let keys: Vec<_> = built
            .storage
            .keys
            .iter()
            .map(|k| k.secret.clone())
            .collect();
        refused.extend(dry_run(&client, &keys).await);
        refused.extend(dry_run(&client, &built.backup.service_accounts).await);
        refused.extend(dry_run(&client, &built.backup.cron_jobs).await);
        refused.extend(dry_run(&client, &built.backup.operator_ca).await);
        refused.extend(dry_run(&client, &built.backup.network_policies).await);
        refused.extend(dry_run(&client, &built.security).await);
        refused.extend(dry_run(&client, &built.tls.policies).await);
    }
    eprintln!("{objects_sent} objects of 16 generated tenants tried with dryRun=All");
    assert!(objects_sent > 16 * 5, "{objects_sent}");
    assert!(refused.is_empty(), "{refused:#?}");
    Ok(())
}

/// A Tenant the schema and the guard admit but the operator cannot build: `Blocked` with the
/// reason, and not one object carries its uid (nothing half-applied).
#[tokio::test]
async fn a_tenant_the_operator_cannot_build_is_blocked_with_nothing_applied() -> Result<()> {
    use enclave_crds::Phase;
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    // A default image the operator's configuration does not name.
    let unknown = tenant(
        "gen-blocked",
        &json!({"zones": [{"name": "app"}],
                "workloads": [{"name": "web", "zone": "app", "image": "default:nowhere", "capacity": 1}]}),
    );
    tenants
        .create(&kube::api::PostParams::default(), &unknown)
        .await?;
    let blocked = enclave_tests::harness::eventually(
        "gen-blocked Blocked",
        std::time::Duration::from_secs(60),
        || async {
            let t = tenants.get("gen-blocked").await?;
            Ok(t.status
                .clone()
                .filter(|s| s.phase == Some(Phase::Blocked))
                .map(|s| (t, s)))
        },
    )
    .await?;
    let (t, status) = blocked;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "UnknownImage", "{}", ready.message);
    assert!(ready.message.contains("web"), "{}", ready.message);
    let uid = t.metadata.uid.clone().unwrap();
    let inventory = enclave_tests::chaos::inventory(&client).await?;
    assert_eq!(
        inventory.objects.get(&uid).cloned().unwrap_or_default(),
        Vec::<String>::new(),
        "a blocked tenant must not be half-applied"
    );
    Ok(())
}
