//! Incidents (R14: incidents reported within 24 hours, and a register): each degraded promise
//! opens one when it is seen, is announced at once (a Warning Event, the
//! `enclave_tenant_incident_open` series), and is resolved when it recovers. Pure.

use super::{
    BACKUP_HEALTHY, CERTIFICATE_READY, ISOLATED, READY, STORAGE_REPLICATED, TenantStatus, Time,
    Timestamp, WORKLOADS_REDUNDANT, seconds,
};
use enclave_crds::{Incident, Phase, Tenant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::time::Duration;

/// How many incidents the status keeps, newest first.
pub const KEPT_IN_STATUS: usize = 20;
/// How long `Ready` may stay false (a tenant being set up, a short outage) before it is an
/// incident.
pub const NOT_READY_GRACE: Duration = Duration::from_secs(600);
/// How long a workload may run short, a volume wait for its binding or a certificate for its
/// issuer (a tenant being set up, a pod replaced, a rollout) before it is an incident, by
/// default (`notifications.incidentGrace`); a
/// member who deletes pods over and over opens none. Broken isolation and failing backups
/// (already overdue) have none.
pub const DEGRADED_GRACE: Duration = Duration::from_secs(180);
/// How long past its deadline a purge may run before it is an incident.
pub const PURGE_GRACE: Duration = Duration::from_secs(3600);

/// What is degraded in `status` now: `(type, severity, summary)`.
#[must_use]
pub fn degraded(
    status: &TenantStatus,
    now: Timestamp,
    grace: Duration,
) -> Vec<(&'static str, &'static str, String)> {
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let mut found = Vec::new();
    let running = matches!(
        status.phase,
        Some(Phase::Ready | Phase::Degraded | Phase::Pending | Phase::Blocked)
    );
    if running
        && let Some(ready) = condition(READY).filter(|c| c.status == "False")
        && now
            .duration_since(ready.last_transition_time.0)
            .as_secs_f64()
            >= NOT_READY_GRACE.as_secs_f64()
    {
        found.push((
            "NotReady",
            "critical",
            format!("{}: {}", ready.reason, ready.message),
        ));
    }
    let past = |c: &&Condition, grace: std::time::Duration| {
        c.status == "False"
            && now.duration_since(c.last_transition_time.0).as_secs_f64() >= grace.as_secs_f64()
    };
    for (type_, incident, severity, wait) in [
        (BACKUP_HEALTHY, "BackupFailing", "critical", Duration::ZERO),
        (CERTIFICATE_READY, "CertificateNotReady", "critical", grace),
        (ISOLATED, "IsolationBroken", "critical", Duration::ZERO),
        (STORAGE_REPLICATED, "StorageNotReplicated", "warning", grace),
    ] {
        if let Some(c) = condition(type_).filter(|c| past(c, wait)) {
            found.push((incident, severity, format!("{}: {}", c.reason, c.message)));
        }
    }
    if let Some(c) = condition(WORKLOADS_REDUNDANT).filter(|c| past(c, grace)) {
        let (incident, severity) = if c.reason == "Unavailable" {
            ("WorkloadsUnavailable", "critical")
        } else {
            ("RedundancyLost", "warning")
        };
        found.push((incident, severity, format!("{}: {}", c.reason, c.message)));
    }
    if let Some(purge_after) = &status.purge_after
        && status.purged_at.is_none()
        && now.duration_since(purge_after.0).as_secs_f64() >= PURGE_GRACE.as_secs_f64()
    {
        found.push((
            "PurgeOverdue",
            "critical",
            format!("the purge due at {} is not done", purge_after.0),
        ));
    }
    found
}

/// How soon a degraded promise outlives its grace and opens an incident, so the tenant is
/// looked at again then rather than at the next resync.
#[must_use]
pub fn next_due(status: &TenantStatus, now: Timestamp, grace: Duration) -> Option<Duration> {
    let left = |since: Timestamp, grace: Duration| {
        let elapsed = now.duration_since(since).as_secs_f64().max(0.0);
        (elapsed < grace.as_secs_f64())
            .then(|| Duration::from_secs_f64(grace.as_secs_f64() - elapsed))
    };
    let mut due: Vec<Duration> = status
        .conditions
        .iter()
        .filter(|c| c.status == "False")
        .filter_map(|c| {
            let grace = match c.type_.as_str() {
                READY => NOT_READY_GRACE,
                CERTIFICATE_READY | STORAGE_REPLICATED | WORKLOADS_REDUNDANT => grace,
                _ => return None,
            };
            left(c.last_transition_time.0, grace)
        })
        .collect();
    if let Some(purge_after) = &status.purge_after
        && status.purged_at.is_none()
    {
        due.extend(left(purge_after.0, PURGE_GRACE));
    }
    due.into_iter().min()
}

/// The incidents after this reconcile: `previous` ones kept, a new one opened for each
/// degraded promise without an open incident, open ones resolved when their promise holds
/// again; at most [`KEPT_IN_STATUS`], newest first.
#[must_use]
pub fn track(
    tenant: &Tenant,
    previous: &[Incident],
    status: &TenantStatus,
    now: Timestamp,
    grace: Duration,
) -> Vec<Incident> {
    let now = seconds(now);
    let contacts = crate::desired::incidents::contacts(tenant);
    let seen = degraded(status, now, grace);
    let mut incidents: Vec<Incident> = previous.to_vec();
    for incident in incidents.iter_mut().filter(|i| i.resolved_at.is_none()) {
        if !seen.iter().any(|(type_, ..)| *type_ == incident.type_) {
            incident.resolved_at = Some(Time(now));
        }
    }
    for (type_, severity, summary) in seen {
        let open = incidents
            .iter()
            .any(|i| i.type_ == type_ && i.resolved_at.is_none());
        if !open {
            incidents.push(Incident {
                id: format!("{type_}-{}", now.as_second()),
                type_: type_.to_string(),
                severity: severity.to_string(),
                opened_at: Time(now),
                // Set once announced: see `unannounced`.
                notified_at: None,
                resolved_at: None,
                summary: summary.chars().take(512).collect(),
                contacts: contacts.clone(),
            });
        }
    }
    incidents.sort_by(|a, b| {
        b.opened_at
            .0
            .cmp(&a.opened_at.0)
            .then_with(|| a.id.cmp(&b.id))
    });
    incidents.truncate(KEPT_IN_STATUS);
    incidents
}

/// The incidents not announced yet, open or already resolved: by the Event and the metric of
/// the reconcile that opens them, or, when the operator has a webhook, once its receiver
/// accepts them (a resolved one is sent resolved: it still happened).
pub fn unannounced(incidents: &mut [Incident]) -> impl Iterator<Item = &mut Incident> {
    incidents.iter_mut().filter(|i| i.notified_at.is_none())
}

/// The incidents `next` shows resolved that `previous` showed open and notified: their
/// recovery is announced once.
#[must_use]
pub fn resolved_now<'a>(previous: &[Incident], next: &'a [Incident]) -> Vec<&'a Incident> {
    next.iter()
        .filter(|i| {
            i.resolved_at.is_some()
                && i.notified_at.is_some()
                && previous
                    .iter()
                    .any(|p| p.id == i.id && p.resolved_at.is_none())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_764_633_600 + s).expect("time")
    }

    fn status(phase: Phase, conditions: &[(&str, &str, &str, i64)]) -> TenantStatus {
        TenantStatus {
            phase: Some(phase),
            conditions: conditions
                .iter()
                .map(|(type_, status, reason, since)| Condition {
                    type_: (*type_).into(),
                    status: (*status).into(),
                    reason: (*reason).into(),
                    message: "m".into(),
                    last_transition_time: Time(at(*since)),
                    observed_generation: None,
                })
                .collect(),
            ..TenantStatus::default()
        }
    }

    fn tenant() -> Tenant {
        serde_json::from_value(serde_json::json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"}, "spec": {"contacts": [
                {"email": "sec@acme.example"}, {"email": "bill@acme.example", "role": "Billing"}]}}))
        .expect("tenant")
    }

    #[test]
    fn an_incident_opens_once_names_its_contacts_and_resolves_on_recovery() {
        let t = tenant();
        let failing = status(
            Phase::Degraded,
            &[
                (READY, "True", "Reconciled", 0),
                (BACKUP_HEALTHY, "False", "BackupOverdue", 0),
            ],
        );
        let opened = track(&t, &[], &failing, at(10), DEGRADED_GRACE);
        assert_eq!(opened.len(), 1);
        let incident = &opened[0];
        assert_eq!(
            (incident.type_.as_str(), incident.severity.as_str()),
            ("BackupFailing", "critical")
        );
        assert_eq!(
            incident.contacts,
            ["sec@acme.example"],
            "not the billing contact"
        );
        assert_eq!(
            incident.notified_at, None,
            "announced by the reconcile, not here"
        );
        let mut opened = opened;
        for incident in unannounced(&mut opened) {
            incident.notified_at = Some(Time(at(10)));
        }
        assert_eq!(unannounced(&mut opened).count(), 0);
        // Still failing: the same incident, not another.
        assert_eq!(track(&t, &opened, &failing, at(20), DEGRADED_GRACE), opened);
        // Recovered: resolved, kept in the register.
        let healthy = status(
            Phase::Ready,
            &[
                (READY, "True", "Reconciled", 0),
                (BACKUP_HEALTHY, "True", "BackupSucceeded", 30),
            ],
        );
        let resolved = track(&t, &opened, &healthy, at(30), DEGRADED_GRACE);
        assert_eq!(resolved[0].resolved_at, Some(Time(at(30))));
        assert_eq!(resolved_now(&opened, &resolved), [&resolved[0]]);
        assert!(
            resolved_now(&resolved, &resolved).is_empty(),
            "announced once"
        );
        // Failing again: a new incident, newest first.
        let again = track(&t, &resolved, &failing, at(40), DEGRADED_GRACE);
        assert_eq!(again.len(), 2);
        assert!(again[0].resolved_at.is_none() && again[0].opened_at == Time(at(40)));
    }

    #[test]
    fn not_ready_counts_only_after_the_grace_and_only_while_running() {
        let t = tenant();
        let pending = status(
            Phase::Pending,
            &[(READY, "False", "NamespaceTerminating", 0)],
        );
        assert!(track(&t, &[], &pending, at(60), DEGRADED_GRACE).is_empty());
        let grace = i64::try_from(NOT_READY_GRACE.as_secs()).expect("secs");
        assert_eq!(
            track(&t, &[], &pending, at(grace), DEGRADED_GRACE)[0].type_,
            "NotReady"
        );
        let suspended = status(Phase::Suspended, &[(READY, "False", "Suspended", 0)]);
        assert!(track(&t, &[], &suspended, at(grace * 10), DEGRADED_GRACE).is_empty());
    }

    #[test]
    fn the_status_keeps_the_newest_twenty() {
        let t = tenant();
        let mut incidents = Vec::new();
        for i in 0..30 {
            let failing = status(
                Phase::Degraded,
                &[(ISOLATED, "False", "UnexpectedExposure", 0)],
            );
            let healthy = status(
                Phase::Ready,
                &[(ISOLATED, "True", "ExposureMatchesSpec", 0)],
            );
            incidents = track(&t, &incidents, &failing, at(i * 10), DEGRADED_GRACE);
            incidents = track(&t, &incidents, &healthy, at(i * 10 + 5), DEGRADED_GRACE);
        }
        assert_eq!(incidents.len(), KEPT_IN_STATUS);
        assert_eq!(incidents[0].opened_at, Time(at(290)));
    }
}
