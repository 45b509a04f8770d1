use super::*;
use crate::desired::fixtures::tenant;
use enclave_crds::{EgressRule, Firewall};

fn three_zones() -> Tenant {
    tenant("acme") // dmz (Internet, 443), app (from dmz), data (from app)
}

fn policies(t: &Tenant) -> Vec<NetworkPolicy> {
    zone_policies(
        t,
        &Identity::of(t).expect("identity"),
        &NetworkConfig::default(),
    )
}

fn policy<'a>(
    all: &'a [NetworkPolicy],
    namespace: &str,
    name: &str,
) -> Option<&'a NetworkPolicySpec> {
    all.iter()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
        })
        .and_then(|p| p.spec.as_ref())
}

fn zone_of(peer: &NetworkPolicyPeer) -> Option<(&str, &str)> {
    let labels = peer.namespace_selector.as_ref()?.match_labels.as_ref()?;
    Some((
        labels.get(labels::TENANT_UID)?.as_str(),
        labels.get(labels::ZONE)?.as_str(),
    ))
}

#[test]
fn every_zone_denies_all_by_default() {
    let all = policies(&three_zones());
    for ns in ["acme-dmz", "acme-app", "acme-data"] {
        let deny = policy(&all, ns, DEFAULT_DENY).expect("default deny");
        assert_eq!(
            deny.policy_types.as_deref(),
            Some(&["Ingress".to_string(), "Egress".to_string()][..])
        );
        assert!(deny.ingress.is_none() && deny.egress.is_none());
        assert_eq!(deny.pod_selector, Some(LabelSelector::default()));
    }
}

#[test]
fn zone_without_ports_has_no_ingress_policy() {
    let all = policies(&three_zones());
    assert!(
        policy(&all, "acme-app", INGRESS).is_none(),
        "app serves no port in the default zones"
    );
}

#[test]
fn zone_to_zone_ingress_selects_source_by_uid_on_target_ports() {
    let mut t = three_zones();
    t.spec.zones[2].ports = vec![Port {
        port: 5432,
        protocol: Protocol::Tcp,
    }];
    let all = policies(&t);
    let ingress = policy(&all, "acme-data", INGRESS).expect("data ingress");
    let rules = ingress.ingress.as_ref().expect("rules");
    assert_eq!(rules.len(), 1);
    let from = rules[0].from.as_ref().expect("from");
    assert_eq!(zone_of(&from[0]), Some(("uid-acme", "app")));
    let ports = rules[0].ports.as_ref().expect("ports");
    assert_eq!(ports[0].port, Some(IntOrString::Int(5432)));
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    // and the source zone may send there, nowhere else in the tenant
    let egress = policy(&all, "acme-app", EGRESS).expect("app egress");
    let to_zones: Vec<_> = egress
        .egress
        .iter()
        .flatten()
        .flat_map(|r| r.to.iter().flatten())
        .filter_map(zone_of)
        .collect();
    assert_eq!(to_zones, [("uid-acme", "data")]);
}

#[test]
fn every_zone_reaches_dns_only_on_53() {
    let all = policies(&three_zones());
    for ns in ["acme-dmz", "acme-app", "acme-data"] {
        let egress = policy(&all, ns, EGRESS).expect("egress");
        let dns = &egress.egress.as_ref().expect("rules")[0];
        let peer = &dns.to.as_ref().expect("to")[0];
        let pod_labels = peer
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .expect("dns pods");
        assert_eq!(pod_labels["k8s-app"], "kube-dns");
        let ports: Vec<_> = dns
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port.clone(), p.protocol.clone()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some(IntOrString::Int(53)), Some("UDP".into())),
                (Some(IntOrString::Int(53)), Some("TCP".into()))
            ]
        );
    }
}

