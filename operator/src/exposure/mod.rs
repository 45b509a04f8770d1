//! The exposure report (R16): every port of every zone reachable from outside that zone,
//! computed from the NetworkPolicies as the API server holds them.
//!
//! The evaluator reads policies the way the network plugin does and shares no code with the
//! builders that wrote them, so a bug in one is caught by the other: `Isolated` is true only
//! when what the policies allow is exactly what the spec asks ([`expected`]).

use crate::config::{NetworkConfig, PeerSelector};
use crate::desired::cidr::Cidr;
use crate::desired::labels;
use enclave_crds::{Exposure, ExposureEntry, Protocol, Tenant};
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
        let here: Vec<&NetworkPolicy> = of_zone(policies, zone)
            .into_iter()
            .filter(|p| applies(p, "Ingress"))
            .collect();
        if let Some(unselected) = unselected(&here) {
            // Pods no ingress policy selects take anything, on every port.
            let mut open = entry(zone.zone, 0, Protocol::Tcp, ANYWHERE);
            open.pods = unselected.pods;
            entries.push(open);
        }
        for policy in &here {
            let Some(spec) = &policy.spec else { continue };
            let pods = partial_pods(spec.pod_selector.as_ref());
            for rule in spec.ingress.iter().flatten() {
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
                        opened.pods.clone_from(&pods);
                        entries.push(opened);
                    }
                }
            }
        }
    }
    normalise(entries)
}

/// Whether `policy` governs `direction` (`Ingress`, `Egress`) for the pods it selects.
fn applies(policy: &NetworkPolicy, direction: &str) -> bool {
    policy.spec.as_ref().is_some_and(|s| match &s.policy_types {
        Some(types) => types.iter().any(|t| t == direction),
        // No policyTypes: Ingress is implied, Egress only with egress rules.
        None => direction == "Ingress" || s.egress.is_some(),
    })
}

/// Which pods of a zone no policy of `governing` selects: `None` when one selects every pod
/// (the zone is isolated); otherwise the report's description of them, `None` inside for
/// every pod (no policy selects any), or `not a=b, not c=d` when policies select only some.
fn unselected(governing: &[&NetworkPolicy]) -> Option<Unselected> {
    let selectors: Vec<Option<&LabelSelector>> = governing
        .iter()
        .map(|p| p.spec.as_ref().and_then(|s| s.pod_selector.as_ref()))
        .collect();
    if selectors.iter().any(|s| selects_all_pods(*s)) {
        return None;
    }
    let partial: Vec<String> = selectors
        .iter()
        .flatten()
        .map(|s| format!("not {}", describe_selector(s)))
        .collect();
    Some(Unselected {
        pods: (!partial.is_empty()).then(|| partial.join(", ")),
    })
}

/// The pods of a zone that no policy selects.
pub(super) struct Unselected {
    /// As the report describes them; `None`: every pod.
    pub pods: Option<String>,
}

/// The pods a policy selects, when not all of them.
fn partial_pods(selector: Option<&LabelSelector>) -> Option<String> {
    selector
        .filter(|s| !selects_all_pods(Some(s)))
        .map(describe_selector)
}

/// A label selector in kubectl's syntax: `app=web,tier in (a,b),!debug`.
fn describe_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
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

/// Every policy of the zone: each opens what its rules say to the pods it selects, so a
/// policy selecting only some pods still opens the zone through them.
fn of_zone<'p>(policies: &'p [NetworkPolicy], zone: &ZoneNamespace<'_>) -> Vec<&'p NetworkPolicy> {
    policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(zone.namespace))
        .collect()
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
        .filter(|z| selects(namespaces, z.labels))
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
    let no_expressions = |s: Option<&LabelSelector>| {
        s.is_none_or(|s| s.match_expressions.as_ref().is_none_or(Vec::is_empty))
    };
    if no_expressions(Some(namespaces)) && no_expressions(peer.pod_selector.as_ref()) {
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
    }
    let described = describe_selector(namespaces);
    let mut from = if described.is_empty() {
        "all-namespaces".to_string()
    } else {
        format!("namespaces:{described}")
    };
    if let Some(pods) = partial_pods(peer.pod_selector.as_ref()) {
        from = format!("{from} pods:{pods}");
    }
    Some(from)
}

