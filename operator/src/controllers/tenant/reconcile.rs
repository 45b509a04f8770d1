//! The pipeline, read top to bottom: identity -> lifecycle gate -> desired (pure) -> preflight
//! (pure) -> TLS -> apply + sweep -> observe -> status (pure compute, then one write).

use super::Context;
use super::lifecycle::{self, Gate};
use super::preflight;
use super::purge::Purge;
use super::tls::TlsOutcome;
use crate::cluster::Note;
use crate::cluster::Writer;
use crate::cluster::applier::Applier;
use crate::config::Config;
use crate::desired::{self, Identity};
use crate::error::{Phase, Result};
use crate::status::{self, Outcome, Reconciled, TlsReport};
use crate::units::{shortest, until};
use enclave_crds::{Tenant, TenantStatus};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// One reconcile of one tenant: what every step shares.
pub(super) struct Reconcile<'a> {
    pub tenant: &'a Tenant,
    pub identity: Identity,
    pub ctx: &'a Context,
    /// The configuration this reconcile works from, whatever reloads happen meanwhile.
    pub config: &'a Config,
    /// Writes on behalf of this tenant; its Events go to the Tenant.
    pub writer: Writer<'a>,
    /// The retention window, from the spec (clamped to 30 days).
    pub retention: Duration,
    pub now: Timestamp,
    /// Set when an incident could not be notified: the tenant comes back soon to try again.
    pub notify_again: AtomicBool,
}

/// How soon a notification that failed is tried again.
const NOTIFY_AGAIN: Duration = Duration::from_secs(30);

/// Runs the pipeline for `tenant`.
pub(super) async fn run(tenant: &Tenant, ctx: &Context, config: &Config) -> Result<Action> {
    let identity = match Identity::of(tenant) {
        Ok(identity) => identity,
        Err(invalid) => {
            warn!(reason = invalid.reason, "{}", invalid.message);
            return Ok(Action::await_change());
        }
    };
    let step = Reconcile {
        tenant,
        identity,
        ctx,
        config,
        writer: ctx
            .gateway
            .writer(Phase::Apply, Some(tenant.object_ref(&()))),
        retention: tenant.spec.lifecycle.retention(),
        now: Timestamp::now(),
        notify_again: AtomicBool::new(false),
    };
    let previous = step.previous_status().await?;
    let deadline = match lifecycle::gate(tenant, previous.as_ref(), step.retention, step.now) {
        Gate::Released | Gate::Purged => return Ok(Action::await_change()),
        Gate::Deleted { purge_after } => return step.deleted(purge_after, previous).await,
        Gate::Purge { purge_after } => {
            return step.purge_decommissioned(purge_after, previous).await;
        }
        Gate::Run { deadline } => deadline,
    };
    step.ensure_finalizer().await?;
    let mut desired = match desired::desired(tenant, config) {
        Ok(desired) => desired,
        Err(invalid) => {
            let blocked = Outcome::Blocked {
                reason: invalid.reason,
                message: invalid.message,
            };
            step.conclude(&blocked, previous, None, None).await?;
            return Ok(Action::await_change());
        }
    };
    let names: Vec<String> = desired
        .namespaces
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let zones = step.namespaces(&names).await?;
    if let Some(outcome) = preflight::check(&step.identity, &zones) {
        let wait = match outcome {
            Outcome::Blocked { .. } => config.resync,
            _ => config.poll,
        };
        let names = matches!(outcome, Outcome::Progressing { .. }).then_some(names);
        step.conclude(&outcome, previous, None, names).await?;
        return Ok(Action::requeue(wait));
    }
    // The firewall on the tenant's Ingresses before any policy opens a zone to the ingress
    // controller; only in namespaces the preflight found to be the tenant's.
    step.keep_ingress_firewall().await?;
    let quotas = step.split_quota(&mut desired).await?;
    // The report of the status this reconcile starts from, kept like every object (the status
    // it writes is published with it, in `conclude`). None before the first status: the
    // first `conclude` publishes it, with the status it reaches.
    // From the status last written (the cached Tenant can lag behind it).
    if previous.as_ref().is_some_and(|s| s.phase.is_some()) {
        let mut reported = tenant.clone();
        reported.status.clone_from(&previous);
        desired.report = crate::report::config_maps(&reported, &step.identity);
    }
    // Certificates before the workloads that mount them.
    let tls = step.certificates().await?;
    step.with_certificates(&mut desired, &tls);
    step.revoke_removed(&names, &desired.role_bindings).await?;
    let cron_jobs = desired.backup.cron_jobs.clone();
    let (outcome, swept) = step
        .apply_and_sweep(desired, &names, deadline, (&zones, quotas))
        .await?;
    step.keep_alert_routing().await;
    if tenant.is_running() {
        step.run_requested_backup(&cron_jobs).await?;
    }
    let due = step
        .conclude(&outcome, previous, tls.report.as_ref(), Some(names))
        .await?;
    let swept = swept?;
    let next = [swept, tls.next, deadline.map(|d| until(step.now, d)), due]
        .into_iter()
        .flatten()
        .min();
    Ok(Action::requeue(shortest(next, config.resync)))
}

