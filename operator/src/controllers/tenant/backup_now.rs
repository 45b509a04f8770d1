//! A backup run on request (`enclave.dev/backup-now` on the Tenant), started by the operator.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::desired::backup::now;
use crate::error::{Phase, Result, api};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::Api;

impl Reconcile<'_> {
    /// Starts the backup the Tenant's `enclave.dev/backup-now` asks for, one Job per backup
    /// CronJob (as applied, read back for its uid), unless it was started already. Nothing to
    /// read while no request is fresh.
    pub(super) async fn run_requested_backup(&self, cron_jobs: &[CronJob]) -> Result<()> {
        let Some(at) = now::requested(self.tenant, self.now) else {
            return Ok(());
        };
        let mut live = Vec::new();
        for cron in cron_jobs {
            let (namespace, name) = (cron.namespace().unwrap_or_default(), cron.name_any());
            live.extend(
                Api::<CronJob>::namespaced(self.ctx.client.clone(), &namespace)
                    .get_opt(&name)
                    .await
                    .map_err(api(Phase::Apply, "get", "CronJob", &name))?,
            );
        }
        for job in now::jobs(&live, at) {
            let namespace = job.namespace().unwrap_or_default();
            let name = job.name_any();
            let started = Api::<Job>::namespaced(self.ctx.client.clone(), &namespace)
                .get_metadata_opt(&name)
                .await
                .map_err(api(Phase::Apply, "get", "Job", &name))?;
            if started.is_none() {
                let note = Note::normal(
                    "BackupRequested",
                    "Backup",
                    format!("started backup Job {namespace}/{name}, asked for at {at}"),
                );
                self.writer.create_absent(&job, note).await?;
            }
        }
        Ok(())
    }
}
