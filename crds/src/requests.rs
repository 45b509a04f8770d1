//! On-demand requests about a tenant's data (R12): a restore from its backups and a full
//! export. Each is a resource of its own, created by the platform team, with its own status.
// kube's `printcolumn(type_ = "string", ...)` repeats by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Restores volumes of a tenant from its backups: all of them, or those named, from the latest
/// snapshot or a chosen one. Stop the workloads writing to them first (`Suspended`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "enclave.dev",
    version = "v1alpha1",
    kind = "TenantRestore",
    plural = "tenantrestores",
    shortname = "trestore",
    category = "enclave",
    status = "RequestStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        description = "The tenant restored"
    ),
    printcolumn(
        name = "Snapshot",
        type_ = "string",
        json_path = ".spec.snapshot",
        description = "The snapshot restored (latest when empty)"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a restore request is immutable: create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct TenantRestoreSpec {
    /// The tenant whose volumes are restored.
    #[schemars(length(min = 1, max = 40))]
    pub tenant: String,
    /// Volumes (names in `spec.volumes`) to restore; empty: every volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<String>,
    /// A snapshot id (as `restic snapshots` lists them) or `latest` (the default).
    #[serde(default = "latest")]
    #[schemars(length(min = 1, max = 64), pattern(r"^(latest|[0-9a-f]{8,64})$"))]
    pub snapshot: String,
}

/// Exports everything a tenant has: every volume's content (from its latest backup) and its
/// Kubernetes objects, as one archive, encrypted with a password of its own kept in the
/// operator's namespace (`enclave-export-<name>`). Status gives its location and SHA-256.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "enclave.dev",
    version = "v1alpha1",
    kind = "TenantExport",
    plural = "tenantexports",
    shortname = "texport",
    category = "enclave",
    status = "RequestStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        description = "The tenant exported"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Location",
        type_ = "string",
        json_path = ".status.location",
        priority = 1,
        description = "Where the encrypted archive is"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an export request is immutable: create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct TenantExportSpec {
    /// The tenant exported.
    #[schemars(length(min = 1, max = 40))]
    pub tenant: String,
}

/// Where a restore or an export stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RequestPhase>,
    /// What happened, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Jobs doing the work, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    /// When the work started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Exports: the encrypted archive's location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Exports: the SHA-256 of the archive, once decrypted, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Phases of a request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestPhase {
    /// Accepted, not started (the tenant or its backups are not ready).
    Pending,
    /// Its Jobs run.
    Running,
    /// Done.
    Succeeded,
    /// Failed: see the message.
    Failed,
}

fn latest() -> String {
    "latest".into()
}
