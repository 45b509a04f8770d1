//! Isolation on a real control plane: the NetworkPolicies of a three-zone tenant as applied,
//! a tenant admin's escape attempts refused by the API server, and the same admin doing their
//! real job.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn ready_tenant(client: &Client, name: &str, spec: Value) -> Result<Tenant> {
    let tenant: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}),
    )?;
    let api = Api::<Tenant>::all(client.clone());
    api.create(&PostParams::default(), &tenant).await?;
    eventually(&format!("tenant {name} Ready"), WAIT, || async {
        let t = api.get(name).await?;
        let ready = t.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Ready) && s.observed_generation == t.metadata.generation
        });
        Ok(ready.then_some(t))
    })
    .await
}

fn three_zones() -> Value {
    json!({
        "access": {"admins": [{"kind": "Group", "name": "iso-admins"}]},
        "zones": [
            {"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]},
            {"name": "app", "ports": [{"port": 8080}], "allowFrom": ["dmz"]},
            {"name": "data", "ports": [{"port": 5432}], "allowFrom": ["app"]}
        ],
        "firewall": {"allowCidrs": ["0.0.0.0/0"], "denyCidrs": ["203.0.113.0/24"]},
        "egress": [{"zone": "app", "cidr": "198.51.100.0/24", "ports": [{"port": 443}]}],
        "quota": {"cpu": "4", "memory": "8Gi", "pods": 20}
    })
}

/// `(from, ports)` of each ingress rule of a policy, as readable strings.
fn ingress_summary(policy: &NetworkPolicy) -> Vec<String> {
    let spec = policy.spec.as_ref().unwrap();
    spec.ingress
        .iter()
        .flatten()
        .map(|rule| {
            let from: Vec<String> = rule.from.iter().flatten().map(peer_summary).collect();
            let ports: Vec<String> = rule
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{:?}/{}",
                        p.port.as_ref().unwrap(),
                        p.protocol.as_deref().unwrap_or("TCP")
                    )
                })
                .collect();
            format!("{} -> {}", from.join("+"), ports.join(","))
        })
        .collect()
}

fn peer_summary(peer: &k8s_openapi::api::networking::v1::NetworkPolicyPeer) -> String {
    if let Some(block) = &peer.ip_block {
        return format!(
            "cidr {} except {:?}",
            block.cidr,
            block.except.clone().unwrap_or_default()
        );
    }
    let labels = peer
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    match labels.get("enclave.dev/zone") {
        Some(zone) => format!("zone {zone}"),
        None => format!("namespace {labels:?}"),
    }
}

