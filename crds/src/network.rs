//! What the network lets in and out of a tenant's zones, as the status reports it (R16).

use crate::Protocol;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A port reachable from outside its zone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExposureEntry {
    /// Zone serving the port.
    pub zone: String,
    /// Port number (0: every port).
    pub port: i32,
    /// The last port of a range from `port`, when a policy opens one (`endPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Who can reach it: a zone, a CIDR, the ingress controller, namespaces, or another
    /// tenant (`tenant:<uid>`).
    pub from: String,
    /// The pods of the zone it reaches, when a policy opens it to only some (a pod selector
    /// such as `app=web`); absent: every pod of the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<String>,
}

/// A destination a zone's pods can reach outside their zone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressEntry {
    /// Zone whose pods reach it.
    pub zone: String,
    /// Port number (0: every port).
    pub port: i32,
    /// The last port of a range from `port`, when a policy opens one (`endPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// What it is: `dns`, a zone, a CIDR, namespaces, another tenant (`tenant:<uid>`) or
    /// `anywhere`.
    pub to: String,
    /// The pods of the zone that reach it, when a policy lets only some (a pod selector such
    /// as `enclave.dev/backup=true`); absent: every pod of the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<String>,
}

/// Whether one Ingress of an internet-facing zone carries the tenant's firewall for the
/// shared ingress controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IngressFirewallStatus {
    /// Zone of the Ingress.
    pub zone: String,
    /// Name of the Ingress.
    pub name: String,
    /// `Applied` (its annotations hold the firewall's allowed and denied ranges), `Pending`
    /// (not yet, or changed by someone else: the operator is restoring them) or `Unsupported`
    /// (the operator's configuration names no annotations for the ingress controller: only
    /// traffic reaching the pods directly is filtered).
    pub firewall: String,
}
