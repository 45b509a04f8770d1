use super::egress::egress_entry;
use super::*;
use crate::desired::fixtures::tenant;
use crate::desired::{Identity, network};
use enclave_crds::{Firewall, Port};

fn report(t: &Tenant) -> Vec<ExposureEntry> {
    let identity = Identity::of(t).expect("identity");
    let config = NetworkConfig::default();
    let policies = network::zone_policies(t, &identity, &config);
    let namespaces = crate::desired::namespaces::zone_namespaces(t, &identity);
    let zones: Vec<ZoneNamespace<'_>> = t
        .spec
        .zones
        .iter()
        .zip(&namespaces)
        .map(|(z, ns)| ZoneNamespace {
            zone: &z.name,
            namespace: ns.metadata.name.as_deref().unwrap_or_default(),
            labels: ns.metadata.labels.as_ref().expect("labels"),
        })
        .collect::<Vec<_>>();
    evaluate(&zones, &policies, &config)
}

#[test]
fn built_policies_expose_exactly_what_the_spec_asks() {
    let mut t = tenant("acme");
    t.spec.zones[1].ports = vec![Port {
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    t.spec.firewall = Firewall {
        allow_cidrs: vec![],
        deny_cidrs: vec!["203.0.113.0/24".into()],
    };
    let actual = report(&t);
    assert_eq!(
        actual,
        expected(&t, &NetworkConfig::default()),
        "{:?}",
        differences(&actual, &expected(&t, &NetworkConfig::default()))
    );
    let froms: Vec<_> = actual
        .iter()
        .map(|e| format!("{}:{} {}", e.zone, e.port, e.from))
        .collect();
    assert_eq!(
        froms,
        [
            "app:8080 zone:dmz",
            "dmz:443 cidr:0.0.0.0/0 except 203.0.113.0/24,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10",
            "dmz:443 cidr:::/0 except fc00::/7",
            "dmz:443 ingress-controller"
        ]
    );
}

#[test]
fn a_namespace_without_ingress_policy_is_open_to_anywhere() {
    let t = tenant("acme");
    let labels = BTreeMap::new();
    let zones = [ZoneNamespace {
        zone: "app",
        namespace: "acme-app",
        labels: &labels,
    }];
    assert_eq!(
        evaluate(&zones, &[], &NetworkConfig::default()),
        [entry("app", 0, Protocol::Tcp, ANYWHERE)]
    );
    assert_ne!(
        evaluate(&zones, &[], &NetworkConfig::default()),
        expected(&t, &NetworkConfig::default())
    );
}

#[test]
fn an_allow_all_rule_shows_as_anywhere_on_every_port() {
    let labels = BTreeMap::new();
    let zones = [ZoneNamespace {
        zone: "app",
        namespace: "acme-app",
        labels: &labels,
    }];
    let allow_all: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "allow-all", "namespace": "acme-app"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}
    }))
    .expect("policy");
    assert_eq!(
        evaluate(&zones, &[allow_all], &NetworkConfig::default()),
        [entry("app", 0, Protocol::Tcp, ANYWHERE)]
    );
}

#[test]
fn differences_name_what_is_extra_and_missing() {
    let a = [entry("app", 22, Protocol::Tcp, ANYWHERE)];
    let e = [entry("app", 8080, Protocol::Tcp, "zone:dmz")];
    assert_eq!(
        differences(&a, &e),
        [
            "open but not declared: app:22/Tcp from anywhere",
            "declared but not open: app:8080/Tcp from zone:dmz"
        ]
    );
}

/// The report of acme's built policies plus `extra` (JSON) in its `app` zone.
fn report_with(extra: serde_json::Value) -> Vec<ExposureEntry> {
    let t = tenant("acme");
    let identity = Identity::of(&t).expect("identity");
    let config = NetworkConfig::default();
    let mut policies = network::zone_policies(&t, &identity, &config);
    let mut added: NetworkPolicy = serde_json::from_value(extra).expect("policy");
    added.metadata.namespace = Some("acme-app".into());
    policies.push(added);
    let namespaces = crate::desired::namespaces::zone_namespaces(&t, &identity);
    let zones: Vec<ZoneNamespace<'_>> = t
        .spec
        .zones
        .iter()
        .zip(&namespaces)
        .map(|(z, ns)| ZoneNamespace {
            zone: &z.name,
            namespace: ns.metadata.name.as_deref().unwrap_or_default(),
            labels: ns.metadata.labels.as_ref().expect("labels"),
        })
        .collect();
    evaluate(&zones, &policies, &config)
}

#[test]
fn a_policy_selecting_some_pods_still_exposes_the_zone() {
    let report = report_with(serde_json::json!({
        "metadata": {"name": "sneaky"},
        "spec": {"podSelector": {"matchLabels": {"app": "debug"}}, "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 22}]}]}
    }));
    let mut debug = entry("app", 22, Protocol::Tcp, ANYWHERE);
    debug.pods = Some("app=debug".into());
    assert!(report.contains(&debug), "{report:?}");
}

#[test]
fn a_port_range_is_reported_as_a_range() {
    let report = report_with(serde_json::json!({
        "metadata": {"name": "range"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 30000, "endPort": 30100}]}]}
    }));
    let mut range = entry("app", 30000, Protocol::Tcp, ANYWHERE);
    range.end_port = Some(30100);
    assert!(report.contains(&range), "{report:?}");
    assert!(
        differences(&report, &[])
            .iter()
            .any(|d| d.contains("app:30000-30100/Tcp")),
        "{:?}",
        differences(&report, &[])
    );
}

