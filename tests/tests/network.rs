//! What the network really allows, on a real control plane: no ipBlock Enclave writes reaches
//! another tenant's pods (whichever way the network plugin reads ipBlocks), the firewall
//! reaches the shared ingress controller through the tenant's Ingresses, the exposure report
//! reads foreign policies exactly, and the guard judges Tenants by the live configuration.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::Tenant;
use enclave_operator::config::NetworkConfig;
use enclave_operator::exposure::{cluster_reach, selects};
use enclave_tests::harness::{OPERATOR_NAMESPACE, create_tenant, env, eventually};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const ALLOW: &str = "nginx.ingress.kubernetes.io/whitelist-source-range";
const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";

/// The Tenant once its status reports the network (the `Isolated` condition) for the
/// current generation and `done` holds.
async fn observed(client: &Client, name: &str, done: impl Fn(&Tenant) -> bool) -> Result<Tenant> {
    let api = Api::<Tenant>::all(client.clone());
    let found = eventually(&format!("tenant {name} observed"), WAIT, || async {
        let t = api.get(name).await?;
        let current = t.status.as_ref().is_some_and(|s| {
            s.observed_generation == t.metadata.generation
                && s.conditions.iter().any(|c| c.type_ == "Isolated")
        });
        Ok((current && done(&t)).then_some(t))
    })
    .await;
    if found.is_err() {
        let status = api.get(name).await?.status;
        eprintln!("{name}: {}", serde_json::to_string_pretty(&status)?);
    }
    found
}

fn isolated(tenant: &Tenant) -> (String, String) {
    let c = tenant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Isolated"))
        .unwrap();
    (c.status.clone(), c.message.clone())
}

