//! The exposure report (R16): every port of every zone reachable from outside that zone,
//! computed from the NetworkPolicies as the API server holds them.
//!
//! The evaluator reads policies the way the network plugin does and shares no code with the
//! builders that wrote them, so a bug in one is caught by the other: `Isolated` is true only
//! when what the policies allow is exactly what the spec asks ([`expected`]).

use crate::config::{NetworkConfig, PeerSelector};
use crate::desired::cidr::Cidr;
use crate::desired::labels;
use enclave_crds::{EgressEntry, Exposure, ExposureEntry, Protocol, Tenant};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Who may reach a port, as the report says it.
const ANYWHERE: &str = "anywhere";
const INGRESS_CONTROLLER: &str = "ingress-controller";
const DNS: &str = "dns";

/// A zone of the tenant: its name and the labels of its namespace as applied.
pub struct ZoneNamespace<'a> {
    /// The zone.
    pub zone: &'a str,
    /// The namespace's name.
    pub namespace: &'a str,
    /// The namespace's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// What the applied `policies` let in to each of `zones` from outside the zone.
#[must_use]
pub fn evaluate(
    zones: &[ZoneNamespace<'_>],
    policies: &[NetworkPolicy],
    network: &NetworkConfig,
) -> Vec<ExposureEntry> {
    let mut entries = Vec::new();
    for zone in zones {
        // Every policy of the zone opens what its rules say to the pods it selects: a policy
        // selecting only some pods still exposes the zone through them.
        let here: Vec<&NetworkPolicy> = policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(zone.namespace))
            .collect();
        // Only a policy selecting every pod isolates them all; without one, some pod may
        // take anything.
        let isolates_ingress = here.iter().any(|p| {
            p.spec.as_ref().is_some_and(|s| {
                selects_all_pods(s.pod_selector.as_ref())
                    && match &s.policy_types {
                        Some(types) => types.iter().any(|t| t == "Ingress"),
                        None => true, // no policyTypes: Ingress is implied
                    }
            })
        });
        if !isolates_ingress {
            // Without an ingress policy, every port is open to everyone.
            entries.push(entry(zone.zone, 0, Protocol::Tcp, ANYWHERE));
            continue;
        }
        for rule in here
            .iter()
            .filter_map(|p| p.spec.as_ref())
            .flat_map(|s| s.ingress.iter().flatten())
        {
            let sources: Vec<String> = match &rule.from {
                None => vec![ANYWHERE.to_string()],
                Some(peers) if peers.is_empty() => vec![ANYWHERE.to_string()],
                Some(peers) => peers
                    .iter()
                    .filter_map(|peer| source(peer, zone, zones, network))
                    .collect(),
            };
            let ports = rule_ports(rule.ports.as_deref());
            for from in &sources {
                for (port, end, protocol) in &ports {
                    let mut opened = entry(zone.zone, *port, *protocol, from);
                    opened.end_port = *end;
                    entries.push(opened);
                }
            }
        }
    }
    normalise(entries)
}