fn selects_all_pods(selector: Option<&LabelSelector>) -> bool {
    selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

/// Whether `selector` selects an object labelled `labels`, as the API server reads it.
#[must_use]
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
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

/// What the spec asks to be reachable from outside each zone, with the configured cluster
/// ranges left out of every CIDR.
#[must_use]
pub fn expected(tenant: &Tenant, network: &NetworkConfig) -> Vec<ExposureEntry> {
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
                for from in internet_sources(tenant, &network.cluster_cidrs) {
                    entries.push(entry(&zone.name, port.port, port.protocol, &from));
                }
            }
        }
    }
    normalise(entries)
}

/// The firewall's allowed ranges minus its denied ones and the cluster's, as the report names
/// them.
fn internet_sources(tenant: &Tenant, cluster: &[String]) -> Vec<String> {
    let firewall = &tenant.spec.firewall;
    let allowed = if firewall.allow_cidrs.is_empty() {
        vec!["0.0.0.0/0".to_string(), "::/0".to_string()]
    } else {
        firewall.allow_cidrs.clone()
    };
    let denied: Vec<&String> = firewall.deny_cidrs.iter().chain(cluster).collect();
    allowed
        .iter()
        .filter_map(|a| cidr_source(a, &denied))
        .collect()
}

/// How the report names `cidr` with the ranges of `left_out` inside it taken out; `None` when
/// one of them covers it whole.
pub(crate) fn cidr_source(cidr: &str, left_out: &[&String]) -> Option<String> {
    let range = Cidr::parse(cidr)?;
    let mut inside: Vec<&str> = Vec::new();
    for text in left_out {
        let Some(out) = Cidr::parse(text) else {
            continue;
        };
        if out.contains(&range) {
            return None;
        }
        if range.contains(&out) && !inside.contains(&text.as_str()) {
            inside.push(text);
        }
    }
    Some(if inside.is_empty() {
        format!("cidr:{cidr}")
    } else {
        format!("cidr:{cidr} except {}", inside.join(","))
    })
}

/// Every ipBlock of `policies` through which pods of the cluster's ranges could be reached
/// (or reach in), for network plugins that match ipBlocks against pod addresses: none should
/// be, or a CIDR rule is a route to other tenants' pods. Each as `namespace/policy: cidr`.
#[must_use]
pub fn cluster_reach(policies: &[NetworkPolicy], cluster: &[String]) -> Vec<String> {
    let cluster: Vec<Cidr> = cluster.iter().filter_map(|c| Cidr::parse(c)).collect();
    let mut found = Vec::new();
    for policy in policies {
        let Some(spec) = &policy.spec else { continue };
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten()),
            );
        for block in peers.filter_map(|p| p.ip_block.as_ref()) {
            let Some(range) = Cidr::parse(&block.cidr) else {
                continue;
            };
            let except: Vec<Cidr> = block
                .except
                .iter()
                .flatten()
                .filter_map(|e| Cidr::parse(e))
                .collect();
            let reaches = cluster.iter().any(|c| {
                if c.contains(&range) {
                    !covered(range, &except)
                } else {
                    range.contains(c) && !covered(*c, &except)
                }
            });
            if reaches {
                found.push(format!(
                    "{}/{}: ipBlock {} reaches the cluster's pod or Service ranges",
                    policy.metadata.namespace.as_deref().unwrap_or_default(),
                    policy.metadata.name.as_deref().unwrap_or_default(),
                    block.cidr
                ));
            }
        }
    }
    found
}

/// Whether the ranges of `parts` together cover all of `range`.
fn covered(range: Cidr, parts: &[Cidr]) -> bool {
    if parts.iter().any(|p| p.contains(&range)) {
        return true;
    }
    if !parts.iter().any(|p| range.contains(p)) {
        return false;
    }
    range
        .halves()
        .is_some_and(|(low, high)| covered(low, parts) && covered(high, parts))
}

fn entry(zone: &str, port: i32, protocol: Protocol, from: &str) -> ExposureEntry {
    ExposureEntry {
        zone: zone.to_string(),
        port,
        end_port: None,
        protocol,
        from: from.to_string(),
        pods: None,
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
            e.pods.clone(),
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
        let pods = e
            .pods
            .as_ref()
            .map_or_else(String::new, |p| format!(" (pods {p})"));
        format!(
            "{}:{}{range}/{:?} from {}{pods}",
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

mod egress;

pub use egress::{BackupEgress, egress_differences, evaluate_egress, expected_egress};

#[cfg(test)]
mod exactness;

#[cfg(test)]
mod tests;
