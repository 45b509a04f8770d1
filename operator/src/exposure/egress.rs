//! What the applied NetworkPolicies let each zone reach outside itself, against what the spec
//! asks: the other half of the exposure report (`status.egress`).

use super::{
    ANYWHERE, DNS, ZoneNamespace, applies, cidr_source, of_zone, partial_pods, rule_ports, source,
    unselected,
};
use crate::config::NetworkConfig;
use crate::desired::backup::BACKUP;
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
        let here: Vec<&NetworkPolicy> = of_zone(policies, zone)
            .into_iter()
            .filter(|p| applies(p, "Egress"))
            .collect();
        if let Some(unselected) = unselected(&here) {
            // Pods no egress policy selects reach everything.
            let mut open = egress_entry(zone.zone, 0, None, Protocol::Tcp, ANYWHERE);
            open.pods = unselected.pods;
            entries.push(open);
        }
        for spec in here.iter().filter_map(|p| p.spec.as_ref()) {
            let pods = partial_pods(spec.pod_selector.as_ref());
            for rule in spec.egress.iter().flatten() {
                let destinations: Vec<String> = match rule.to.as_deref() {
                    None | Some([]) => vec![ANYWHERE.to_string()],
                    Some(peers) => peers
                        .iter()
                        .filter_map(|peer| source(peer, zone, zones, network))
                        .collect(),
                };
                for to in &destinations {
                    for (port, end, protocol) in rule_ports(rule.ports.as_deref()) {
                        let mut reached = egress_entry(zone.zone, port, end, protocol, to);
                        reached.pods.clone_from(&pods);
                        entries.push(reached);
                    }
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
            e.pods.clone(),
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
        pods: None,
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
    /// The cluster's pod and Service ranges, left out of the store's CIDRs.
    pub cluster_cidrs: Vec<String>,
}

/// What the spec asks each zone to reach outside itself: the cluster DNS, the ports of the
/// zones that allow it, its third parties, and (for zones holding volumes of a tenant with
/// backups) the broker and the object store.
#[must_use]
pub fn expected_egress(tenant: &Tenant, backup: &BackupEgress) -> Vec<EgressEntry> {
    let mut entries = Vec::new();
    let cluster: Vec<&String> = backup.cluster_cidrs.iter().collect();
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
            let Some(to) = cidr_source(&third.cidr, &cluster) else {
                continue; // inside the cluster's ranges: never opened
            };
            for port in &third.ports {
                entries.push(egress_entry(
                    &zone.name,
                    port.port,
                    None,
                    port.protocol,
                    &to,
                ));
            }
        }
        if backed_up.contains(&zone.name.as_str()) {
            // Only the backup pods, selected by their label.
            let backup_pods = Some(format!("{BACKUP}=true"));
            let mut broker = egress_entry(
                &zone.name,
                backup.broker_port,
                None,
                Protocol::Tcp,
                &format!(
                    "namespaces:kubernetes.io/metadata.name={}",
                    backup.operator_namespace
                ),
            );
            broker.pods.clone_from(&backup_pods);
            entries.push(broker);
            for to in backup
                .store_cidrs
                .iter()
                .filter_map(|cidr| cidr_source(cidr, &cluster))
            {
                let mut store =
                    egress_entry(&zone.name, backup.store_port, None, Protocol::Tcp, &to);
                store.pods.clone_from(&backup_pods);
                entries.push(store);
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
        let pods = e
            .pods
            .as_ref()
            .map_or_else(String::new, |p| format!(" (pods {p})"));
        format!(
            "{} to {}:{}{range}/{:?}{pods}",
            e.zone, e.to, e.port, e.protocol
        )
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
