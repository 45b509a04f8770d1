//! The evaluator on policies Enclave did not write: pod selectors that pick some pods, port
//! ranges, namespaces chosen by expressions, and ipBlocks that reach the cluster's ranges.

use super::*;
use crate::desired::fixtures::tenant;
use crate::desired::{Identity, network};

/// acme's zones (dmz, app, data) with the policies Enclave builds plus `extra`.
fn with(extra: &[serde_json::Value]) -> (Vec<ExposureEntry>, Vec<enclave_crds::EgressEntry>) {
    let t = tenant("acme");
    let identity = Identity::of(&t).expect("identity");
    let config = NetworkConfig::default();
    let mut policies = network::zone_policies(&t, &identity, &config);
    policies.extend(
        extra
            .iter()
            .map(|p| serde_json::from_value::<NetworkPolicy>(p.clone()).expect("policy")),
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
    (
        evaluate(&zones, &policies, &config),
        evaluate_egress(&zones, &policies, &config),
    )
}

fn described(entries: &[ExposureEntry], zone: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.zone == zone)
        .map(|e| {
            let range = e.end_port.map_or_else(String::new, |end| format!("-{end}"));
            let pods = e
                .pods
                .as_deref()
                .map_or_else(String::new, |p| format!(" [{p}]"));
            format!("{}{range} {}{pods}", e.port, e.from)
        })
        .collect()
}

#[test]
fn a_rule_for_some_pods_names_them_and_the_rest_stay_closed() {
    let (report, _) = with(&[serde_json::json!({
        "metadata": {"name": "web", "namespace": "acme-app"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            "ingress": [{"ports": [{"port": 8000, "endPort": 8080}]}]
        }
    })]);
    // Enclave's default deny selects every pod: only the web pods take the range.
    assert_eq!(
        described(&report, "app"),
        ["8000-8080 anywhere [app=web,tier in (a,b)]"]
    );
}

#[test]
fn without_a_policy_for_every_pod_the_others_take_anything() {
    // A namespace whose only policy selects some pods: the others are open on every port.
    let labels = BTreeMap::new();
    let zones = [ZoneNamespace {
        zone: "app",
        namespace: "other",
        labels: &labels,
    }];
    let policy: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db", "namespace": "other"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}], "ports": [{"port": 5432}]}]}
    }))
    .expect("policy");
    let report = evaluate(&zones, &[policy], &NetworkConfig::default());
    assert_eq!(
        described(&report, "app"),
        ["0 anywhere [not app=db]", "5432 all-namespaces [app=db]"]
    );
}

#[test]
fn namespaces_chosen_by_expressions_are_not_all_namespaces() {
    let (report, egress) = with(&[serde_json::json!({
        "metadata": {"name": "prod", "namespace": "acme-data"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod"]},
                {"key": "team", "operator": "Exists"}]},
                "podSelector": {"matchExpressions": [{"key": "debug", "operator": "DoesNotExist"}]}}],
                "ports": [{"port": 9000}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}]}]}
    })]);
    let data = described(&report, "data");
    assert!(
        data.contains(&"9000 namespaces:env in (prod),team pods:!debug".to_string()),
        "{data:?}"
    );
    assert!(
        !data.iter().any(|d| d.contains("all-namespaces")),
        "{data:?}"
    );
    assert!(
        egress
            .iter()
            .any(|e| e.zone == "data" && e.port == 0 && e.to == "namespaces:env notin (dev)"),
        "{egress:?}"
    );
}

#[test]
fn built_policies_never_reach_the_cluster_ranges_and_foreign_blocks_do() {
    let t = tenant("acme");
    let identity = Identity::of(&t).expect("identity");
    let config = NetworkConfig::default();
    let policies = network::zone_policies(&t, &identity, &config);
    assert_eq!(
        cluster_reach(&policies, &config.cluster_cidrs),
        Vec::<String>::new()
    );
    // As the policies were before: 0.0.0.0/0 with no exception reaches every pod.
    let open: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "open", "namespace": "acme-dmz"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0",
            "except": ["10.0.0.0/9"]}}]}]}
    }))
    .expect("policy");
    assert_eq!(
        cluster_reach(&[open], &config.cluster_cidrs),
        ["acme-dmz/open: ipBlock 0.0.0.0/0 reaches the cluster's pod or Service ranges"]
    );
    // Exceptions that together cover a cluster range close it.
    let halves: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "halves", "namespace": "acme-dmz"},
        "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/7",
            "except": ["10.0.0.0/9", "10.128.0.0/9", "11.0.0.0/8"]}}]}]}
    }))
    .expect("policy");
    assert_eq!(
        cluster_reach(&[halves], &["10.0.0.0/8".to_string()]),
        Vec::<String>::new()
    );
    // A block inside a cluster range reaches it.
    let inside: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "inside", "namespace": "acme-dmz"},
        "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}]}
    }))
    .expect("policy");
    assert_eq!(
        cluster_reach(&[inside], &["10.0.0.0/8".to_string()]).len(),
        1
    );
}