impl Reconcile<'_> {
    /// Adds the TLS step's objects to the desired set, and mounts the certificate into the
    /// workloads of the serving zones (they roll when its serial changes).
    fn with_certificates(&self, desired: &mut desired::Desired, tls: &TlsOutcome) {
        desired.tls.merge(tls.objects.clone());
        if let Some(serial) = &tls.serial {
            let namespaces: Vec<String> = desired::tls::serving_zones(self.tenant)
                .iter()
                .map(|z| self.tenant.zone_namespace(z))
                .collect();
            desired::workloads::mount_certificate(&mut desired.workloads, &namespaces, serial);
        }
    }

    /// Applies the whole desired set and sweeps the rest; every step runs even when one object
    /// is refused (the outcome then says which). A tenant that is not running keeps no other
    /// binding than its spec's. Returns the outcome, and the sweep's next deadline or the
    /// first failure (which brings the tenant back soon).
    async fn apply_and_sweep(
        &self,
        desired: desired::Desired,
        names: &[String],
        deadline: Option<Timestamp>,
        (zones, quotas): (&[(String, Option<Namespace>)], Vec<ResourceQuota>),
    ) -> Result<(Outcome, Result<Option<Duration>>)> {
        let keep_bindings = (!self.tenant.is_running()).then(|| desired.role_bindings.clone());
        let mut applier = Applier::new(
            &self.writer,
            self.ctx.client.clone(),
            &self.ctx.caches,
            &self.identity,
            &self.config.namespace,
            self.retention,
        );
        applier.known(&quotas);
        applier.known_namespaces(zones);
        applier.certificates_served(self.ctx.certificates_served.load(Ordering::Relaxed));
        let apply_result = applier.apply(desired).await;
        let sweep_result = applier.sweep().await;
        if let Some(keep) = keep_bindings {
            self.revoke_bindings(names, &keep).await?;
        }
        let outcome = match (&apply_result, &sweep_result) {
            (Err(error), _) | (Ok(()), Err(error)) => Outcome::Progressing {
                reason: status::reasons::APPLY_FAILED,
                message: error.to_string(),
            },
            _ => lifecycle::outcome(self.tenant, deadline),
        };
        Ok((outcome, apply_result.and(sweep_result)))
    }

    /// A deleted tenant: stopped and closed at once, everything kept until `purge_after`, then
    /// purged, the purge verified, and the Tenant released.
    async fn deleted(
        &self,
        purge_after: Timestamp,
        previous: Option<TenantStatus>,
    ) -> Result<Action> {
        let decommissioning = Outcome::Decommissioning { purge_after };
        let purged = previous.as_ref().is_some_and(|s| s.purged_at.is_some());
        if self.now < purge_after && !purged {
            self.stop(&self.owned_namespaces().await?).await?;
            self.conclude(&decommissioning, previous, None, None)
                .await?;
            info!(%purge_after, "tenant deleted: data retained until the deadline");
            return Ok(Action::requeue(
                until(self.now, purge_after).min(self.config.resync),
            ));
        }
        if let Purge::Remaining(what) = self.purge().await? {
            self.conclude(&decommissioning, previous, None, None)
                .await?;
            info!(remaining = %what, "purge in progress");
            return Ok(Action::requeue(self.config.poll));
        }
        self.release().await?;
        self.ctx.metrics.forget_tenant(&self.identity.name);
        info!("tenant purged and verified: finalizer removed");
        Ok(Action::await_change())
    }

    /// A decommissioned tenant past its deadline: purged, then `Purged`.
    async fn purge_decommissioned(
        &self,
        purge_after: Timestamp,
        previous: Option<TenantStatus>,
    ) -> Result<Action> {
        match self.purge().await? {
            Purge::Remaining(_) => {
                self.conclude(
                    &Outcome::Decommissioning { purge_after },
                    previous,
                    None,
                    None,
                )
                .await?;
                Ok(Action::requeue(self.config.poll))
            }
            Purge::Done => {
                self.conclude(&Outcome::Purged, previous, None, None)
                    .await?;
                Ok(Action::await_change())
            }
        }
    }

    /// Observe, compute the status (pure), write it when it differs from what the API server
    /// holds, and announce the conditions that changed and the incidents. Returns how soon the
    /// tenant must be looked at again for its incidents (a grace ending, a notification to try
    /// again). `namespaces` overrides the observed
    /// list with the zones the spec asks for.
    async fn conclude(
        &self,
        outcome: &Outcome,
        previous: Option<TenantStatus>,
        certificate: Option<&TlsReport>,
        namespaces: Option<Vec<String>>,
    ) -> Result<Option<Duration>> {
        let network = matches!(outcome, Outcome::Ready | Outcome::Suspended)
            || matches!(outcome, Outcome::Decommissioning { .. })
                && self.tenant.metadata.deletion_timestamp.is_none();
        // Published with a status that follows a whole apply (the apply step keeps it).
        let reported = namespaces.is_some() && matches!(outcome, Outcome::Ready);
        let mut snapshot = self.snapshot(previous, network).await?;
        if let Some(namespaces) = namespaces {
            snapshot.namespaces = namespaces;
        }
        let reconciled = Reconciled {
            outcome,
            certificate,
            retention: self.retention,
            incident_grace: self.config.notifications.incident_grace(),
        };
        let now = Timestamp::now();
        let mut status = status::compute(self.tenant, &reconciled, &snapshot, now);
        let previous = snapshot.previous.as_ref();
        let before = previous.map(|p| p.incidents.as_slice()).unwrap_or_default();
        self.announce(before, &mut status).await;
        self.ctx.metrics.tenant_state(&self.identity.name, &status);
        if previous != Some(&status) {
            let written = self
                .writer
                .during(Phase::Status)
                .write_status::<Tenant, _>(&self.identity.name, &status)
                .await?;
            self.remember_status(written, &status);
            for event in status::announcements(previous, &status, outcome) {
                let note = if event.warning {
                    Note::warning(&event.reason, "Reconcile", event.message)
                } else {
                    Note::normal(&event.reason, "Reconcile", event.message)
                };
                self.writer.publish(note).await;
            }
            if reported {
                self.publish_report(&status).await;
            }
        }
        // After the status and its Events: a register that cannot be written holds up no
        // announcement, and is tried again.
        self.keep_register(before, &status.incidents).await;
        let notify = self
            .notify_again
            .load(Ordering::Relaxed)
            .then_some(NOTIFY_AGAIN);
        let grace = self.config.notifications.incident_grace();
        Ok([status::incidents::next_due(&status, now, grace), notify]
            .into_iter()
            .flatten()
            .min())
    }
}
