//! Network zones as NetworkPolicies (R6, R4, R17): every zone namespace denies all traffic by
//! default, then opens exactly what the spec declares.
//!
//! Per zone namespace:
//! - `enclave-default-deny`: no ingress, no egress;
//! - `enclave-ingress`: the zone's ports, from the tenant zones in `allowFrom` and, for an
//!   internet-facing zone, from the ingress controller and the firewall's allowed sources;
//! - `enclave-egress`: the cluster DNS, the ports of the tenant zones that allow this one, and
//!   the third parties of `spec.egress`.
//!
//! Tenant zones are selected by the tenant's uid label, never its name, so no other tenant's
//! namespace can ever match. Every `ipBlock` leaves out the cluster's pod and Service ranges
//! (`network.clusterCidrs`): some network plugins match ipBlocks against pod addresses, and a
//! CIDR rule must never become a route to another tenant's pods.

use super::cidr::Cidr;
use super::{Identity, Invalid, labels};
use crate::config::{NetworkConfig, PeerSelector};
use enclave_crds::{Exposure, Port, Protocol, Tenant, Zone};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Name of the policy that denies everything not opened by the others.
pub const DEFAULT_DENY: &str = "enclave-default-deny";
/// Name of the policy holding every allowed ingress of a zone.
pub const INGRESS: &str = "enclave-ingress";
/// Name of the policy holding every allowed egress of a zone.
pub const EGRESS: &str = "enclave-egress";

/// Refuses an internet-facing port outside the allowed set (R17).
///
/// # Errors
/// [`Invalid`] naming the zone, the port and the allowed set.
pub fn validate(tenant: &Tenant, config: &NetworkConfig) -> Result<(), Invalid> {
    // Namespaces the selectors name are the platform's, whatever the list says.
    let selected = [&config.dns, &config.ingress_controller]
        .into_iter()
        .filter_map(|peer| peer.namespace_labels.get("kubernetes.io/metadata.name"));
    let reserved: Vec<&String> = config.reserved_namespaces.iter().chain(selected).collect();
    let cluster = cluster_ranges(config);
    let inside_cluster = |cidr: &str| {
        Cidr::parse(cidr).and_then(|range| {
            cluster
                .iter()
                .find(|(_, c)| c.contains(&range))
                .map(|(text, _)| text.clone())
        })
    };
    let spec_cidrs = tenant
        .spec
        .egress
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("spec.egress[{i}].cidr"), &e.cidr))
        .chain(
            tenant
                .spec
                .firewall
                .allow_cidrs
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.firewall.allowCidrs[{i}]"), c)),
        );
    for (field, cidr) in spec_cidrs {
        if let Some(range) = inside_cluster(cidr) {
            return Err(Invalid {
                reason: "ClusterRange",
                message: format!(
                    "{field}: {cidr} lies inside the cluster's pod and Service range {range} (network.clusterCidrs): other tenants' pods are never reached by a CIDR; a zone reaches the tenant's own zones through allowFrom"
                ),
            });
        }
    }
    for zone in &tenant.spec.zones {
        let namespace = tenant.zone_namespace(&zone.name);
        if reserved.contains(&&namespace) {
            return Err(Invalid {
                reason: "ReservedNamespace",
                message: format!(
                    "zone {}: its namespace {namespace} is reserved for the platform; rename the zone or the tenant",
                    zone.name
                ),
            });
        }
    }
    for zone in tenant
        .spec
        .zones
        .iter()
        .filter(|z| z.exposure == Exposure::Internet)
    {
        if let Some(port) = zone
            .ports
            .iter()
            .find(|p| !config.internet_ports.contains(&p.port))
        {
            let allowed: Vec<String> = config
                .internet_ports
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(Invalid {
                reason: "PortNotAllowed",
                message: format!(
                    "zone {}: port {} may not face the internet; allowed: {}",
                    zone.name,
                    port.port,
                    allowed.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The NetworkPolicies of every zone of the tenant.
#[must_use]
pub fn zone_policies(
    tenant: &Tenant,
    identity: &Identity,
    config: &NetworkConfig,
) -> Vec<NetworkPolicy> {
    let mut policies = Vec::new();
    for zone in &tenant.spec.zones {
        let meta = |name: &str| identity.zone_object(tenant, &zone.name, name);
        policies.push(NetworkPolicy {
            metadata: meta(DEFAULT_DENY),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..NetworkPolicySpec::default()
            }),
        });
        let ingress = ingress_rules(tenant, zone, identity, config);
        if !ingress.is_empty() {
            policies.push(NetworkPolicy {
                metadata: meta(INGRESS),
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(LabelSelector::default()),
                    policy_types: Some(vec!["Ingress".into()]),
                    ingress: Some(ingress),
                    ..NetworkPolicySpec::default()
                }),
            });
        }
        policies.push(NetworkPolicy {
            metadata: meta(EGRESS),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(egress_rules(tenant, zone, identity, config)),
                ..NetworkPolicySpec::default()
            }),
        });
    }
    policies
}

