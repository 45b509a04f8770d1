//! The Tenant's status, computed from what the reconcile did and one snapshot of what it saw.
//! Pure: the controller writes it (through the gateway) only when it differs from what the
//! API server holds, and announces the conditions that changed.

use enclave_crds::{ExposureEntry, Phase, RetainedVolume, TenantStatus, WorkloadStatus};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec, ResourceQuota};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Where a reconcile left the tenant.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Everything declared is in place.
    Ready,
    /// Waiting on the cluster (a namespace still terminating, say).
    Progressing {
        /// CamelCase reason.
        reason: &'static str,
        /// For a person.
        message: String,
    },
    /// The spec cannot be applied as is; nothing was changed.
    Blocked {
        /// CamelCase reason.
        reason: &'static str,
        /// For a person.
        message: String,
    },
    /// Deleted or decommissioned: data retained until `purge_after`, then purged.
    Decommissioning {
        /// When the data is destroyed.
        purge_after: Timestamp,
    },
    /// Suspended: workloads stopped, exposure closed, data kept.
    Suspended,
    /// Decommissioned, purged and verified.
    Purged,
}

/// The reasons of the `Ready` condition set outside this module, as constants.
pub mod reasons {
    /// A namespace of the tenant's name exists and is not the tenant's.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// A namespace of the tenant is still terminating.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// The API server refused an object of the tenant (the message names it); the rest was
    /// applied.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// The Tenant lacks metadata every object is tied to.
    pub const MISSING_METADATA: &str = "MissingMetadata";
}

/// The `Ready` condition type.
pub const READY: &str = "Ready";
/// The `Isolated` condition type: the exposure report matches the spec exactly.
pub const ISOLATED: &str = "Isolated";
/// The `Reconciling` condition type (kstatus): present, and `True`, only while the operator is
/// still working towards the spec (phase `Pending`, or a purge under way). An "abnormal-true"
/// condition: absent means not reconciling, so it is removed rather than written `False`, like
/// Flux's own.
pub const RECONCILING: &str = "Reconciling";
/// The `Stalled` condition type (kstatus): present, and `True`, only while the spec cannot be
/// applied as is (phase `Blocked`; it names the reason); absent otherwise, like `Reconciling`.
pub const STALLED: &str = "Stalled";
/// The reason of `Reconciling` while a purge past its deadline is under way.
pub const PURGE_IN_PROGRESS: &str = "PurgeInProgress";

/// What the applied NetworkPolicies expose, and how that differs from the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkReport {
    /// Every port reachable from outside its zone.
    pub exposure: Vec<ExposureEntry>,
    /// Every destination outside its zone that a zone's pods can reach.
    pub egress: Vec<enclave_crds::EgressEntry>,
    /// Differences from what the spec asks; empty when isolated as declared.
    pub differences: Vec<String>,
    /// The Ingresses of the internet-facing zones and their firewall annotations.
    pub ingresses: Vec<enclave_crds::IngressFirewallStatus>,
}

/// The status for `outcome`, keeping each condition's transition time while its value holds.
#[must_use]
pub fn tenant_status(
    generation: Option<i64>,
    outcome: &Outcome,
    zones: &[String],
    namespaces: Vec<String>,
    network: Option<&NetworkReport>,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) -> TenantStatus {
    let (phase, ready, reason, message) = match outcome {
        Outcome::Ready => (
            Phase::Ready,
            true,
            "Reconciled",
            format!("{} namespace(s) in place", namespaces.len()),
        ),
        Outcome::Progressing { reason, message } => {
            (Phase::Pending, false, *reason, message.clone())
        }
        Outcome::Blocked { reason, message } => (Phase::Blocked, false, *reason, message.clone()),
        Outcome::Decommissioning { purge_after } => (
            Phase::Decommissioning,
            false,
            "Decommissioning",
            format!("workloads stopped, exposure closed; data retained until {purge_after}, then purged"),
        ),
        Outcome::Suspended => (
            Phase::Suspended,
            false,
            "Suspended",
            "workloads stopped and exposure closed; data and access kept (lifecycle.state: Suspended)".to_string(),
        ),
        Outcome::Purged => (
            Phase::Purged,
            false,
            "Purged",
            "every namespace, volume, key and certificate of the tenant was destroyed and verified gone".to_string(),
        ),
    };
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut conditions = vec![condition(
        READY,
        ready,
        reason,
        message,
        generation,
        previous_conditions,
        now,
    )];
    conditions.extend(kstatus_conditions(
        outcome,
        generation,
        previous_conditions,
        now,
    ));
    // Without a fresh report (a blocked or deleted tenant), the last one stands.
    let kept = previous.cloned().unwrap_or_default();
    let egress = network.map_or_else(|| kept.egress.clone(), |r| r.egress.clone());
    let ingresses = network.map_or_else(|| kept.ingresses.clone(), |r| r.ingresses.clone());
    let exposure = match network {
        Some(report) => {
            let isolated = report.differences.is_empty();
            let (reason, message) = if isolated {
                (
                    "ExposureMatchesSpec",
                    format!(
                        "{} port(s) reachable from outside their zone and {} destination(s) outside it, all declared",
                        report.exposure.len(),
                        report.egress.len()
                    ),
                )
            } else {
                ("UnexpectedExposure", report.differences.join("; "))
            };
            conditions.push(condition(
                ISOLATED,
                isolated,
                reason,
                message,
                generation,
                previous_conditions,
                now,
            ));
            report.exposure.clone()
        }
        None => {
            conditions.extend(
                previous_conditions
                    .iter()
                    .filter(|c| c.type_ == ISOLATED)
                    .cloned(),
            );
            kept.exposure.clone()
        }
    };
    let purge_after = match outcome {
        Outcome::Decommissioning { purge_after } => Some(Time(*purge_after)),
        _ => None,
    };
    TenantStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        namespaces,
        zones: (!zones.is_empty()).then(|| zones.join(",")),
        purge_after,
        ready_workloads: kept.ready_workloads,
        workloads: kept.workloads,
        retained_volumes: kept.retained_volumes,
        tenant_bindings: kept.tenant_bindings,
        exposure,
        egress,
        ingresses,
        incidents: kept.incidents,
        usage: kept.usage,
        certificate: kept.certificate,
        backup: kept.backup,
        decommissioned_at: kept.decommissioned_at,
        purged_at: kept.purged_at,
    }
}

