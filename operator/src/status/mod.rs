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
    /// The Tenant lacks metadata every object is tied to.
    pub const MISSING_METADATA: &str = "MissingMetadata";
}

/// The `Ready` condition type.
pub const READY: &str = "Ready";
/// The `Isolated` condition type: the exposure report matches the spec exactly.
pub const ISOLATED: &str = "Isolated";

/// What the applied NetworkPolicies expose, and how that differs from the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkReport {
    /// Every port reachable from outside its zone.
    pub exposure: Vec<ExposureEntry>,
    /// Differences from what the spec asks; empty when isolated as declared.
    pub differences: Vec<String>,
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
    // Without a fresh report (a blocked or deleted tenant), the last one stands.
    let kept = previous.cloned().unwrap_or_default();
    let exposure = match network {
        Some(report) => {
            let isolated = report.differences.is_empty();
            let (reason, message) = if isolated {
                (
                    "ExposureMatchesSpec",
                    format!(
                        "{} port(s) reachable from outside their zone, all declared",
                        report.exposure.len()
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
        exposure,
        usage: kept.usage,
        certificate: kept.certificate,
        backup: kept.backup,
        decommissioned_at: kept.decommissioned_at,
        purged_at: kept.purged_at,
    }
}

/// The `WorkloadsRedundant` condition type.
pub const WORKLOADS_REDUNDANT: &str = "WorkloadsRedundant";

/// How the workloads stand against N+1 (R15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redundancy {
    /// Workloads with N+1 replicas available.
    pub redundant: usize,
    /// Workloads declared.
    pub total: usize,
    /// `Redundant`, `RedundancyLost` (some at N: still serving) or `Unavailable` (some below N).
    pub reason: &'static str,
    /// Which workloads are short, and by how much.
    pub message: String,
}

/// What the API server reports of the controller running one workload (a Deployment or a
/// StatefulSet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Its namespace.
    pub namespace: String,
    /// Its name: the workload's.
    pub name: String,
    /// The image of its pod template.
    pub image: String,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Replicas available.
    pub available: i32,
}

fn template_image(template: &PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

impl Observed {
    /// From a Deployment.
    #[must_use]
    pub fn of_deployment(d: &Deployment) -> Self {
        let status = d.status.clone().unwrap_or_default();
        let spec = d.spec.as_ref();
        Self {
            namespace: d.metadata.namespace.clone().unwrap_or_default(),
            name: d.metadata.name.clone().unwrap_or_default(),
            image: spec
                .map(|s| template_image(&s.template))
                .unwrap_or_default(),
            desired: spec.and_then(|s| s.replicas).unwrap_or(1),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
        }
    }

    /// From a StatefulSet.
    #[must_use]
    pub fn of_stateful_set(s: &StatefulSet) -> Self {
        let status = s.status.clone().unwrap_or_default();
        let spec = s.spec.as_ref();
        Self {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
            image: spec
                .map(|s| template_image(&s.template))
                .unwrap_or_default(),
            desired: spec.and_then(|s| s.replicas).unwrap_or(1),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
        }
    }

    fn runs(&self, workload: &enclave_crds::Workload) -> bool {
        self.name == workload.name && self.namespace.ends_with(&format!("-{}", workload.zone))
    }
}

/// The image and replica counts of each declared workload.
#[must_use]
pub fn workload_statuses(
    workloads: &[enclave_crds::Workload],
    observed: &[Observed],
) -> Vec<WorkloadStatus> {
    workloads
        .iter()
        .filter_map(|w| {
            let o = observed.iter().find(|o| o.runs(w))?;
            Some(WorkloadStatus {
                name: w.name.clone(),
                zone: w.zone.clone(),
                image: o.image.clone(),
                desired: o.desired,
                updated: o.updated,
                available: o.available,
            })
        })
        .collect()
}

/// Compares each workload's available replicas with its capacity N.
#[must_use]
pub fn redundancy(workloads: &[enclave_crds::Workload], observed: &[Observed]) -> Redundancy {
    let mut short = Vec::new();
    let mut below = false;
    let mut redundant = 0;
    for workload in workloads {
        let available = observed
            .iter()
            .find(|o| o.runs(workload))
            .map_or(0, |o| o.available);
        if available > workload.capacity {
            redundant += 1;
        } else {
            below |= available < workload.capacity;
            short.push(format!(
                "{}: {available} available of {} (capacity {})",
                workload.name,
                workload.capacity + 1,
                workload.capacity
            ));
        }
    }
    let reason = if short.is_empty() {
        "Redundant"
    } else if below {
        "Unavailable"
    } else {
        "RedundancyLost"
    };
    let message = if short.is_empty() {
        format!("{redundant} workload(s) run N+1")
    } else {
        short.join("; ")
    };
    Redundancy {
        redundant,
        total: workloads.len(),
        reason,
        message,
    }
}

/// Adds the `WorkloadsRedundant` condition and the ready count; a ready tenant whose workloads
/// are short is `Degraded`.
pub fn with_redundancy(
    status: &mut TenantStatus,
    redundancy: &Redundancy,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    status.ready_workloads = Some(format!("{}/{}", redundancy.redundant, redundancy.total));
    if redundancy.total == 0 {
        return;
    }
    let ok = redundancy.reason == "Redundant";
    degrading_condition(
        status,
        WORKLOADS_REDUNDANT,
        (ok, redundancy.reason, &redundancy.message),
        previous,
        now,
    );
}

/// Adds the condition `type_` as `(ok, reason, message)` says; a ready tenant for which it is
/// false is `Degraded`.
fn degrading_condition(
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

/// The `BackupHealthy` condition type.
pub const BACKUP_HEALTHY: &str = "BackupHealthy";

/// How the tenant's backups stand (R10).
#[derive(Clone, Debug, PartialEq)]
pub struct BackupReport {
    /// Last successful and failed runs.
    pub status: enclave_crds::BackupStatus,
    /// True when the last success is recent enough for the schedule.
    pub healthy: bool,
    /// `Recent`, `NotDueYet` or `Overdue`.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// The two most recent times `schedule` fired before `now` (latest first), looking back as far
/// as needed (up to two years).
#[must_use]
pub fn recent_fires(schedule: &str, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
    let cron = croner::Cron::new(schedule).parse().ok()?;
    let now_chrono = chrono::DateTime::from_timestamp(now.as_second(), 0)?;
    // Short windows first, so a schedule firing every minute is not walked for years.
    for lookback in [
        chrono::Duration::hours(1),
        chrono::Duration::days(2),
        chrono::Duration::days(70),
        chrono::Duration::days(800),
    ] {
        let fires: Vec<_> = cron
            .iter_from(now_chrono - lookback)
            .take_while(|t| *t <= now_chrono)
            .collect();
        if let [.., second, first] = fires.as_slice() {
            return Some((
                Timestamp::from_second(first.timestamp()).ok()?,
                Timestamp::from_second(second.timestamp()).ok()?,
            ));
        }
    }
    None
}

/// Reads the backup Jobs (`(succeeded at, failed at)` of each) against the schedule: healthy
/// while the last success is no older than the run before the latest one (one missed or failed
/// run is tolerated), or while no run is due yet for a new tenant.
#[must_use]
pub fn backup_health(
    schedule: &str,
    runs: &[(Option<Timestamp>, Option<Timestamp>)],
    created: Timestamp,
    now: Timestamp,
) -> BackupReport {
    let last_success = runs.iter().filter_map(|r| r.0).max();
    let last_failure = runs.iter().filter_map(|r| r.1).max();
    let status = enclave_crds::BackupStatus {
        last_successful_time: last_success.map(Time),
        last_failure_time: last_failure.map(Time),
    };
    let describe = |t: Option<Timestamp>| t.map_or_else(|| "never".to_string(), |t| t.to_string());
    let Some((_, before_latest)) = recent_fires(schedule, now) else {
        return BackupReport {
            status,
            healthy: true,
            reason: "NotDueYet",
            message: format!("schedule {schedule:?} has not fired yet"),
        };
    };
    let (healthy, reason) = match last_success {
        Some(success) if success >= before_latest => (true, "Recent"),
        None if created >= before_latest => (true, "NotDueYet"),
        _ => (false, "Overdue"),
    };
    BackupReport {
        status,
        healthy,
        reason,
        message: format!(
            "last successful backup: {}; last failed: {}; schedule {schedule:?}",
            describe(last_success),
            describe(last_failure)
        ),
    }
}

/// Adds `status.backup` and `BackupHealthy`; a ready tenant with overdue backups is `Degraded`.
pub fn with_backup(
    status: &mut TenantStatus,
    report: &BackupReport,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    status.backup = Some(report.status.clone());
    degrading_condition(
        status,
        BACKUP_HEALTHY,
        (report.healthy, report.reason, &report.message),
        previous,
        now,
    );
}

/// The `StorageReplicated` condition type.
pub const STORAGE_REPLICATED: &str = "StorageReplicated";

/// How the claims stand against the replicas the spec asks (R8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    /// True when every claim is Bound on a class giving at least its replicas.
    pub ok: bool,
    /// `Replicated`, `Pending` or `WrongClass`.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// Checks that every wanted claim (`(namespace, name, replicas)`) is Bound on an Enclave class
/// giving at least `replicas` copies.
#[must_use]
pub fn replication(
    wanted: &[(String, String, i32)],
    claims: &[PersistentVolumeClaim],
    classes: &[StorageClass],
) -> Replication {
    let mut pending = Vec::new();
    let mut wrong = Vec::new();
    for (namespace, name, replicas) in wanted {
        let claim = claims.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(name)
        });
        let Some(claim) = claim else {
            pending.push(format!("{namespace}/{name} (missing)"));
            continue;
        };
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Bound") {
            pending.push(format!(
                "{namespace}/{name} ({})",
                phase.unwrap_or("Pending")
            ));
            continue;
        }
        let class = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref());
        let gives = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == class)
            .and_then(|c| {
                c.metadata
                    .labels
                    .as_ref()?
                    .get(crate::desired::storage::REPLICAS)
            })
            .and_then(|r| r.parse::<i32>().ok());
        if gives.is_none_or(|g| g < *replicas) {
            wrong.push(format!(
                "{namespace}/{name} (class {} gives {} replicas, {replicas} required)",
                class.unwrap_or("none"),
                gives.map_or_else(|| "unknown".to_string(), |g| g.to_string())
            ));
        }
    }
    if !wrong.is_empty() {
        Replication {
            ok: false,
            reason: "WrongClass",
            message: wrong.join("; "),
        }
    } else if !pending.is_empty() {
        Replication {
            ok: false,
            reason: "Pending",
            message: format!("not bound yet: {}", pending.join(", ")),
        }
    } else {
        Replication {
            ok: true,
            reason: "Replicated",
            message: format!(
                "{} volume claim(s) bound with their required replicas",
                wanted.len()
            ),
        }
    }
}