fn ingress_rules(
    tenant: &Tenant,
    zone: &Zone,
    identity: &Identity,
    config: &NetworkConfig,
) -> Vec<NetworkPolicyIngressRule> {
    if zone.ports.is_empty() {
        return Vec::new(); // nothing served, nothing reachable
    }
    let ports = Some(policy_ports(&zone.ports));
    let mut rules: Vec<NetworkPolicyIngressRule> = zone
        .allow_from
        .iter()
        .map(|source| NetworkPolicyIngressRule {
            from: Some(vec![tenant_zone_peer(identity, source)]),
            ports: ports.clone(),
        })
        .collect();
    // A suspended, decommissioned or deleted tenant faces nothing outside.
    if zone.exposure == Exposure::Internet && tenant.is_running() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![external_peer(&config.ingress_controller)]),
            ports: ports.clone(),
        });
        let blocks: Vec<NetworkPolicyPeer> = firewall_blocks(tenant, config)
            .into_iter()
            .map(|(cidr, except)| NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr,
                    except: (!except.is_empty()).then_some(except),
                }),
                ..NetworkPolicyPeer::default()
            })
            .collect();
        if !blocks.is_empty() {
            rules.push(NetworkPolicyIngressRule {
                from: Some(blocks),
                ports,
            });
        }
    }
    rules
}

fn egress_rules(
    tenant: &Tenant,
    zone: &Zone,
    identity: &Identity,
    config: &NetworkConfig,
) -> Vec<NetworkPolicyEgressRule> {
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_string()),
        ..NetworkPolicyPort::default()
    };
    let mut rules = vec![NetworkPolicyEgressRule {
        to: Some(vec![external_peer(&config.dns)]),
        ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
    }];
    // The other side of each zone-to-zone ingress rule.
    for target in tenant
        .spec
        .zones
        .iter()
        .filter(|t| t.allow_from.contains(&zone.name) && !t.ports.is_empty())
    {
        rules.push(NetworkPolicyEgressRule {
            to: Some(vec![tenant_zone_peer(identity, &target.name)]),
            ports: Some(policy_ports(&target.ports)),
        });
    }
    for third_party in tenant
        .spec
        .egress
        .iter()
        .filter(|e| e.zone.as_ref().is_none_or(|z| *z == zone.name))
    {
        // A range inside the cluster's is refused at admission; should the configuration
        // change under it, the rule goes rather than open a way to other tenants.
        let Some(block) = outside_cluster(&third_party.cidr, &config.cluster_cidrs) else {
            continue;
        };
        rules.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(block),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(policy_ports(&third_party.ports)),
        });
    }
    rules
}

/// `status.ingresses[].firewall` of an Ingress carrying the firewall's annotations.
pub const FIREWALL_APPLIED: &str = "Applied";
/// Of an Ingress not carrying them yet, or changed by someone else.
pub const FIREWALL_PENDING: &str = "Pending";
/// Of every Ingress when the configuration names no annotations for the ingress controller.
pub const FIREWALL_UNSUPPORTED: &str = "Unsupported";

/// The annotations through which the shared ingress controller enforces the tenant's
/// firewall on its Ingresses in internet-facing zones (`network.ingressFirewall`): each key
/// with its value, comma-separated ranges, or `None` where it must be absent (no range
/// listed). Empty when the configuration names no annotations.
#[must_use]
pub fn ingress_firewall(
    tenant: &Tenant,
    config: &NetworkConfig,
) -> BTreeMap<String, Option<String>> {
    let Some(keys) = &config.ingress_firewall else {
        return BTreeMap::new();
    };
    let list = |cidrs: &[String]| (!cidrs.is_empty()).then(|| cidrs.join(","));
    let firewall = &tenant.spec.firewall;
    BTreeMap::from([
        (keys.allow_annotation.clone(), list(&firewall.allow_cidrs)),
        (keys.deny_annotation.clone(), list(&firewall.deny_cidrs)),
    ])
}