/// `Reconciling` and `Stalled`, as kstatus reads them (Flux health checks, Helm's `--wait`,
/// `kubectl wait`): each is written only while `True`, since kstatus takes an absent one for
/// `False`. kstatus looks at `Ready` only when neither is `True`:
///
/// - `Ready` (and `Degraded`, whose `Ready` stays `True`): neither, so `Current`;
/// - `Pending` (waiting on the cluster, or an object refused and retried): `Reconciling`, with
///   the outcome's reason, so `InProgress`;
/// - `Blocked`: `Stalled`, with the reason and message of `Ready`, so `Failed`;
/// - `Suspended`, and `Decommissioning` before its deadline: deliberate and at rest, neither
///   (`Ready` is `False`, so kstatus still says `InProgress`: see the README);
/// - `Decommissioning` past its deadline: the purge is under way, `Reconciling`
///   (`PurgeInProgress`);
/// - `Purged`: done, neither.
///
/// Every status is written with the generation it reconciled as `observedGeneration` (the
/// status's and each condition's), so the generation lags only between a change of the spec
/// and the next write; kstatus and `kubectl wait` read that lag themselves.
fn kstatus_conditions(
    outcome: &Outcome,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Option<Condition> {
    let (type_, reason, message) = match outcome {
        Outcome::Progressing { reason, message } => (RECONCILING, *reason, message.clone()),
        Outcome::Blocked { reason, message } => (STALLED, *reason, message.clone()),
        Outcome::Decommissioning { purge_after } if now >= *purge_after => (
            RECONCILING,
            PURGE_IN_PROGRESS,
            format!(
                "the retention deadline {purge_after} has passed: purging, then verifying that nothing remains"
            ),
        ),
        Outcome::Ready | Outcome::Decommissioning { .. } | Outcome::Suspended | Outcome::Purged => {
            return None;
        }
    };
    Some(condition(
        type_, true, reason, message, generation, previous, now,
    ))
}

/// Adds the condition `type_` as `(ok, reason, message)` says; a ready tenant for which it is
/// false is `Degraded`.
pub(crate) fn degrading_condition(
    status: &mut TenantStatus,
    type_: &str,
    (ok, reason, message): (bool, &str, &str),
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = status.observed_generation;
    status.conditions.push(condition(
        type_,
        ok,
        reason,
        message.to_string(),
        generation,
        previous_conditions,
        now,
    ));
    if !ok && status.phase == Some(Phase::Ready) {
        status.phase = Some(Phase::Degraded);
    }
}

/// The `CertificateReady` condition type.
pub const CERTIFICATE_READY: &str = "CertificateReady";

/// How the tenant's certificate stands.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsReport {
    /// The certificate in force, if any.
    pub certificate: Option<enclave_crds::CertificateStatus>,
    /// True when a valid certificate is in place.
    pub ready: bool,
    /// `Issued`, `Issuing`, `CertManagerNotInstalled`, ...
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// Adds the certificate and `CertificateReady`; without a fresh report, the previous condition
/// stands. A ready tenant whose certificate is not is `Degraded`.
pub fn with_certificate(
    status: &mut TenantStatus,
    report: Option<&TlsReport>,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    let Some(report) = report else {
        status.conditions.extend(
            previous
                .iter()
                .flat_map(|s| s.conditions.iter())
                .filter(|c| c.type_ == CERTIFICATE_READY)
                .cloned(),
        );
        return;
    };
    if report.certificate.is_some() || !report.ready {
        status.certificate.clone_from(&report.certificate);
    }
    degrading_condition(
        status,
        CERTIFICATE_READY,
        (report.ready, report.reason, &report.message),
        previous,
        now,
    );
}

/// The condition `type_` (`Complete` or `Failed`) of a Job, when it holds.
#[must_use]
pub fn job_ended<'a>(
    job: &'a k8s_openapi::api::batch::v1::Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// A condition whose `lastTransitionTime` moves only when its status does.
pub(crate) fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| Time(seconds(now)), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

pub use crate::units::seconds;

mod backup;
mod compute;
pub mod incidents;
mod storage;
mod workloads;

pub use backup::*;
pub use compute::*;
pub use storage::*;
pub use workloads::*;

#[cfg(test)]
mod tests;