/// Adds the workloads' images, the retained volumes and `StorageReplicated` (when the tenant
/// has volumes); a ready tenant whose storage is short is `Degraded`.
pub fn with_storage(
    status: &mut TenantStatus,
    replication: Option<&Replication>,
    retained: Vec<RetainedVolume>,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    status.retained_volumes = retained;
    let Some(replication) = replication else {
        return;
    };
    degrading_condition(
        status,
        STORAGE_REPLICATED,
        (replication.ok, replication.reason, &replication.message),
        previous,
        now,
    );
}

/// Tenant-wide usage from the quotas of its namespaces: `used/hard` per resource.
#[must_use]
pub fn usage(quotas: &[ResourceQuota]) -> BTreeMap<String, String> {
    let mut used: BTreeMap<String, i128> = BTreeMap::new();
    let mut hard: BTreeMap<String, i128> = BTreeMap::new();
    for status in quotas.iter().filter_map(|q| q.status.as_ref()) {
        for (totals, values) in [(&mut used, &status.used), (&mut hard, &status.hard)] {
            for (resource, quantity) in values.iter().flatten() {
                *totals.entry(resource.clone()).or_default() +=
                    crate::units::quantity(&quantity.0).unwrap_or_default();
            }
        }
    }
    hard.iter()
        .map(|(resource, limit)| {
            let spent = used.get(resource).copied().unwrap_or_default();
            (
                resource.clone(),
                format!(
                    "{}/{}",
                    format_quantity(resource, spent),
                    format_quantity(resource, *limit)
                ),
            )
        })
        .collect()
}