async fn policies_of(client: &Client, namespaces: &[String]) -> Result<Vec<NetworkPolicy>> {
    let mut all = Vec::new();
    for ns in namespaces {
        all.extend(
            Api::<NetworkPolicy>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    Ok(all)
}

#[tokio::test]
async fn no_cidr_rule_reaches_another_tenants_pods() -> Result<()> {
    let client = env().client().await?;
    // A tenant whose egress opens the whole internet on 443, with backups (whose pods reach
    // the object store, 0.0.0.0/0 by default), and another tenant facing the internet.
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "net-wide-s3"},
                "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}}))?,
        )
        .await?;
    create_tenant(
        &client,
        "net-wide",
        json!({
            "zones": [{"name": "app", "ports": [{"port": 8080}]}],
            "egress": [{"cidr": "0.0.0.0/0", "ports": [{"port": 443}]}, {"cidr": "::/0", "ports": [{"port": 443}]}],
            "volumes": [{"name": "db", "zone": "app", "size": "1Gi"}],
            "backup": {"schedule": "0 2 * * *",
                "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "net-wide-s3"}}
        }),
    )
    .await?;
    create_tenant(
        &client,
        "net-shop",
        json!({"zones": [{"name": "web", "exposure": "Internet", "ports": [{"port": 443}]}]}),
    )
    .await?;
    let backup_policy = || async {
        Ok(
            Api::<NetworkPolicy>::namespaced(client.clone(), "net-wide-app")
                .get_opt("enclave-backup-egress")
                .await?,
        )
    };
    eventually("the backup egress policy", WAIT, backup_policy).await?;
    let wide = observed(&client, "net-wide", |_| true).await?;
    let shop = observed(&client, "net-shop", |_| true).await?;
    let namespaces = ["net-wide-app".to_string(), "net-shop-web".to_string()];
    let policies = policies_of(&client, &namespaces).await?;
    let with_blocks = policies
        .iter()
        .filter(|p| {
            serde_json::to_string(&p.spec)
                .unwrap_or_default()
                .contains("ipBlock")
        })
        .count();
    assert!(
        with_blocks >= 3,
        "the wide egress, the backup store and the shop's firewall"
    );

    // Where the plugin matches ipBlocks against pod addresses (Calico, the conformance
    // tests): no ipBlock of either tenant reaches the cluster's ranges.
    let cluster = NetworkConfig::default().cluster_cidrs;
    assert_eq!(cluster_reach(&policies, &cluster), Vec::<String>::new());
    // As the policies were written before: the same blocks without their exceptions do.
    let mut stripped = policies.clone();
    for policy in &mut stripped {
        let mut value = serde_json::to_value(&*policy)?;
        strip_except(&mut value);
        *policy = serde_json::from_value(value)?;
    }
    assert!(
        cluster_reach(&stripped, &cluster).len() >= 3,
        "{:?}",
        cluster_reach(&stripped, &cluster)
    );

    // Where ipBlocks never match pods: only selectors could, and none of the wide tenant's
    // egress selects the shop's namespace, nor the shop's ingress the wide tenant's.
    let labels = |name: &str| {
        let client = client.clone();
        let name = name.to_string();
        async move {
            Ok::<_, anyhow::Error>(
                Api::<Namespace>::all(client)
                    .get(&name)
                    .await?
                    .metadata
                    .labels
                    .unwrap_or_default(),
            )
        }
    };
    let (wide_labels, shop_labels) = (labels("net-wide-app").await?, labels("net-shop-web").await?);
    for policy in &policies {
        let spec = policy.spec.as_ref().context("spec")?;
        let ns = policy.namespace().unwrap_or_default();
        let (peers, other): (Vec<_>, _) = if ns == "net-wide-app" {
            (
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten())
                    .collect(),
                &shop_labels,
            )
        } else {
            (
                spec.ingress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.from.iter().flatten())
                    .collect(),
                &wide_labels,
            )
        };
        for peer in peers {
            if let Some(selector) = &peer.namespace_selector {
                assert!(
                    !selects(selector, other),
                    "{ns}/{}: {selector:?} selects the other tenant",
                    policy.name_any()
                );
            }
        }
    }

    // The report says so: the egress names the exceptions, and both tenants are isolated.
    let egress: Vec<String> = wide
        .status
        .as_ref()
        .map(|s| s.egress.iter().map(|e| e.to.clone()).collect())
        .unwrap_or_default();
    assert!(
        egress.contains(
            &"cidr:0.0.0.0/0 except 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10"
                .to_string()
        ),
        "{egress:?}"
    );
    for tenant in [&wide, &shop] {
        let (status, message) = isolated(tenant);
        assert_eq!(status, "True", "{}: {message}", tenant.name_any());
    }

    // A tenant CIDR inside the cluster's ranges is refused by the API server, naming it.
    let error = create_tenant(
        &client,
        "net-inside",
        json!({"zones": [{"name": "app"}], "egress": [{"cidr": "10.0.128.0/24", "ports": [{"port": 5432}]}]}),
    )
    .await
    .expect_err("a CIDR of the pod range");
    let message = error.to_string();
    assert!(
        message.contains("spec.egress[0].cidr") && message.contains("cluster"),
        "{message}"
    );
    Ok(())
}

fn strip_except(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("except");
            map.values_mut().for_each(strip_except);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_except),
        _ => {}
    }
}