#[tokio::test]
async fn three_zone_tenant_gets_exactly_the_declared_network_policies() -> Result<()> {
    let client = env().client().await?;
    let tenant = ready_tenant(&client, "iso-net", three_zones()).await?;
    let uid = tenant.uid().context("uid")?;
    let get = |ns: &str, name: &str| {
        let api = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
        let name = name.to_string();
        async move { api.get(&name).await }
    };
    for zone in ["dmz", "app", "data"] {
        let ns = format!("iso-net-{zone}");
        let names: Vec<String> = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        assert_eq!(
            names,
            ["enclave-default-deny", "enclave-egress", "enclave-ingress"],
            "{ns}"
        );
        let deny = get(&ns, "enclave-default-deny").await?.spec.unwrap();
        assert_eq!(deny.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert!(deny.ingress.is_none() && deny.egress.is_none());
    }
    assert_eq!(
        ingress_summary(&get("iso-net-dmz", "enclave-ingress").await?),
        [
            r#"namespace {"kubernetes.io/metadata.name": "ingress-nginx"} -> Int(443)/TCP"#,
            r#"cidr 0.0.0.0/0 except ["203.0.113.0/24", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"] -> Int(443)/TCP"#
        ]
    );
    assert_eq!(
        ingress_summary(&get("iso-net-app", "enclave-ingress").await?),
        ["zone dmz -> Int(8080)/TCP"]
    );
    assert_eq!(
        ingress_summary(&get("iso-net-data", "enclave-ingress").await?),
        ["zone app -> Int(5432)/TCP"]
    );
    // Zone peers are selected by the tenant's uid, not its name.
    let app_ingress = get("iso-net-app", "enclave-ingress").await?;
    let selector = app_ingress.spec.unwrap().ingress.unwrap()[0]
        .from
        .clone()
        .unwrap()[0]
        .namespace_selector
        .clone()
        .unwrap();
    assert_eq!(
        selector.match_labels.unwrap()["enclave.dev/tenant-uid"],
        uid
    );
    // Egress: DNS everywhere; app also reaches data on 5432 and the payment provider on 443.
    let egress = get("iso-net-app", "enclave-egress")
        .await?
        .spec
        .unwrap()
        .egress
        .unwrap();
    let targets: Vec<String> = egress
        .iter()
        .flat_map(|r| r.to.iter().flatten().map(peer_summary))
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(
        targets[1] == "zone data" && targets[2].starts_with("cidr 198.51.100.0/24"),
        "{targets:?}"
    );
    let dmz_egress = get("iso-net-dmz", "enclave-egress")
        .await?
        .spec
        .unwrap()
        .egress
        .unwrap();
    assert_eq!(dmz_egress.len(), 2, "dmz: DNS and app only");

    // A deleted policy comes back.
    Api::<NetworkPolicy>::namespaced(client.clone(), "iso-net-data")
        .delete("enclave-default-deny", &DeleteParams::default())
        .await?;
    eventually("default-deny restored", Duration::from_secs(20), || async {
        Ok(
            Api::<NetworkPolicy>::namespaced(client.clone(), "iso-net-data")
                .get_opt("enclave-default-deny")
                .await?
                .map(|_| ()),
        )
    })
    .await?;
    // Quotas and container defaults per zone.
    // spec.quota is the tenant's total: 20 pods split over the three zones, nothing used yet.
    let mut pods = Vec::new();
    for zone in ["dmz", "app", "data"] {
        let quota = Api::<ResourceQuota>::namespaced(client.clone(), &format!("iso-net-{zone}"))
            .get("enclave-quota")
            .await?;
        pods.push(quota.spec.unwrap().hard.unwrap()["pods"].0.clone());
    }
    assert_eq!(pods, ["7", "7", "6"]);
    Api::<LimitRange>::namespaced(client.clone(), "iso-net-app")
        .get("enclave-limits")
        .await?;
    Ok(())
}

/// What the API server answered an attempt: `Ok` when it was allowed.
async fn attempt<F>(what: &str, call: F) -> (String, Result<(), kube::Error>)
where
    F: std::future::Future<Output = Result<(), kube::Error>>,
{
    (what.to_string(), call.await)
}

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn tenant_admin_escape_attempts_are_refused() -> Result<()> {
    let admin_client = env().client().await?;
    ready_tenant(&admin_client, "iso-esc", three_zones()).await?;
    ready_tenant(
        &admin_client,
        "iso-other",
        json!({"access": {"admins": [{"kind": "User", "name": "someone-else"}]}}),
    )
    .await?;
    let secret: Secret =
        object(json!({"metadata": {"name": "db-password"}, "stringData": {"password": "s3cret"}}));
    Api::<Secret>::namespaced(admin_client.clone(), "iso-other-data")
        .create(&PostParams::default(), &secret)
        .await?;

    let me = env()
        .client_as("alice@iso.example", &["iso-admins", "system:authenticated"])
        .await?;
    let ns = "iso-esc-app";
    let pp = PostParams::default();
    let patch = PatchParams::default();
    let np = Api::<NetworkPolicy>::namespaced(me.clone(), ns);
    let allow_all: NetworkPolicy = object(
        json!({"metadata": {"name": "allow-all"}, "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}]}}),
    );
    let binding = |role: &str, kind: &str| -> RoleBinding {
        object(
            json!({"metadata": {"name": format!("grab-{}", role.replace(':', "-"))}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": [{"kind": "User", "name": "alice@iso.example", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
    };
    let relabel =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    let unlabel = json!({"metadata": {"labels": {"enclave.dev/tenant-uid": "stolen"}}});
    let tenants = Api::<Tenant>::all(me.clone());
    let attempts = vec![
        attempt("edit a NetworkPolicy", async { np.patch("enclave-default-deny", &patch, &Patch::Merge(json!({"spec": {"policyTypes": ["Ingress"]}}))).await.map(|_| ()) }).await,
        attempt("delete a NetworkPolicy", async { np.delete("enclave-default-deny", &DeleteParams::default()).await.map(|_| ()) }).await,
        attempt("create an allow-all NetworkPolicy", async { np.create(&pp, &allow_all).await.map(|_| ()) }).await,
        attempt("delete the ResourceQuota", async { Api::<ResourceQuota>::namespaced(me.clone(), ns).delete("enclave-quota", &DeleteParams::default()).await.map(|_| ()) }).await,
        attempt("raise the ResourceQuota", async { Api::<ResourceQuota>::namespaced(me.clone(), ns).patch("enclave-quota", &patch, &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}}))).await.map(|_| ()) }).await,
        attempt("delete the LimitRange", async { Api::<LimitRange>::namespaced(me.clone(), ns).delete("enclave-limits", &DeleteParams::default()).await.map(|_| ()) }).await,
        attempt("weaken Pod Security on the namespace", async { Api::<Namespace>::all(me.clone()).patch(ns, &patch, &Patch::Merge(&relabel)).await.map(|_| ()) }).await,
        attempt("relabel the namespace's tenant uid", async { Api::<Namespace>::all(me.clone()).patch(ns, &patch, &Patch::Merge(&unlabel)).await.map(|_| ()) }).await,
        attempt("delete the namespace", async { Api::<Namespace>::all(me.clone()).delete(ns, &DeleteParams::default()).await.map(|_| ()) }).await,
        attempt("create a namespace", async { Api::<Namespace>::all(me.clone()).create(&pp, &object(json!({"metadata": {"name": "iso-esc-escape"}}))).await.map(|_| ()) }).await,
        attempt("bind cluster-admin", async { Api::<RoleBinding>::namespaced(me.clone(), ns).create(&pp, &binding("cluster-admin", "ClusterRole")).await.map(|_| ()) }).await,
        attempt("bind admin", async { Api::<RoleBinding>::namespaced(me.clone(), ns).create(&pp, &binding("admin", "ClusterRole")).await.map(|_| ()) }).await,
        attempt("create a Role", async { Api::<Role>::namespaced(me.clone(), ns).create(&pp, &object(json!({"metadata": {"name": "mine"}, "rules": []}))).await.map(|_| ()) }).await,
        attempt("create a ClusterRoleBinding", async { Api::<ClusterRoleBinding>::all(me.clone()).create(&pp, &object(json!({"metadata": {"name": "mine"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice@iso.example", "apiGroup": "rbac.authorization.k8s.io"}]}))).await.map(|_| ()) }).await,
        attempt("widen Enclave's admin ClusterRole", async { Api::<ClusterRole>::all(me.clone()).patch("enclave-tenant-admin", &patch, &Patch::Merge(json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}))).await.map(|_| ()) }).await,
        attempt("read another tenant's Secret", async { Api::<Secret>::namespaced(me.clone(), "iso-other-data").get("db-password").await.map(|_| ()) }).await,
        attempt("list another tenant's Secrets", async { Api::<Secret>::namespaced(me.clone(), "iso-other-data").list(&kube::api::ListParams::default()).await.map(|_| ()) }).await,
        attempt("deploy into another tenant", async { Api::<Service>::namespaced(me.clone(), "iso-other-app").create(&pp, &object(json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}}))).await.map(|_| ()) }).await,
        attempt("edit its own Tenant", async { tenants.patch("iso-esc", &patch, &Patch::Merge(json!({"spec": {"lifecycle": {"retention": "1s"}}}))).await.map(|_| ()) }).await,
        attempt("delete its own Tenant", async { tenants.delete("iso-esc", &DeleteParams::default()).await.map(|_| ()) }).await,
    ];
    let mut allowed = Vec::new();
    for (what, result) in &attempts {
        match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            other => allowed.push(format!("{what}: {other:?}")),
        }
    }
    assert!(
        allowed.is_empty(),
        "escape attempts not refused with 403:\n{}",
        allowed.join("\n")
    );
    assert!(attempts.len() >= 15);
    // Nothing changed: the tenant is still Ready and isolated as before.
    let np_admin = Api::<NetworkPolicy>::namespaced(admin_client.clone(), ns);
    assert_eq!(
        np_admin
            .get("enclave-default-deny")
            .await?
            .spec
            .unwrap()
            .policy_types
            .unwrap(),
        ["Ingress", "Egress"]
    );
    assert!(np_admin.get_opt("allow-all").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn tenant_admin_does_their_real_job() -> Result<()> {
    let admin_client = env().client().await?;
    ready_tenant(&admin_client, "iso-job", three_zones()).await?;
    let me = env()
        .client_as("bob@iso.example", &["iso-admins", "system:authenticated"])
        .await?;
    let ns = "iso-job-app";
    let pp = PostParams::default();

    let deployment: Deployment = object(json!({
        "metadata": {"name": "api"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "api", "image": "registry.example/api:1",
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true}
                    }]
                }
            }
        }
    }));
    Api::<Deployment>::namespaced(me.clone(), ns)
        .create(&pp, &deployment)
        .await?;
    Api::<Service>::namespaced(me.clone(), ns).create(&pp, &object(json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 8080}]}}))).await?;
    Api::<Secret>::namespaced(me.clone(), ns)
        .create(
            &pp,
            &object(json!({"metadata": {"name": "api-key"}, "stringData": {"key": "k"}})),
        )
        .await?;
    Api::<PersistentVolumeClaim>::namespaced(me.clone(), ns)
        .create(&pp, &object(json!({"metadata": {"name": "cache"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})))
        .await?;
    let viewer: RoleBinding = object(json!({
        "metadata": {"name": "carol-views"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "enclave-tenant-viewer"},
        "subjects": [{"kind": "User", "name": "carol@iso.example", "apiGroup": "rbac.authorization.k8s.io"}]
    }));
    Api::<RoleBinding>::namespaced(me.clone(), ns)
        .create(&pp, &viewer)
        .await?;

    // The deployment runs within the quota, its containers given the zone's defaults.
    let deployments = Api::<Deployment>::namespaced(admin_client.clone(), ns);
    eventually("2 available replicas", WAIT, || async {
        let d = deployments.get("api").await?;
        Ok((d.status.and_then(|s| s.available_replicas) == Some(2)).then_some(()))
    })
    .await?;
    // The tenant-wide usage sums the zones' quotas: two pods with the zone's default limits.
    let tenants = Api::<Tenant>::all(admin_client.clone());
    eventually("usage in status", Duration::from_secs(30), || async {
        let usage = tenants
            .get("iso-job")
            .await?
            .status
            .map(|s| s.usage)
            .unwrap_or_default();
        let want = [
            ("limits.cpu", "1/4"),
            ("limits.memory", "1Gi/8Gi"),
            ("pods", "2/20"),
        ];
        Ok(want
            .iter()
            .all(|(k, v)| usage.get(*k).map(String::as_str) == Some(*v))
            .then_some(()))
    })
    .await?;

    // The colleague can now read, but not Secrets.
    let carol = env()
        .client_as("carol@iso.example", &["system:authenticated"])
        .await?;
    Api::<Deployment>::namespaced(carol.clone(), ns)
        .get("api")
        .await?;
    let secret = Api::<Secret>::namespaced(carol, ns).get("api-key").await;
    assert!(
        matches!(secret, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{secret:?}"
    );
    // The binding the admin made is theirs: the operator's sweep leaves it alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Api::<RoleBinding>::namespaced(admin_client, ns)
        .get("carol-views")
        .await?;
    Ok(())
}

fn exposure_of(tenant: &Tenant) -> Vec<String> {
    let mut entries: Vec<String> = tenant
        .status
        .iter()
        .flat_map(|s| s.exposure.iter())
        .map(|e| format!("{}:{} {}", e.zone, e.port, e.from))
        .collect();
    entries.sort();
    entries
}

fn isolated(tenant: &Tenant) -> Option<(String, String, String)> {
    let c = tenant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Isolated")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn exposure_report_matches_the_spec_for_each_tenant_shape() -> Result<()> {
    let client = env().client().await?;
    let side_by_side = json!({"zones": [{"name": "web"}, {"name": "app", "ports": [{"port": 80}], "allowFrom": ["web"]}]});
    let shapes: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "exp-single",
            json!({"zones": [{"name": "web", "exposure": "Internet", "ports": [{"port": 443}]}]}),
            vec![
                "web:443 cidr:0.0.0.0/0 except 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10",
                "web:443 cidr:::/0 except fc00::/7",
                "web:443 ingress-controller",
            ],
        ),
        (
            "exp-three",
            three_zones(),
            vec![
                "app:8080 zone:dmz",
                "data:5432 zone:app",
                "dmz:443 cidr:0.0.0.0/0 except 203.0.113.0/24,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10",
                "dmz:443 ingress-controller",
            ],
        ),
        (
            "exp-firewall",
            json!({
                "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}, {"port": 993}]}],
                "firewall": {"allowCidrs": ["198.51.100.0/24", "11.0.0.0/8"], "denyCidrs": ["11.1.0.0/16", "198.51.0.0/16"]}
            }),
            vec![
                "dmz:443 cidr:11.0.0.0/8 except 11.1.0.0/16",
                "dmz:443 ingress-controller",
                "dmz:993 cidr:11.0.0.0/8 except 11.1.0.0/16",
                "dmz:993 ingress-controller",
            ],
        ),
        (
            "exp-egress",
            json!({"zones": [{"name": "app", "ports": [{"port": 8080}]}], "egress": [{"cidr": "198.51.100.0/24", "ports": [{"port": 443}]}]}),
            vec![],
        ),
        ("exp-left", side_by_side.clone(), vec!["app:80 zone:web"]),
        ("exp-right", side_by_side, vec!["app:80 zone:web"]),
    ];
    for (name, spec, want) in &shapes {
        let tenant = ready_tenant(&client, name, spec.clone()).await?;
        assert_eq!(exposure_of(&tenant), *want, "exposure of {name}");
        let (status, reason, message) = isolated(&tenant).context("Isolated condition")?;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "ExposureMatchesSpec"),
            "{name}: {message}"
        );
    }
    // Side by side: the left tenant's zone-to-zone rule selects its own uid, never the right's.
    let left = Api::<NetworkPolicy>::namespaced(client.clone(), "exp-left-app")
        .get("enclave-ingress")
        .await?;
    let right_uid = Api::<Tenant>::all(client.clone())
        .get("exp-right")
        .await?
        .uid()
        .context("uid")?;
    let selector = serde_json::to_string(&left.spec)?;
    assert!(!selector.contains(&right_uid));

    // An opening nobody declared makes the tenant not Isolated, naming it.
    let allow_all: NetworkPolicy = object(
        json!({"metadata": {"name": "allow-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}),
    );
    Api::<NetworkPolicy>::namespaced(client.clone(), "exp-single-web")
        .create(&PostParams::default(), &allow_all)
        .await?;
    let tenants = Api::<Tenant>::all(client.clone());
    env().reconcile_again(&client, "exp-single").await?;
    let (_, reason, message) = eventually("Isolated false", Duration::from_secs(20), || async {
        let t = tenants.get("exp-single").await?;
        Ok(isolated(&t).filter(|(status, ..)| status == "False"))
    })
    .await?;
    assert_eq!(reason, "UnexpectedExposure");
    assert!(
        message.contains("open but not declared: web:0/Tcp from anywhere"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn the_guard_refuses_what_rbac_allows_and_records_it_on_the_tenant() -> Result<()> {
    let admin_client = env().client().await?;
    ready_tenant(&admin_client, "iso-guard", json!({"access": {"admins": [{"kind": "User", "name": "dave@iso.example"}], "viewers": [{"kind": "User", "name": "erin@iso.example"}]}})).await?;
    let dave = env()
        .client_as("dave@iso.example", &["system:authenticated"])
        .await?;
    let bindings = Api::<RoleBinding>::namespaced(dave.clone(), "iso-guard-app");
    let denials_before = env()
        .metrics
        .denials
        .get_or_create(&enclave_operator::telemetry::WriteLabels {
            resource: "RoleBinding".into(),
            action: "delete".into(),
        })
        .get();

    // RBAC lets a tenant admin manage RoleBindings; the guard keeps Enclave's own.
    let refused = [
        (
            "delete the viewers binding",
            bindings
                .delete("enclave-viewers", &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "add themselves to the viewers binding",
            bindings
                .patch(
                    "enclave-viewers",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"extra": "1"}}})),
                )
                .await
                .map(|_| ()),
        ),
    ];
    for (what, result) in refused {
        match result {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403, "{what}: {}", status.message);
                assert!(
                    status.message.contains("managed by Enclave"),
                    "{what}: {}",
                    status.message
                );
            }
            other => panic!("{what} was not refused by the guard: {other:?}"),
        }
    }
    Api::<RoleBinding>::namespaced(admin_client.clone(), "iso-guard-app")
        .get("enclave-viewers")
        .await?;

    // The attempt is on the Tenant, with who and what.
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin_client.clone(), "default");
    let notes = eventually("AttemptRefused event", Duration::from_secs(10), || async {
        let list = events
            .list(
                &kube::api::ListParams::default()
                    .fields("regarding.kind=Tenant,regarding.name=iso-guard"),
            )
            .await?;
        let notes: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("AttemptRefused"))
            .filter_map(|e| e.note)
            .collect();
        Ok((notes.len() >= 2).then_some(notes))
    })
    .await?;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("dave@iso.example tried to delete RoleBinding enclave-viewers")),
        "{notes:?}"
    );
    let denials_after = env()
        .metrics
        .denials
        .get_or_create(&enclave_operator::telemetry::WriteLabels {
            resource: "RoleBinding".into(),
            action: "delete".into(),
        })
        .get();
    assert!(denials_after > denials_before);

    // A Tenant opening a port the platform does not allow to the internet is refused at admission.
    let ssh: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "iso-ssh"},
        "spec": {"zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 22}]}]}}),
    )?;
    match Api::<Tenant>::all(admin_client)
        .create(&PostParams::default(), &ssh)
        .await
    {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("port 22 may not face the internet"),
            "{}",
            status.message
        ),
        other => panic!("internet-facing port 22 accepted: {other:?}"),
    }
    Ok(())
}