/// A quantity in nano units, written as people read it: bytes with binary suffixes, CPU in
/// cores or millicores, counts as numbers.
fn format_quantity(resource: &str, nanos: i128) -> String {
    const NANO: i128 = 1_000_000_000;
    if resource.contains("memory") || resource.contains("storage") {
        let bytes = nanos / NANO;
        for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            if bytes != 0 && bytes % (1_i128 << shift) == 0 {
                return format!("{}{suffix}", bytes >> shift);
            }
        }
        return bytes.to_string();
    }
    if nanos % NANO == 0 {
        (nanos / NANO).to_string()
    } else {
        format!("{}m", nanos / 1_000_000)
    }
}

/// A condition whose `lastTransitionTime` moves only when its status does.
fn condition(
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

/// Everything the status is computed from, read once per reconcile (see the controller's
/// `observe`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The status the API server holds now.
    pub previous: Option<TenantStatus>,
    /// The tenant's namespaces.
    pub namespaces: Vec<String>,
    /// The quotas of its namespaces.
    pub quotas: Vec<ResourceQuota>,
    /// Its workloads' Deployments and StatefulSets.
    pub workloads: Vec<Observed>,
    /// Its claims.
    pub claims: Vec<PersistentVolumeClaim>,
    /// Enclave's storage classes (read only when the tenant has volumes).
    pub classes: Vec<StorageClass>,
    /// Its backup Jobs' `(succeeded at, failed at)` (read only when it has backups).
    pub backup_runs: Vec<(Option<Timestamp>, Option<Timestamp>)>,
    /// The exposure report, when the network was evaluated.
    pub network: Option<NetworkReport>,
}