#[test]
fn internet_zone_admits_ingress_controller_and_firewall_sources() {
    let mut t = three_zones();
    t.spec.firewall = Firewall {
        allow_cidrs: vec!["0.0.0.0/0".into()],
        deny_cidrs: vec!["203.0.113.0/24".into()],
    };
    let all = policies(&t);
    let rules = policy(&all, "acme-dmz", INGRESS)
        .and_then(|p| p.ingress.clone())
        .expect("dmz ingress");
    assert_eq!(rules.len(), 2, "ingress controller + firewall");
    let controller = &rules[0].from.as_ref().expect("from")[0];
    let ns_labels = controller
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .expect("labels");
    assert_eq!(ns_labels["kubernetes.io/metadata.name"], "ingress-nginx");
    let block = rules[1].from.as_ref().expect("from")[0]
        .ip_block
        .clone()
        .expect("ipBlock");
    assert_eq!(block.cidr, "0.0.0.0/0");
    // The denied range, then the cluster's (every private range by default).
    assert_eq!(
        block.except,
        Some(
            [
                "203.0.113.0/24",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(
        rules[1].ports.as_ref().expect("ports")[0].port,
        Some(IntOrString::Int(443))
    );
}

#[test]
fn firewall_drops_allowed_range_covered_by_a_denied_one() {
    let mut t = three_zones();
    t.spec.firewall = Firewall {
        allow_cidrs: vec!["198.51.100.0/24".into(), "10.0.0.0/8".into()],
        deny_cidrs: vec![
            "198.51.0.0/16".into(),
            "10.1.0.0/16".into(),
            "2001:db8::/32".into(),
        ],
    };
    let no_cluster = NetworkConfig {
        cluster_cidrs: vec![],
        ..NetworkConfig::default()
    };
    assert_eq!(
        firewall_blocks(&t, &no_cluster),
        [("10.0.0.0/8".to_string(), vec!["10.1.0.0/16".to_string()])]
    );
    // Under the default cluster ranges, 10.0.0.0/8 is the cluster's own: dropped.
    assert_eq!(firewall_blocks(&t, &NetworkConfig::default()), []);
}

#[test]
fn empty_firewall_allows_both_families() {
    let blocks = firewall_blocks(&three_zones(), &NetworkConfig::default());
    assert_eq!(
        blocks,
        [
            (
                "0.0.0.0/0".to_string(),
                crate::config::PRIVATE_RANGES[..4]
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            ),
            ("::/0".to_string(), vec!["fc00::/7".to_string()])
        ]
    );
}

#[test]
fn third_party_egress_only_from_the_named_zone() {
    let mut t = three_zones();
    t.spec.egress = vec![EgressRule {
        zone: Some("app".into()),
        cidr: "198.51.100.0/24".into(),
        ports: vec![Port {
            port: 443,
            protocol: Protocol::Tcp,
        }],
        description: None,
    }];
    let all = policies(&t);
    let blocks = |ns: &str| -> Vec<String> {
        policy(&all, ns, EGRESS)
            .and_then(|p| p.egress.clone())
            .into_iter()
            .flatten()
            .flat_map(|r| r.to.unwrap_or_default())
            .filter_map(|peer| peer.ip_block.map(|b| b.cidr))
            .collect()
    };
    assert_eq!(blocks("acme-app"), ["198.51.100.0/24"]);
    assert!(blocks("acme-dmz").is_empty());
    assert!(blocks("acme-data").is_empty());
}

#[test]
fn internet_port_outside_the_allowed_set_is_refused() {
    let mut t = three_zones();
    t.spec.zones[0].ports.push(Port {
        port: 22,
        protocol: Protocol::Tcp,
    });
    let error = validate(&t, &NetworkConfig::default()).expect_err("port 22 refused");
    assert_eq!(error.reason, "PortNotAllowed");
    assert!(
        error.message.contains("zone dmz: port 22"),
        "{}",
        error.message
    );
    assert!(error.message.contains("443"), "{}", error.message);
    // An internal zone may serve any port.
    let mut t = three_zones();
    t.spec.zones[1].ports.push(Port {
        port: 22,
        protocol: Protocol::Tcp,
    });
    assert!(validate(&t, &NetworkConfig::default()).is_ok());
}

#[test]
fn policies_carry_tenant_uid_and_zone_labels() {
    for p in policies(&three_zones()) {
        let labels = p.metadata.labels.expect("labels");
        assert_eq!(labels[labels::TENANT_UID], "uid-acme");
        assert!(labels.contains_key(labels::ZONE));
    }
}

#[test]
fn a_zone_named_like_a_platform_namespace_is_refused() {
    let mut t = crate::desired::fixtures::tenant("ingress");
    t.spec.zones = vec![enclave_crds::Zone {
        name: "nginx".into(),
        ..enclave_crds::Zone::default()
    }];
    let refused = validate(&t, &NetworkConfig::default()).expect_err("reserved");
    assert_eq!(refused.reason, "ReservedNamespace");
    assert!(
        refused.message.contains("ingress-nginx"),
        "{}",
        refused.message
    );
    // The namespace the ingress selector names is reserved even when the list leaves it out.
    let config = NetworkConfig {
        reserved_namespaces: vec![],
        ..NetworkConfig::default()
    };
    assert!(validate(&t, &config).is_err());
    let mut fine = crate::desired::fixtures::tenant("acme");
    fine.spec.zones = t.spec.zones.clone();
    assert!(validate(&fine, &NetworkConfig::default()).is_ok());
}

#[test]
fn every_ip_block_leaves_out_the_cluster_ranges() {
    let mut t = three_zones();
    t.spec.egress = vec![EgressRule {
        zone: None,
        cidr: "0.0.0.0/0".into(),
        ports: vec![Port {
            port: 443,
            protocol: Protocol::Tcp,
        }],
        description: None,
    }];
    let config = NetworkConfig {
        cluster_cidrs: vec!["10.244.0.0/16".into(), "10.96.0.0/12".into()],
        ..NetworkConfig::default()
    };
    let all = zone_policies(&t, &Identity::of(&t).expect("identity"), &config);
    let blocks: Vec<IPBlock> = all
        .iter()
        .filter_map(|p| p.spec.as_ref())
        .flat_map(|s| {
            let ingress = s
                .ingress
                .iter()
                .flatten()
                .flat_map(|r| r.from.iter().flatten());
            let egress = s
                .egress
                .iter()
                .flatten()
                .flat_map(|r| r.to.iter().flatten());
            ingress.chain(egress).cloned().collect::<Vec<_>>()
        })
        .filter_map(|peer| peer.ip_block)
        .collect();
    assert!(blocks.len() >= 4, "{blocks:?}");
    for block in blocks.iter().filter(|b| b.cidr == "0.0.0.0/0") {
        assert_eq!(
            block.except.as_deref(),
            Some(&["10.244.0.0/16".to_string(), "10.96.0.0/12".to_string()][..])
        );
    }
    // IPv6 has no cluster range here: nothing to leave out.
    assert!(
        blocks
            .iter()
            .any(|b| b.cidr == "::/0" && b.except.is_none())
    );
    assert_eq!(
        outside_cluster("10.244.3.0/24", &config.cluster_cidrs),
        None
    );
}

#[test]
fn a_spec_cidr_inside_the_cluster_ranges_is_refused() {
    let config = NetworkConfig {
        cluster_cidrs: vec!["10.244.0.0/16".into()],
        ..NetworkConfig::default()
    };
    let mut t = three_zones();
    t.spec.egress = vec![EgressRule {
        zone: None,
        cidr: "10.244.7.0/24".into(),
        ports: vec![Port {
            port: 5432,
            protocol: Protocol::Tcp,
        }],
        description: None,
    }];
    let error = validate(&t, &config).expect_err("inside the pod range");
    assert_eq!(error.reason, "ClusterRange");
    assert!(
        error
            .message
            .starts_with("spec.egress[0].cidr: 10.244.7.0/24"),
        "{}",
        error.message
    );
    t.spec.egress.clear();
    t.spec.firewall.allow_cidrs = vec!["198.51.100.0/24".into(), "10.244.0.0/16".into()];
    let error = validate(&t, &config).expect_err("the pod range itself");
    assert!(
        error.message.starts_with("spec.firewall.allowCidrs[1]"),
        "{}",
        error.message
    );
    // A range holding the cluster's is fine: the cluster's part is left out.
    t.spec.firewall.allow_cidrs = vec!["10.0.0.0/8".into()];
    assert!(validate(&t, &config).is_ok());
}

#[test]
fn the_ingress_firewall_names_the_spec_ranges() {
    let mut t = three_zones();
    t.spec.firewall = Firewall {
        allow_cidrs: vec!["198.51.100.0/24".into(), "203.0.113.0/24".into()],
        deny_cidrs: vec![],
    };
    let wanted = ingress_firewall(&t, &NetworkConfig::default());
    assert_eq!(
        wanted["nginx.ingress.kubernetes.io/whitelist-source-range"].as_deref(),
        Some("198.51.100.0/24,203.0.113.0/24")
    );
    assert_eq!(
        wanted["nginx.ingress.kubernetes.io/denylist-source-range"],
        None
    );
    let mut annotations = BTreeMap::from([(
        "nginx.ingress.kubernetes.io/whitelist-source-range".to_string(),
        "198.51.100.0/24,203.0.113.0/24".to_string(),
    )]);
    assert_eq!(firewall_patch(Some(&annotations), &wanted), None);
    annotations.insert(
        "nginx.ingress.kubernetes.io/denylist-source-range".into(),
        "192.0.2.0/24".into(),
    );
    annotations.insert(
        "nginx.ingress.kubernetes.io/allowlist-source-range".into(),
        "0.0.0.0/0".into(),
    );
    // The deny list the firewall does not have, and another spelling, both removed.
    assert_eq!(
        firewall_patch(Some(&annotations), &wanted),
        Some(BTreeMap::from([
            (
                "nginx.ingress.kubernetes.io/allowlist-source-range".to_string(),
                None
            ),
            (
                "nginx.ingress.kubernetes.io/denylist-source-range".to_string(),
                None
            ),
        ]))
    );
    assert_eq!(
        firewall_patch(None, &wanted).map(|p| p.len()),
        Some(1),
        "the allow list set"
    );
    let unsupported = NetworkConfig {
        ingress_firewall: None,
        ..NetworkConfig::default()
    };
    assert!(ingress_firewall(&t, &unsupported).is_empty());
}