#[test]
fn a_peer_of_another_tenant_is_named_not_dropped() {
    let report = report_with(serde_json::json!({
        "metadata": {"name": "cross"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"enclave.dev/tenant-uid": "uid-globex"}}}],
            "ports": [{"port": 5432}]}]}
    }));
    assert!(
        report.contains(&entry("app", 5432, Protocol::Tcp, "tenant:uid-globex")),
        "{report:?}"
    );
}

#[test]
fn built_policies_reach_exactly_what_the_spec_asks() {
    let mut t = tenant("acme");
    t.spec.zones[1].ports = vec![Port {
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    t.spec.egress = vec![
        serde_json::from_value(serde_json::json!({
            "zone": "app", "cidr": "198.51.100.0/24", "ports": [{"port": 443}]
        }))
        .expect("egress"),
    ];
    t.spec.volumes = vec![
        serde_json::from_value(serde_json::json!({
            "name": "db", "zone": "data", "size": "1Gi"
        }))
        .expect("volume"),
    ];
    t.spec.backup = Some(serde_json::from_value(serde_json::json!({
        "schedule": "0 2 * * *",
        "destination": {"endpoint": "https://s3.example", "bucket": "b", "credentialsSecret": "s3"}
    }))
    .expect("backup"));
    let identity = Identity::of(&t).expect("identity");
    let config = NetworkConfig::default();
    let backup_config = crate::config::BackupConfig::default();
    let mut policies = network::zone_policies(&t, &identity, &config);
    policies.extend(
        crate::desired::backup::backup_objects(
            &t,
            &identity,
            &backup_config,
            &crate::config::NetworkConfig::default().cluster_cidrs,
            "enclave-system",
            (None, Some("https://127.0.0.1:9443/credentials")),
        )
        .expect("backup")
        .network_policies,
    );
    let namespaces = crate::desired::namespaces::zone_namespaces(&t, &identity);
    let zones: Vec<ZoneNamespace<'_>> = t
        .spec
        .zones
        .iter()
        .zip(&namespaces)
        .map(|(z, ns)| ZoneNamespace {
            zone: &z.name,
            namespace: ns.metadata.name.as_deref().unwrap_or_default(),
            labels: ns.metadata.labels.as_ref().expect("labels"),
        })
        .collect();
    let actual = evaluate_egress(&zones, &policies, &config);
    let expected = expected_egress(
        &t,
        &BackupEgress {
            operator_namespace: "enclave-system".into(),
            broker_port: 9443,
            store_cidrs: backup_config.store_cidrs.clone(),
            store_port: backup_config.store_port,
            cluster_cidrs: config.cluster_cidrs.clone(),
        },
    );
    assert_eq!(egress_differences(&actual, &expected), Vec::<String>::new());
    // dmz reaches app's 8080 (app allows dmz), app its third party, data the store.
    assert!(actual.contains(&egress_entry("dmz", 8080, None, Protocol::Tcp, "zone:app")));
    assert!(actual.contains(&egress_entry(
        "app",
        443,
        None,
        Protocol::Tcp,
        "cidr:198.51.100.0/24"
    )));
    // The store, from the backup pods only, never the cluster's own ranges.
    let mut store = egress_entry(
        "data",
        443,
        None,
        Protocol::Tcp,
        "cidr:0.0.0.0/0 except 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10",
    );
    store.pods = Some("enclave.dev/backup=true".into());
    assert!(actual.contains(&store), "{actual:?}");
    assert!(actual.contains(&egress_entry("dmz", 53, None, Protocol::Udp, "dns")));
    // A policy letting a zone out anywhere is reported, and differs from the spec.
    let mut open: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "out", "namespace": "acme-dmz"},
        "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 443}]}]}
    }))
    .expect("policy");
    open.metadata.namespace = Some("acme-dmz".into());
    policies.push(open);
    let leaky = evaluate_egress(&zones, &policies, &config);
    let differences = egress_differences(&leaky, &expected);
    assert_eq!(
        differences,
        ["reachable but not declared: dmz to anywhere:443/Tcp (pods app=x)"]
    );
}

#[test]
fn node_ports_and_load_balancers_are_reported_as_exposure() {
    let labels = BTreeMap::from([(labels::TENANT_UID.to_string(), "u".to_string())]);
    let zones = [ZoneNamespace {
        zone: "dmz",
        namespace: "acme-dmz",
        labels: &labels,
    }];
    let service = |kind: &str| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": kind.to_lowercase(), "namespace": "acme-dmz"},
            "spec": {"type": kind, "ports": [{"port": 443}]}
        }))
        .expect("service")
    };
    let report = service_exposure(
        &zones,
        &[
            service("NodePort"),
            service("LoadBalancer"),
            service("ClusterIP"),
        ],
    );
    assert_eq!(
        report,
        [
            entry("dmz", 443, Protocol::Tcp, "load-balancer"),
            entry("dmz", 443, Protocol::Tcp, "node-port"),
        ]
    );
}
