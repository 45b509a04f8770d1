//! The tenant's incident register (R14), as the status shows its latest entries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Something that went wrong for the tenant, from when it was seen until it recovered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// Unique within the tenant: the type and the second it opened (`BackupFailing-1764633600`).
    pub id: String,
    /// What degraded: `NotReady`, `RedundancyLost`, `WorkloadsUnavailable`, `BackupFailing`,
    /// `CertificateNotReady`, `IsolationBroken`, `StorageNotReplicated` or `PurgeOverdue`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `critical` (a promise of the policy is broken now) or `warning` (at risk).
    pub severity: String,
    /// When the operator saw it.
    pub opened_at: Time,
    /// When it was announced: by a Warning Event on the Tenant and the
    /// `enclave_tenant_incident_open` series (which the tenant's `AlertmanagerConfig` routes to
    /// its contacts) or, when the operator has `notifications.webhookUrl`, when that receiver
    /// accepted it. Absent until then; tried again every 30 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<Time>,
    /// When it recovered; absent while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// What was seen, from the condition that degraded.
    pub summary: String,
    /// Who is to be told (`spec.contacts` with the security or operations role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
}