/// What the reconcile brings to the status besides the snapshot.
#[derive(Clone, Debug)]
pub struct Reconciled<'a> {
    /// Where the reconcile left the tenant.
    pub outcome: &'a Outcome,
    /// The certificate, when the TLS step ran.
    pub certificate: Option<&'a TlsReport>,
    /// The tenant's retention window (to derive `decommissionedAt` from the deadline).
    pub retention: std::time::Duration,
}

/// The tenant's status: pure, from the tenant, what the reconcile did and one snapshot.
#[must_use]
pub fn compute(
    tenant: &enclave_crds::Tenant,
    reconciled: &Reconciled<'_>,
    snapshot: &Snapshot,
    now: Timestamp,
) -> TenantStatus {
    let outcome = reconciled.outcome;
    let previous = snapshot.previous.as_ref();
    let zones: Vec<String> = tenant.spec.zones.iter().map(|z| z.name.clone()).collect();
    let namespaces = match outcome {
        Outcome::Purged | Outcome::Blocked { .. } => vec![],
        _ => snapshot.namespaces.clone(),
    };
    let mut status = tenant_status(
        tenant.metadata.generation,
        outcome,
        &zones,
        namespaces,
        snapshot.network.as_ref(),
        previous,
        now,
    );
    status.usage = usage(&snapshot.quotas);
    status.workloads = workload_statuses(&tenant.spec.workloads, &snapshot.workloads);
    if tenant.is_running() {
        let redundancy = redundancy(&tenant.spec.workloads, &snapshot.workloads);
        with_redundancy(&mut status, &redundancy, previous, now);
    } else {
        // Stopped on purpose: no redundancy to report, no alarm to raise.
        status.ready_workloads = Some("stopped".into());
    }
    if !matches!(outcome, Outcome::Decommissioning { .. } | Outcome::Purged) {
        let retained = snapshot
            .claims
            .iter()
            .filter_map(|c| {
                Some(RetainedVolume {
                    name: c.metadata.name.clone()?,
                    namespace: c.metadata.namespace.clone()?,
                    purge_after: Time(crate::cluster::retention::purge_after(&c.metadata)?),
                })
            })
            .collect();
        let wanted: Vec<(String, String, i32)> = tenant
            .spec
            .volumes
            .iter()
            .flat_map(|v| {
                let namespace = tenant.zone_namespace(&v.zone);
                crate::desired::storage::claim_names(tenant, v)
                    .into_iter()
                    .map(move |name| (namespace.clone(), name, v.replicas))
            })
            .collect();
        let replication =
            (!wanted.is_empty()).then(|| replication(&wanted, &snapshot.claims, &snapshot.classes));
        with_storage(&mut status, replication.as_ref(), retained, previous, now);
    }
    match &tenant.spec.backup {
        Some(backup) if !matches!(outcome, Outcome::Purged) => {
            let created = tenant
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let report = backup_health(&backup.schedule, &snapshot.backup_runs, created, now);
            with_backup(&mut status, &report, previous, now);
        }
        _ => status.backup = None,
    }
    if tenant.spec.tls.is_some() {
        with_certificate(&mut status, reconciled.certificate, previous, now);
    } else {
        status.certificate = None;
    }
    // The retention window of a decommissioned tenant starts when it was first seen so; the
    // deadline was computed from it, and derived back the two always agree.
    let decommissioned = tenant.spec.lifecycle.state
        == enclave_crds::LifecycleState::Decommissioned
        && tenant.metadata.deletion_timestamp.is_none();
    status.decommissioned_at = match outcome {
        Outcome::Decommissioning { purge_after } if decommissioned => Some(Time(
            purge_after
                .checked_sub(reconciled.retention)
                .unwrap_or(*purge_after),
        )),
        _ if decommissioned => previous.and_then(|p| p.decommissioned_at.clone()),
        _ => None,
    };
    status.purged_at = match outcome {
        Outcome::Purged => Some(
            previous
                .and_then(|p| p.purged_at.clone())
                .unwrap_or_else(|| Time(seconds(now))),
        ),
        _ if decommissioned => previous.and_then(|p| p.purged_at.clone()),
        _ => None,
    };
    status
}

