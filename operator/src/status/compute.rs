//! The whole status from one snapshot, and the Events its change calls for. Pure.

use super::{
    BACKUP_HEALTHY, NetworkReport, Observed, Outcome, PersistentVolumeClaim, READY, ResourceQuota,
    RetainedVolume, StorageClass, TenantStatus, Time, Timestamp, TlsReport, WORKLOADS_REDUNDANT,
    backup_health, redundancy, replication, seconds, tenant_status, usage, with_backup,
    with_certificate, with_redundancy, with_storage, workload_statuses,
};
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
    /// RoleBindings the tenant's people made, as `namespace/name: role -> subjects`.
    pub tenant_bindings: Vec<String>,
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
    /// How long a workload, a volume or a certificate may fall short before it is an incident
    /// (the configuration's `notifications.incidentGrace`).
    pub incident_grace: std::time::Duration,
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
    status.tenant_bindings.clone_from(&snapshot.tenant_bindings);
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
    let before = previous.map(|p| p.incidents.as_slice()).unwrap_or_default();
    status.incidents =
        super::incidents::track(tenant, before, &status, now, reconciled.incident_grace);
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
    // Each incident opened or resolved by this reconcile, at once (R14).
    let known = |id: &str, resolved: bool| {
        previous.is_some_and(|p| {
            p.incidents
                .iter()
                .any(|i| i.id == id && (!resolved || i.resolved_at.is_some()))
        })
    };
    for incident in &next.incidents {
        let contacts = if incident.contacts.is_empty() {
            "no security or operations contact in spec.contacts".to_string()
        } else {
            format!("to notify: {}", incident.contacts.join(", "))
        };
        if !known(&incident.id, false) && incident.resolved_at.is_none() {
            events.push(Announcement {
                warning: true,
                reason: "IncidentOpened".into(),
                message: format!(
                    "{} incident {} ({}): {}; {contacts}",
                    incident.severity, incident.id, incident.type_, incident.summary
                ),
            });
        } else if incident.resolved_at.is_some() && !known(&incident.id, true) {
            events.push(Announcement {
                warning: false,
                reason: "IncidentResolved".into(),
                message: format!("incident {} ({}) resolved", incident.id, incident.type_),
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