/// What to merge into an Ingress's `annotations` so they hold exactly the firewall's `wanted`
/// values and no other source-range filter (a stale key of an earlier configuration, another
/// spelling): each key with its value, or `None` to remove it. `None` when nothing is to change.
#[must_use]
pub fn firewall_patch(
    annotations: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<String, Option<String>>,
) -> Option<BTreeMap<String, Option<String>>> {
    if wanted.is_empty() {
        return None;
    }
    let live = |key: &String| annotations.and_then(|a| a.get(key));
    let stale = annotations
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| k.contains("source-range") && !wanted.contains_key(*k));
    let mut patch: BTreeMap<String, Option<String>> = stale.map(|k| (k.clone(), None)).collect();
    for (key, value) in wanted {
        if live(key) != value.as_ref() {
            patch.insert(key.clone(), value.clone());
        }
    }
    (!patch.is_empty()).then_some(patch)
}

/// The configured cluster ranges that parse (the configuration's loader refuses the others).
fn cluster_ranges(config: &NetworkConfig) -> Vec<(String, Cidr)> {
    config
        .cluster_cidrs
        .iter()
        .filter_map(|text| Some((text.clone(), Cidr::parse(text)?)))
        .collect()
}

/// An ipBlock of `cidr` without the cluster's ranges inside it (`except`); `None` when `cidr`
/// lies wholly inside one of them, or is no CIDR.
#[must_use]
pub fn outside_cluster(cidr: &str, cluster_cidrs: &[String]) -> Option<IPBlock> {
    let range = Cidr::parse(cidr)?;
    let mut except = Vec::new();
    for text in cluster_cidrs {
        let Some(cluster) = Cidr::parse(text) else {
            continue;
        };
        if cluster.contains(&range) {
            return None;
        }
        if range.contains(&cluster) && !except.contains(text) {
            except.push(text.clone());
        }
    }
    Some(IPBlock {
        cidr: cidr.to_string(),
        except: (!except.is_empty()).then_some(except),
    })
}

/// The firewall's allowed sources, each with the denied ranges and then the cluster's ranges
/// inside it as exceptions. An allowed range that a denied or cluster range covers whole is
/// dropped; no allowed range means any address, in both families.
#[must_use]
pub fn firewall_blocks(tenant: &Tenant, config: &NetworkConfig) -> Vec<(String, Vec<String>)> {
    let firewall = &tenant.spec.firewall;
    let allow: Vec<String> = if firewall.allow_cidrs.is_empty() {
        vec!["0.0.0.0/0".into(), "::/0".into()]
    } else {
        firewall.allow_cidrs.clone()
    };
    let deny: Vec<(String, Cidr)> = firewall
        .deny_cidrs
        .iter()
        .filter_map(|d| Some((d.clone(), Cidr::parse(d)?)))
        .chain(cluster_ranges(config))
        .collect();
    allow
        .into_iter()
        .filter_map(|text| {
            let range = Cidr::parse(&text)?;
            if deny.iter().any(|(_, d)| d.contains(&range)) {
                return None;
            }
            let mut except: Vec<String> = Vec::new();
            for (t, _) in deny.iter().filter(|(_, d)| range.contains(d)) {
                if !except.contains(t) {
                    except.push(t.clone());
                }
            }
            Some((text, except))
        })
        .collect()
}

/// Selects one zone namespace of this tenant, by uid.
fn tenant_zone_peer(identity: &Identity, zone: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                (labels::TENANT_UID.to_string(), identity.uid.clone()),
                (labels::ZONE.to_string(), zone.to_string()),
            ])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn external_peer(selector: &PeerSelector) -> NetworkPolicyPeer {
    let select = |labels: &BTreeMap<String, String>| LabelSelector {
        match_labels: (!labels.is_empty()).then(|| labels.clone()),
        ..LabelSelector::default()
    };
    NetworkPolicyPeer {
        namespace_selector: Some(select(&selector.namespace_labels)),
        pod_selector: (!selector.pod_labels.is_empty()).then(|| select(&selector.pod_labels)),
        ..NetworkPolicyPeer::default()
    }
}

fn policy_ports(ports: &[Port]) -> Vec<NetworkPolicyPort> {
    ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(p.port)),
            protocol: Some(protocol(p.protocol).to_string()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}

/// The Kubernetes name of a protocol.
#[must_use]
pub fn protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

#[cfg(test)]
mod tests;