#[tokio::test]
async fn the_firewall_reaches_the_ingress_controller_through_every_ingress() -> Result<()> {
    let client = env().client().await?;
    create_tenant(
        &client,
        "net-fw",
        json!({
            "access": {"admins": [{"kind": "Group", "name": "net-fw-admins"}]},
            "zones": [{"name": "web", "exposure": "Internet", "ports": [{"port": 443}]}],
            "tls": {"dnsNames": ["shop.fw.example"]},
            "firewall": {"allowCidrs": ["198.51.100.0/24"], "denyCidrs": ["198.51.100.128/25"]}
        }),
    )
    .await?;
    observed(&client, "net-fw", |_| true).await?;
    let admin = env()
        .client_as(
            "carol@fw.example",
            &["net-fw-admins", "system:authenticated"],
        )
        .await?;
    let ingresses = Api::<Ingress>::namespaced(admin.clone(), "net-fw-web");
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "shop"},
        "spec": {"rules": [{"host": "shop.fw.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 443}}}}]}}]}
    }))?;
    // Given the firewall as it is admitted (the guard's mutation): never served without it.
    let created = ingresses.create(&PostParams::default(), &ingress).await?;
    let annotations = created.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        (annotations.get(ALLOW), annotations.get(DENY)),
        (
            Some(&"198.51.100.0/24".to_string()),
            Some(&"198.51.100.128/25".to_string())
        ),
        "{annotations:?}"
    );
    let carried = |allow: &'static str, deny: Option<&'static str>| {
        let ingresses = ingresses.clone();
        move || {
            let ingresses = ingresses.clone();
            async move {
                let live = ingresses.get("shop").await?;
                let annotations = live.metadata.annotations.clone().unwrap_or_default();
                let ok = annotations.get(ALLOW).map(String::as_str) == Some(allow)
                    && annotations.get(DENY).map(String::as_str) == deny;
                Ok(ok.then_some(live))
            }
        }
    };
    eventually(
        "the firewall on the tenant's Ingress",
        WAIT,
        carried("198.51.100.0/24", Some("198.51.100.128/25")),
    )
    .await?;
    let tenant = observed(&client, "net-fw", |t| {
        t.status.as_ref().is_some_and(|s| !s.ingresses.is_empty())
    })
    .await?;
    let reported: Vec<(String, String, String)> = tenant
        .status
        .as_ref()
        .unwrap()
        .ingresses
        .iter()
        .map(|i| (i.zone.clone(), i.name.clone(), i.firewall.clone()))
        .collect();
    assert_eq!(reported, [("web".into(), "shop".into(), "Applied".into())]);
    assert_eq!(isolated(&tenant).0, "True", "{}", isolated(&tenant).1);

    // The tenant admin can neither widen it, nor remove it, nor add another spelling: each
    // change is undone as it is admitted.
    for (what, annotations) in [
        ("widen", json!({ALLOW: "0.0.0.0/0"})),
        ("remove", json!({ALLOW: null, DENY: null})),
        (
            "add an allowlist",
            json!({"nginx.ingress.kubernetes.io/allowlist-source-range": "0.0.0.0/0"}),
        ),
    ] {
        let patched = ingresses
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await?;
        let kept = patched.metadata.annotations.unwrap_or_default();
        assert_eq!(
            (
                kept.get(ALLOW).map(String::as_str),
                kept.get(DENY).map(String::as_str),
                kept.contains_key("nginx.ingress.kubernetes.io/allowlist-source-range")
            ),
            (Some("198.51.100.0/24"), Some("198.51.100.128/25"), false),
            "{what}: {kept:?}"
        );
    }
    // Served by the controller that reads the firewall, and by no other.
    let live = ingresses.get("shop").await?;
    assert_eq!(
        live.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref()),
        Some("nginx")
    );
    let error = ingresses
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingressClassName": "alb"}})),
        )
        .await
        .expect_err("another class");
    assert!(
        error.to_string().contains("spec.ingressClassName alb"),
        "{error}"
    );
    // What would go past the filter is refused outright.
    let error = ingresses
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/ssl-passthrough": "true"}}})),
        )
        .await
        .expect_err("ssl-passthrough");
    assert!(error.to_string().contains("ssl-passthrough"), "{error}");

    // The platform changes the firewall: every Ingress follows.
    Api::<Tenant>::all(client.clone())
        .patch(
            "net-fw",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"firewall": {"allowCidrs": ["192.0.2.0/24"], "denyCidrs": []}}}),
            ),
        )
        .await?;
    eventually(
        "the changed firewall on the Ingress",
        WAIT,
        carried("192.0.2.0/24", None),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_report_reads_foreign_policies_exactly() -> Result<()> {
    let client = env().client().await?;
    create_tenant(
        &client,
        "net-exact",
        json!({"zones": [{"name": "app", "ports": [{"port": 8080}]}],
            "contacts": [{"email": "soc@exact.example"}, {"email": "billing@exact.example", "role": "Billing"}]}),
    )
    .await?;
    observed(&client, "net-exact", |_| true).await?;
    // As the platform team (break-glass past the guard), a policy for some pods, with a port
    // range, from namespaces chosen by an expression.
    let foreign: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "metrics"},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                {"key": "team", "operator": "In", "values": ["observability"]}]}}],
                "ports": [{"port": 9000, "endPort": 9100}]}]}
    }))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), "net-exact-app")
        .create(&PostParams::default(), &foreign)
        .await?;
    let tenant = observed(&client, "net-exact", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.exposure.iter().any(|e| e.port == 9000))
    })
    .await?;
    let entry = tenant
        .status
        .as_ref()
        .unwrap()
        .exposure
        .iter()
        .find(|e| e.port == 9000)
        .unwrap()
        .clone();
    assert_eq!(
        (entry.end_port, entry.from.as_str(), entry.pods.as_deref()),
        (
            Some(9100),
            "namespaces:team in (observability)",
            Some("app=api")
        )
    );
    let (status, message) = isolated(&tenant);
    assert_eq!(status, "False");
    assert!(
        message
            .contains("app:9000-9100/Tcp from namespaces:team in (observability) (pods app=api)"),
        "{message}"
    );
    // An incident (R14): opened at once, for the security contact, announced by an Event.
    let incident = tenant.status.as_ref().unwrap().incidents[0].clone();
    assert_eq!(
        (
            incident.type_.as_str(),
            incident.severity.as_str(),
            incident.contacts.clone()
        ),
        (
            "IsolationBroken",
            "critical",
            vec!["soc@exact.example".to_string()]
        )
    );
    assert!(incident.notified_at.is_some() && incident.resolved_at.is_none());
    let events = Api::<k8s_openapi::api::events::v1::Event>::all(client.clone())
        .list(&ListParams::default().fields("regarding.name=net-exact"))
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("IncidentOpened")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("soc@exact.example"))),
        "{:?}",
        events.items.iter().map(|e| &e.note).collect::<Vec<_>>()
    );
    // The policy gone: isolated again, the incident resolved and kept.
    Api::<NetworkPolicy>::namespaced(client.clone(), "net-exact-app")
        .delete("metrics", &kube::api::DeleteParams::default())
        .await?;
    let tenant = observed(&client, "net-exact", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.incidents.first().is_some_and(|i| i.resolved_at.is_some()))
    })
    .await?;
    assert_eq!(isolated(&tenant).0, "True");
    Ok(())
}