/// The ports the tenant's Services open on the nodes or a load balancer: reachable from
/// outside the cluster whatever the NetworkPolicies say of the ingress controller, so each is
/// reported (`from: node-port` or `load-balancer`), and none is declared by the spec.
#[must_use]
pub fn service_exposure(zones: &[ZoneNamespace<'_>], services: &[Service]) -> Vec<ExposureEntry> {
    let mut entries = Vec::new();
    for service in services {
        let Some(zone) = zones
            .iter()
            .find(|z| service.metadata.namespace.as_deref() == Some(z.namespace))
        else {
            continue;
        };
        let Some(spec) = &service.spec else { continue };
        let from = match spec.type_.as_deref() {
            Some("NodePort") => "node-port",
            Some("LoadBalancer") => "load-balancer",
            _ => continue,
        };
        for port in spec.ports.iter().flatten() {
            let protocol = if port.protocol.as_deref() == Some("UDP") {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            entries.push(entry(zone.zone, port.port, protocol, from));
        }
    }
    normalise(entries)
}

/// The ports of a rule: `(port, end of range, protocol)`; none listed means every port.
fn rule_ports(ports: Option<&[NetworkPolicyPort]>) -> Vec<(i32, Option<i32>, Protocol)> {
    match ports {
        None | Some([]) => vec![(0, None, Protocol::Tcp)],
        Some(ports) => ports
            .iter()
            .map(|p| {
                let number = match &p.port {
                    Some(IntOrString::Int(n)) => *n,
                    _ => 0, // a named or absent port: every port, as far as we know
                };
                // A range from `port` to `endPort`.
                let end = p.end_port.filter(|end| number != 0 && *end > number);
                let protocol = if p.protocol.as_deref() == Some("UDP") {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                };
                (number, end, protocol)
            })
            .collect(),
    }
}

/// Every destination outside its zone that the applied `policies` let each of `zones` reach.
#[must_use]
pub fn evaluate_egress(
    zones: &[ZoneNamespace<'_>],
    policies: &[NetworkPolicy],
    network: &NetworkConfig,
) -> Vec<EgressEntry> {
    let mut entries = Vec::new();
    for zone in zones {
        let here: Vec<&NetworkPolicy> = policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(zone.namespace))
            .collect();
        let isolates_egress = here.iter().any(|p| {
            p.spec.as_ref().is_some_and(|s| {
                selects_all_pods(s.pod_selector.as_ref())
                    && s.policy_types.iter().flatten().any(|t| t == "Egress")
            })
        });
        if !isolates_egress {
            // Without an egress policy, every pod reaches everything.
            entries.push(egress_entry(zone.zone, 0, None, Protocol::Tcp, ANYWHERE));
            continue;
        }
        for rule in here
            .iter()
            .filter_map(|p| p.spec.as_ref())
            .filter(|s| s.policy_types.iter().flatten().any(|t| t == "Egress"))
            .flat_map(|s| s.egress.iter().flatten())
        {
            let destinations: Vec<String> = match rule.to.as_deref() {
                None | Some([]) => vec![ANYWHERE.to_string()],
                Some(peers) => peers
                    .iter()
                    .filter_map(|peer| source(peer, zone, zones, network))
                    .collect(),
            };
            for to in &destinations {
                for (port, end, protocol) in rule_ports(rule.ports.as_deref()) {
                    entries.push(egress_entry(zone.zone, port, end, protocol, to));
                }
            }
        }
    }
    entries.sort_by_key(|e| {
        (
            e.zone.clone(),
            e.port,
            e.end_port,
            e.protocol == Protocol::Udp,
            e.to.clone(),
        )
    });
    entries.dedup();
    entries
}

fn egress_entry(
    zone: &str,
    port: i32,
    end_port: Option<i32>,
    protocol: Protocol,
    to: &str,
) -> EgressEntry {
    EgressEntry {
        zone: zone.to_string(),
        port,
        end_port,
        protocol,
        to: to.to_string(),
    }
}

/// Where the backup pods of zones with volumes may go: the broker's port in the operator's
/// namespace, and the object store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupEgress {
    /// The operator's namespace.
    pub operator_namespace: String,
    /// The broker's port.
    pub broker_port: i32,
    /// The object store's CIDRs.
    pub store_cidrs: Vec<String>,
    /// The object store's port.
    pub store_port: i32,
}

/// What the spec asks each zone to reach outside itself: the cluster DNS, the ports of the
/// zones that allow it, its third parties, and (for zones holding volumes of a tenant with
/// backups) the broker and the object store.
#[must_use]
pub fn expected_egress(tenant: &Tenant, backup: &BackupEgress) -> Vec<EgressEntry> {
    let mut entries = Vec::new();
    let backed_up: Vec<&str> = if tenant.spec.backup.is_some() {
        tenant
            .spec
            .volumes
            .iter()
            .map(|v| v.zone.as_str())
            .collect()
    } else {
        vec![]
    };
    for zone in &tenant.spec.zones {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            entries.push(egress_entry(&zone.name, 53, None, protocol, DNS));
        }
        for target in tenant
            .spec
            .zones
            .iter()
            .filter(|t| t.allow_from.contains(&zone.name) && t.name != zone.name)
        {
            for port in &target.ports {
                entries.push(egress_entry(
                    &zone.name,
                    port.port,
                    None,
                    port.protocol,
                    &format!("zone:{}", target.name),
                ));
            }
        }
        for third in tenant
            .spec
            .egress
            .iter()
            .filter(|e| e.zone.as_ref().is_none_or(|z| *z == zone.name))
        {
            for port in &third.ports {
                entries.push(egress_entry(
                    &zone.name,
                    port.port,
                    None,
                    port.protocol,
                    &format!("cidr:{}", third.cidr),
                ));
            }
        }
        if backed_up.contains(&zone.name.as_str()) {
            entries.push(egress_entry(
                &zone.name,
                backup.broker_port,
                None,
                Protocol::Tcp,
                &format!(
                    "namespaces:kubernetes.io/metadata.name={}",
                    backup.operator_namespace
                ),
            ));
            for cidr in &backup.store_cidrs {
                entries.push(egress_entry(
                    &zone.name,
                    backup.store_port,
                    None,
                    Protocol::Tcp,
                    &format!("cidr:{cidr}"),
                ));
            }
        }
    }
    entries.sort_by_key(|e| {
        (
            e.zone.clone(),
            e.port,
            e.end_port,
            e.protocol == Protocol::Udp,
            e.to.clone(),
        )
    });
    entries.dedup();
    entries
}