/// A pod Pod Security `restricted` admits, with the zone's default limits.
fn small_pod(name: &str) -> k8s_openapi::api::core::v1::Pod {
    object(json!({
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "registry.example/app:1",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }
    }))
}

#[tokio::test]
async fn the_quota_is_the_tenants_total_whatever_is_created_at_once() -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let client = env().client().await?;
    ready_tenant(
        &client,
        "iso-quota",
        json!({"zones": [{"name": "app"}, {"name": "data"}], "quota": {"pods": 4}}),
    )
    .await?;
    let pods = |zone: &str| Api::<Pod>::namespaced(client.clone(), &format!("iso-quota-{zone}"));
    let count = || async {
        let mut n = 0;
        for zone in ["app", "data"] {
            n += pods(zone)
                .list(&kube::api::ListParams::default())
                .await?
                .items
                .len();
        }
        Ok::<_, anyhow::Error>(n)
    };
    // Six pods at once in each zone: never more than the total.
    let attempts = (0..12).map(|i| {
        let api = pods(if i % 2 == 0 { "app" } else { "data" });
        async move {
            api.create(&PostParams::default(), &small_pod(&format!("burst-{i}")))
                .await
                .is_ok()
        }
    });
    let created = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert!(
        created <= 4,
        "{created} pods admitted at once for a total of 4"
    );
    assert!(count().await? <= 4);
    // One zone alone, trying again and again while the operator rebalances: it gets what the
    // other leaves, and the tenant never holds more than 4.
    for api in [pods("data")] {
        for pod in api.list(&kube::api::ListParams::default()).await?.items {
            api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await?;
        }
    }
    let mut next = 0;
    eventually("the app zone reaching the whole total", WAIT, || {
        next += 1;
        let name = format!("more-{next}");
        let count = &count;
        let app = pods("app");
        async move {
            let _ = app.create(&PostParams::default(), &small_pod(&name)).await;
            let total = count().await?;
            assert!(total <= 4, "{total} pods for a total of 4");
            let in_app = app
                .list(&kube::api::ListParams::default())
                .await?
                .items
                .len();
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok((in_app == 4).then_some(()))
        }
    })
    .await?;
    Ok(())
}
