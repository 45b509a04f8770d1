//! A backup run now, on request: the platform team (or `kubectl enclave backup`) sets the
//! Tenant's annotation `enclave.dev/backup-now` to the time of the request, and the operator
//! starts one Job per backup CronJob from its template. Made by the operator, the Jobs keep
//! the backup identity nobody else may use (the guard); a request is acted on for a day, once.
//! Pure.

use enclave_crds::Tenant;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The Tenant annotation asking for a backup now: an RFC 3339 time, such as
/// `2026-12-02T10:00:00Z`.
pub const ANNOTATION: &str = "enclave.dev/backup-now";
/// How long a request stands: a Tenant annotated long ago starts nothing new.
pub const FRESH: std::time::Duration = std::time::Duration::from_secs(86_400);
/// How long a finished Job of a request is kept (its outcome is in `status.backup` by then).
pub const KEPT: i32 = 7 * 86_400;

/// The time of the tenant's standing request, if fresh at `now` (at most [`FRESH`] old, and
/// not in the future beyond a minute of clock skew).
#[must_use]
pub fn requested(tenant: &Tenant, now: Timestamp) -> Option<Timestamp> {
    let at: Timestamp = tenant
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION)?
        .parse()
        .ok()?;
    let age = now.as_second() - at.as_second();
    (age >= -60 && age <= i64::try_from(FRESH.as_secs()).unwrap_or(i64::MAX)).then_some(at)
}

/// The name of the Job a request starts in each backup zone.
#[must_use]
pub fn job_name(at: Timestamp) -> String {
    format!("{}-now-{}", super::NAME, at.as_second())
}

/// The Jobs the request `at` starts: one per live backup CronJob, from its Job template, and
/// controlled by it as its scheduled runs are (so the run counts in `status.backup`, and goes
/// with the CronJob).
#[must_use]
pub fn jobs(cron_jobs: &[CronJob], at: Timestamp) -> Vec<Job> {
    cron_jobs
        .iter()
        .filter_map(|cron| {
            let template = cron.spec.as_ref()?.job_template.clone();
            let spec = template.spec?;
            let owner = OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cron.metadata.name.clone()?,
                uid: cron.metadata.uid.clone()?,
                controller: Some(true),
                block_owner_deletion: Some(true),
            };
            Some(Job {
                metadata: ObjectMeta {
                    name: Some(job_name(at)),
                    namespace: cron.metadata.namespace.clone(),
                    labels: template.metadata.and_then(|m| m.labels),
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                spec: Some(JobSpec {
                    ttl_seconds_after_finished: Some(KEPT),
                    ..spec
                }),
                ..Job::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_764_633_600 + s).expect("time")
    }

    #[test]
    fn a_request_stands_for_a_day_and_starts_one_job_per_cron_job() {
        let mut t = tenant("acme");
        assert_eq!(requested(&t, at(0)), None);
        t.metadata.annotations = Some([(ANNOTATION.to_string(), at(0).to_string())].into());
        assert_eq!(requested(&t, at(10)), Some(at(0)));
        assert_eq!(requested(&t, at(86_401)), None, "stale");
        assert_eq!(requested(&t, at(-120)), None, "from the future");
        t.metadata.annotations = Some([(ANNOTATION.to_string(), "soon".to_string())].into());
        assert_eq!(requested(&t, at(0)), None, "not a time");

        let cron: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "enclave-backup", "namespace": "acme-data", "uid": "cron-uid"},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {
                "metadata": {"labels": {"enclave.dev/backup": "true"}},
                "spec": {"backoffLimit": 1, "template": {"spec": {"containers": []}}}}}
        }))
        .expect("cron");
        let jobs = jobs(&[cron], at(0));
        assert_eq!(jobs.len(), 1);
        let job = &jobs[0];
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("enclave-backup-now-1764633600")
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("acme-data"));
        assert_eq!(
            job.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("enclave.dev/backup"))
                .map(String::as_str),
            Some("true")
        );
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cron-uid", Some(true))
        );
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(
            (spec.backoff_limit, spec.ttl_seconds_after_finished),
            (Some(1), Some(KEPT))
        );
    }
}