#[tokio::test]
async fn the_guard_judges_tenants_by_the_live_configuration() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let facing = |port: i32| -> Result<Tenant> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "net-port"},
            "spec": {"zones": [{"name": "web", "exposure": "Internet", "ports": [{"port": port}]}]}
        }))?)
    };
    // The example configuration allows 8443 beside the defaults: so does the guard.
    tenants.create(&dry_run, &facing(8443)?).await?;
    tenants
        .create(&dry_run, &facing(9443)?)
        .await
        .expect_err("9443 is not in the example's internetPorts");
    // The platform swaps 8443 for 9443; the guard follows the reload.
    let path = &env().config_file;
    let original = std::fs::read_to_string(path)?;
    let changed = original.replace(", 8443]", ", 9443]");
    assert_ne!(changed, original, "the example lists 8443 last");
    std::fs::write(path, &changed)?;
    let outcome = eventually("the guard following the reload", WAIT, || async {
        let refused = tenants.create(&dry_run, &facing(8443)?).await.is_err();
        let admitted = tenants.create(&dry_run, &facing(9443)?).await.is_ok();
        Ok((refused && admitted).then_some(()))
    })
    .await;
    std::fs::write(path, &original)?;
    outcome?;
    let error = tenants
        .create(&dry_run, &facing(22)?)
        .await
        .expect_err("22");
    assert!(
        error
            .to_string()
            .contains("port 22 may not face the internet"),
        "{error}"
    );
    Ok(())
}
