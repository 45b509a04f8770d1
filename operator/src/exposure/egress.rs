//! What the applied NetworkPolicies let each zone reach outside itself, against what the spec
//! asks: the other half of the exposure report (`status.egress`).

use super::{ANYWHERE, DNS, ZoneNamespace, isolates, of_zone, rule_ports, source};
use crate::config::NetworkConfig;
use enclave_crds::{EgressEntry, Protocol, Tenant};
use k8s_openapi::api::networking::v1::NetworkPolicy;

/// Every destination outside its zone that the applied `policies` let each of `zones` reach.
#[must_use]
pub fn evaluate_egress(
    zones: &[ZoneNamespace<'_>],
    policies: &[NetworkPolicy],
    network: &NetworkConfig,
) -> Vec<EgressEntry> {
    let mut entries = Vec::new();
    for zone in zones {
        let here = of_zone(policies, zone);
        let isolates_egress = isolates(&here, "Egress");
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

pub(super) fn egress_entry(
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