/// An Event the change of status calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// A Warning rather than a Normal Event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For a person.
    pub message: String,
}

/// The Events a new status calls for, from how its conditions changed: a Warning when
/// workloads fall short of N+1 or backups become overdue, and one when `Ready` changes reason.
#[must_use]
pub fn announcements(
    previous: Option<&TenantStatus>,
    next: &TenantStatus,
    outcome: &Outcome,
) -> Vec<Announcement> {
    let reason_of = |status: Option<&TenantStatus>, type_: &str| {
        status?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.reason.clone(), c.status == "True", c.message.clone()))
    };
    let mut events = Vec::new();
    for (type_, reason) in [
        (WORKLOADS_REDUNDANT, None),
        (BACKUP_HEALTHY, Some("BackupOverdue")),
    ] {
        if let Some((now_reason, false, message)) = reason_of(Some(next), type_)
            && reason_of(previous, type_).map(|p| p.0) != Some(now_reason.clone())
        {
            events.push(Announcement {
                warning: true,
                reason: reason.map_or(now_reason, str::to_string),
                message,
            });
        }
    }
    let ready = reason_of(Some(next), READY).map(|r| r.0);
    if ready != reason_of(previous, READY).map(|r| r.0) {
        let (warning, message) = match outcome {
            Outcome::Ready => (false, "tenant is ready".to_string()),
            Outcome::Progressing { message, .. } => (false, message.clone()),
            Outcome::Blocked { message, .. } => (true, message.clone()),
            Outcome::Decommissioning { purge_after } => (
                false,
                format!(
                    "tenant stopped and closed: data retained until {purge_after}, then purged"
                ),
            ),
            Outcome::Suspended => (
                false,
                "tenant suspended: workloads stopped, exposure closed, data kept".to_string(),
            ),
            Outcome::Purged => (
                false,
                "tenant purged: its data is destroyed and verified gone".to_string(),
            ),
        };
        events.push(Announcement {
            warning,
            reason: ready.unwrap_or_else(|| "Reconciled".into()),
            message,
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("timestamp")
    }

    #[test]
    fn ready_outcome_gives_ready_phase_and_true_condition() {
        let s = tenant_status(
            Some(3),
            &Outcome::Ready,
            &["dmz".to_string(), "app".to_string()],
            vec!["a-dmz".into()],
            None,
            None,
            at(100),
        );
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.conditions[0].observed_generation, Some(3));
        assert_eq!(s.namespaces, ["a-dmz"]);
        assert_eq!(s.zones.as_deref(), Some("dmz,app"));
    }

    #[test]
    fn blocked_outcome_names_reason() {
        let outcome = Outcome::Blocked {
            reason: "NamespaceConflict",
            message: "x exists".into(),
        };
        let s = tenant_status(Some(1), &outcome, &[], vec![], None, None, at(100));
        assert_eq!(s.phase, Some(Phase::Blocked));
        assert_eq!(s.conditions[0].reason, "NamespaceConflict");
        assert_eq!(s.conditions[0].status, "False");
    }

    #[test]
    fn unchanged_outcome_gives_identical_status() {
        let first = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(100));
        let second = tenant_status(
            Some(1),
            &Outcome::Ready,
            &[],
            vec![],
            None,
            Some(&first),
            at(500),
        );
        assert_eq!(
            first, second,
            "a steady tenant must not cause a status write"
        );
    }

    #[test]
    fn transition_time_moves_when_status_changes() {
        let first = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(100));
        let outcome = Outcome::Progressing {
            reason: "NamespaceTerminating",
            message: String::new(),
        };
        let second = tenant_status(Some(1), &outcome, &[], vec![], None, Some(&first), at(200));
        assert_eq!(second.conditions[0].last_transition_time, Time(at(200)));
    }

    #[test]
    fn isolated_follows_the_network_report() {
        let clean = NetworkReport {
            exposure: vec![],
            differences: vec![],
        };
        let s = tenant_status(
            Some(1),
            &Outcome::Ready,
            &[],
            vec![],
            Some(&clean),
            None,
            at(100),
        );
        let isolated = s
            .conditions
            .iter()
            .find(|c| c.type_ == ISOLATED)
            .expect("Isolated");
        assert_eq!(
            (isolated.status.as_str(), isolated.reason.as_str()),
            ("True", "ExposureMatchesSpec")
        );
        let leaky = NetworkReport {
            exposure: vec![],
            differences: vec!["open but not declared: app:22".into()],
        };
        let s = tenant_status(
            Some(1),
            &Outcome::Ready,
            &[],
            vec![],
            Some(&leaky),
            Some(&s),
            at(200),
        );
        let isolated = s
            .conditions
            .iter()
            .find(|c| c.type_ == ISOLATED)
            .expect("Isolated");
        assert_eq!(
            (isolated.status.as_str(), isolated.reason.as_str()),
            ("False", "UnexpectedExposure")
        );
        assert!(isolated.message.contains("app:22"));
        // A blocked reconcile keeps the last report.
        let blocked = Outcome::Blocked {
            reason: "X",
            message: String::new(),
        };
        let s2 = tenant_status(Some(1), &blocked, &[], vec![], None, Some(&s), at(300));
        assert_eq!(
            s2.conditions.iter().filter(|c| c.type_ == ISOLATED).count(),
            1
        );
    }

    #[test]
    fn usage_sums_quotas_over_zones() {
        let quota = |used: &[(&str, &str)], hard: &[(&str, &str)]| -> ResourceQuota {
            let map = |pairs: &[(&str, &str)]| {
                serde_json::Value::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
                        .collect(),
                )
            };
            serde_json::from_value(serde_json::json!({"metadata": {"name": "q"}, "status": {"used": map(used), "hard": map(hard)}})).expect("quota")
        };
        let quotas = [
            quota(
                &[
                    ("limits.cpu", "500m"),
                    ("limits.memory", "512Mi"),
                    ("pods", "1"),
                ],
                &[
                    ("limits.cpu", "4"),
                    ("limits.memory", "8Gi"),
                    ("pods", "20"),
                ],
            ),
            quota(
                &[("limits.cpu", "1"), ("limits.memory", "1Gi"), ("pods", "2")],
                &[
                    ("limits.cpu", "4"),
                    ("limits.memory", "8Gi"),
                    ("pods", "20"),
                ],
            ),
        ];
        let u = usage(&quotas);
        assert_eq!(u["limits.cpu"], "1500m/8");
        assert_eq!(u["limits.memory"], "1536Mi/16Gi");
        assert_eq!(u["pods"], "3/40");
    }

    #[test]
    fn redundancy_distinguishes_n_plus_one_n_and_below() {
        let workload = |name: &str, capacity: i32| enclave_crds::Workload {
            name: name.into(),
            zone: "app".into(),
            capacity,
            ..Default::default()
        };
        let deployment = |name: &str, available: i32| -> Observed {
            Observed::of_deployment(&serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "acme-app"}, "status": {"availableReplicas": available}})).expect("deployment"))
        };
        let workloads = [workload("web", 2), workload("api", 1)];
        let r = redundancy(&workloads, &[deployment("web", 3), deployment("api", 2)]);
        assert_eq!((r.reason, r.redundant, r.total), ("Redundant", 2, 2));
        let r = redundancy(&workloads, &[deployment("web", 2), deployment("api", 2)]);
        assert_eq!((r.reason, r.redundant), ("RedundancyLost", 1));
        assert!(r.message.contains("web: 2 available of 3"), "{}", r.message);
        let r = redundancy(&workloads, &[deployment("web", 1), deployment("api", 2)]);
        assert_eq!(r.reason, "Unavailable");
        let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(1));
        with_redundancy(&mut status, &r, None, at(1));
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(status.ready_workloads.as_deref(), Some("1/2"));
    }

    #[test]
    fn decommissioning_shows_purge_deadline() {
        let outcome = Outcome::Decommissioning {
            purge_after: at(1_000),
        };
        let s = tenant_status(Some(1), &outcome, &[], vec![], None, None, at(100));
        assert_eq!(s.phase, Some(Phase::Decommissioning));
        assert_eq!(s.purge_after, Some(Time(at(1_000))));
    }

    #[test]
    fn storage_replicated_needs_every_claim_bound_on_enough_replicas() {
        let claim = |name: &str, phase: &str, class: &str| -> PersistentVolumeClaim {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "acme-data"}, "spec": {"storageClassName": class}, "status": {"phase": phase}})).expect("claim")
        };
        let class = |name: &str, replicas: i32| -> StorageClass {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"enclave.dev/replicas": replicas.to_string()}}, "provisioner": "x"})).expect("class")
        };
        let classes = [class("enclave-default-r3", 3), class("foreign", 1)];
        let wanted = [
            ("acme-data".to_string(), "db".to_string(), 3),
            ("acme-data".to_string(), "files".to_string(), 3),
        ];
        let r = replication(
            &wanted,
            &[
                claim("db", "Bound", "enclave-default-r3"),
                claim("files", "Bound", "enclave-default-r3"),
            ],
            &classes,
        );
        assert_eq!((r.ok, r.reason), (true, "Replicated"));
        let r = replication(
            &wanted,
            &[
                claim("db", "Bound", "enclave-default-r3"),
                claim("files", "Pending", "enclave-default-r3"),
            ],
            &classes,
        );
        assert_eq!((r.ok, r.reason), (false, "Pending"));
        assert!(r.message.contains("acme-data/files"), "{}", r.message);
        let r = replication(
            &wanted,
            &[
                claim("db", "Bound", "enclave-default-r3"),
                claim("files", "Bound", "foreign"),
            ],
            &classes,
        );
        assert_eq!((r.ok, r.reason), (false, "WrongClass"));
        assert!(
            r.message.contains("gives 1 replicas, 3 required"),
            "{}",
            r.message
        );
        let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(1));
        with_storage(&mut status, Some(&r), vec![], None, at(1));
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == STORAGE_REPLICATED && c.status == "False")
        );
    }

    #[test]
    fn workload_status_names_the_image_and_counts() {
        let workloads = [enclave_crds::Workload {
            name: "web".into(),
            zone: "app".into(),
            capacity: 2,
            ..Default::default()
        }];
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "acme-app"},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
            "status": {"updatedReplicas": 1, "availableReplicas": 3}
        })).expect("deployment");
        let s = workload_statuses(&workloads, &[Observed::of_deployment(&d)]);
        assert_eq!(
            s,
            [WorkloadStatus {
                name: "web".into(),
                zone: "app".into(),
                image: "nginx:2".into(),
                desired: 3,
                updated: 1,
                available: 3
            }]
        );
    }

    #[test]
    fn schedule_fires_are_found_looking_back() {
        let now: Timestamp = "2026-11-28T10:30:30Z".parse().expect("time");
        let (latest, before) = recent_fires("0 2 * * *", now).expect("fires");
        assert_eq!(latest.to_string(), "2026-11-28T02:00:00Z");
        assert_eq!(before.to_string(), "2026-11-27T02:00:00Z");
        let (latest, before) = recent_fires("* * * * *", now).expect("fires");
        assert_eq!(
            (latest.to_string(), before.to_string()),
            ("2026-11-28T10:30:00Z".into(), "2026-11-28T10:29:00Z".into())
        );
        assert!(
            recent_fires("0 0 1 1 *", now).is_some(),
            "yearly looks back far enough"
        );
        assert!(recent_fires("not a schedule", now).is_none());
    }

    #[test]
    fn backups_are_healthy_while_the_last_success_is_recent() {
        let now: Timestamp = "2026-11-28T10:30:00Z".parse().expect("time");
        let t = |s: &str| Some(s.parse::<Timestamp>().expect("time"));
        let created = "2026-01-01T00:00:00Z".parse().expect("time");
        let daily = "0 2 * * *";
        // Last night's run succeeded.
        let r = backup_health(daily, &[(t("2026-11-28T02:05:00Z"), None)], created, now);
        assert_eq!((r.healthy, r.reason), (true, "Recent"));
        // Last night's failed, the night before succeeded: one miss tolerated.
        let r = backup_health(
            daily,
            &[
                (t("2026-11-27T02:05:00Z"), None),
                (None, t("2026-11-28T02:03:00Z")),
            ],
            created,
            now,
        );
        assert_eq!((r.healthy, r.reason), (true, "Recent"));
        assert_eq!(
            r.status
                .last_failure_time
                .map(|t| t.0.to_string())
                .as_deref(),
            Some("2026-11-28T02:03:00Z")
        );
        // Two nights without success: overdue.
        let r = backup_health(daily, &[(t("2026-11-26T02:05:00Z"), None)], created, now);
        assert_eq!((r.healthy, r.reason), (false, "Overdue"));
        assert!(r.message.contains("2026-11-26T02:05:00Z"), "{}", r.message);
        // Never succeeded: fine for a tenant created since, overdue for an older one.
        let r = backup_health(
            daily,
            &[],
            "2026-11-28T01:00:00Z".parse().expect("time"),
            now,
        );
        assert_eq!((r.healthy, r.reason), (true, "NotDueYet"));
        let r = backup_health(daily, &[], created, now);
        assert_eq!((r.healthy, r.reason), (false, "Overdue"));
        let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, now);
        with_backup(&mut status, &r, None, now);
        assert_eq!(status.phase, Some(Phase::Degraded));
    }
}