/// What differs between the egress report and the spec, for the `Isolated` condition.
#[must_use]
pub fn egress_differences(actual: &[EgressEntry], expected: &[EgressEntry]) -> Vec<String> {
    let describe = |e: &EgressEntry| {
        let range = e.end_port.map_or_else(String::new, |end| format!("-{end}"));
        format!("{} to {}:{}{range}/{:?}", e.zone, e.to, e.port, e.protocol)
    };
    let extra = actual
        .iter()
        .filter(|e| !expected.contains(e))
        .map(|e| format!("reachable but not declared: {}", describe(e)));
    let missing = expected
        .iter()
        .filter(|e| !actual.contains(e))
        .map(|e| format!("declared but not reachable: {}", describe(e)));
    extra.chain(missing).collect()
}

/// Who `peer` is, or `None` for pods of the zone itself (not from outside it).
fn source(
    peer: &NetworkPolicyPeer,
    zone: &ZoneNamespace<'_>,
    zones: &[ZoneNamespace<'_>],
    network: &NetworkConfig,
) -> Option<String> {
    if let Some(block) = &peer.ip_block {
        let except = block.except.clone().unwrap_or_default();
        return Some(if except.is_empty() {
            format!("cidr:{}", block.cidr)
        } else {
            format!("cidr:{} except {}", block.cidr, except.join(","))
        });
    }
    let Some(namespaces) = &peer.namespace_selector else {
        return None; // a podSelector alone selects pods of this same namespace
    };
    // Which of the tenant's own namespaces does the selector match, and could it match others?
    let matched: Vec<&ZoneNamespace<'_>> = zones
        .iter()
        .filter(|z| matches(namespaces, z.labels))
        .collect();
    let tenant_only = namespaces
        .match_labels
        .as_ref()
        .is_some_and(|l| l.contains_key(labels::TENANT_UID));
    if tenant_only {
        // Another tenant's uid: its namespaces, reached across tenants.
        let uid = namespaces
            .match_labels
            .as_ref()
            .and_then(|l| l.get(labels::TENANT_UID));
        if uid.is_some_and(|uid| zone.labels.get(labels::TENANT_UID) != Some(uid)) {
            return uid.map(|uid| format!("tenant:{uid}"));
        }
        let names: Vec<&str> = matched
            .iter()
            .filter(|z| z.zone != zone.zone)
            .map(|z| z.zone)
            .collect();
        return (!names.is_empty()).then(|| format!("zone:{}", names.join(",")));
    }
    let selected = PeerSelector {
        namespace_labels: namespaces.match_labels.clone().unwrap_or_default(),
        pod_labels: peer
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default(),
    };
    if selected == network.ingress_controller {
        return Some(INGRESS_CONTROLLER.to_string());
    }
    if selected == network.dns {
        return Some(DNS.to_string());
    }
    let described: Vec<String> = selected
        .namespace_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some(if described.is_empty() {
        "all-namespaces".to_string()
    } else {
        format!("namespaces:{}", described.join(","))
    })
}

fn selects_all_pods(selector: Option<&LabelSelector>) -> bool {
    selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// What the spec asks to be reachable from outside each zone.
#[must_use]
pub fn expected(tenant: &Tenant) -> Vec<ExposureEntry> {
    let mut entries = Vec::new();
    for zone in &tenant.spec.zones {
        for port in &zone.ports {
            for source in &zone.allow_from {
                if *source != zone.name {
                    entries.push(entry(
                        &zone.name,
                        port.port,
                        port.protocol,
                        &format!("zone:{source}"),
                    ));
                }
            }
            if zone.exposure == Exposure::Internet && tenant.is_running() {
                entries.push(entry(
                    &zone.name,
                    port.port,
                    port.protocol,
                    INGRESS_CONTROLLER,
                ));
                for from in internet_sources(tenant) {
                    entries.push(entry(&zone.name, port.port, port.protocol, &from));
                }
            }
        }
    }
    normalise(entries)
}

/// The firewall's allowed ranges minus its denied ones, as the report names them.
fn internet_sources(tenant: &Tenant) -> Vec<String> {
    let firewall = &tenant.spec.firewall;
    let allowed = if firewall.allow_cidrs.is_empty() {
        vec!["0.0.0.0/0".to_string(), "::/0".to_string()]
    } else {
        firewall.allow_cidrs.clone()
    };
    let denied: Vec<(&String, Cidr)> = firewall
        .deny_cidrs
        .iter()
        .filter_map(|d| Cidr::parse(d).map(|c| (d, c)))
        .collect();
    allowed
        .iter()
        .filter_map(|a| {
            let range = Cidr::parse(a)?;
            if denied.iter().any(|(_, d)| d.contains(&range)) {
                return None; // denied whole
            }
            let inside: Vec<&str> = denied
                .iter()
                .filter(|(_, d)| range.contains(d))
                .map(|(t, _)| t.as_str())
                .collect();
            Some(if inside.is_empty() {
                format!("cidr:{a}")
            } else {
                format!("cidr:{a} except {}", inside.join(","))
            })
        })
        .collect()
}

fn entry(zone: &str, port: i32, protocol: Protocol, from: &str) -> ExposureEntry {
    ExposureEntry {
        zone: zone.to_string(),
        port,
        end_port: None,
        protocol,
        from: from.to_string(),
    }
}

fn normalise(mut entries: Vec<ExposureEntry>) -> Vec<ExposureEntry> {
    let key = |e: &ExposureEntry| {
        (
            e.zone.clone(),
            e.port,
            e.end_port,
            e.protocol == Protocol::Udp,
            e.from.clone(),
        )
    };
    entries.sort_by_key(key);
    entries.dedup();
    entries
}

/// What differs between the report and the spec, for the `Isolated` condition's message.
#[must_use]
pub fn differences(actual: &[ExposureEntry], expected: &[ExposureEntry]) -> Vec<String> {
    let describe = |e: &ExposureEntry| {
        let range = e.end_port.map_or_else(String::new, |end| format!("-{end}"));
        format!(
            "{}:{}{range}/{:?} from {}",
            e.zone, e.port, e.protocol, e.from
        )
    };
    let extra = actual
        .iter()
        .filter(|e| !expected.contains(e))
        .map(|e| format!("open but not declared: {}", describe(e)));
    let missing = expected
        .iter()
        .filter(|e| !actual.contains(e))
        .map(|e| format!("declared but not open: {}", describe(e)));
    extra.chain(missing).collect()
}

#[cfg(test)]
mod tests {
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
            expected(&t),
            "{:?}",
            differences(&actual, &expected(&t))
        );
        let froms: Vec<_> = actual
            .iter()
            .map(|e| format!("{}:{} {}", e.zone, e.port, e.from))
            .collect();
        assert_eq!(
            froms,
            [
                "app:8080 zone:dmz",
                "dmz:443 cidr:0.0.0.0/0 except 203.0.113.0/24",
                "dmz:443 cidr:::/0",
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
            expected(&t)
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
        assert!(
            report.contains(&entry("app", 22, Protocol::Tcp, ANYWHERE)),
            "{report:?}"
        );
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
        assert!(actual.contains(&egress_entry(
            "data",
            443,
            None,
            Protocol::Tcp,
            "cidr:0.0.0.0/0"
        )));
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
            ["reachable but not declared: dmz to anywhere:443/Tcp"]
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
}
