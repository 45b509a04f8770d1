//! `BackupHealthy` and `status.backup`: the backup Jobs against the schedule (R10).

use super::{TenantStatus, Time, Timestamp, degrading_condition};
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
