//! The Tenant controller: `validate -> build -> apply -> sweep -> status`, and the finalizer that
//! keeps a deleted tenant's data until its retention deadline.

use crate::apply::{Change, Sweep, apply, plan_sweep};
use crate::build::{self, FINALIZER, Identity, labels};
use crate::config::Config;
use crate::exposure::{self, ZoneNamespace};
use crate::status::{NetworkReport, Observed, Outcome, READY, tenant_status};
use crate::telemetry::{Health, Metrics};
use crate::{Error, Result};
use enclave_crds::{LifecycleState, MAX_RETENTION_SECONDS, Tenant, TenantStatus, duration};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, ObjectReference, PersistentVolume, PersistentVolumeClaim, ResourceQuota,
    Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{info, instrument, warn};

mod tls;

/// What every reconcile shares, built once.
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// Publishes an Event for every change the operator makes.
    pub recorder: Recorder,
    /// The operator's configuration, as last loaded: a change re-reconciles every tenant.
    pub config: tokio::sync::watch::Receiver<Config>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

/// Runs the Tenant controller until `shutdown` resolves.
///
/// # Errors
/// Never at present: failures of single reconciles are logged, counted and retried.
pub async fn run(
    client: Client,
    configs: tokio::sync::watch::Receiver<Config>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let config = configs.borrow().clone();
    // Restores and exports run beside the Tenant controller, stopped by the same signal.
    let shutdown = futures::FutureExt::shared(shutdown);
    let requests = tokio::spawn(crate::requests::run(
        client.clone(),
        configs.clone(),
        shutdown.clone(),
    ));
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: std::env::var("POD_NAME").ok(),
    };
    // The tenant roles are shared by every tenant: kept once per start, before any binding.
    let roles = Api::<ClusterRole>::all(client.clone());
    for role in build::access::cluster_roles() {
        let live = roles.get_opt(&role.name_any()).await?;
        if apply(&roles, &role, live.as_ref()).await? != Change::Unchanged {
            info!(role = %role.name_any(), "tenant role applied");
        }
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        config: configs.clone(),
        metrics: health.metrics.clone(),
    });
    // A new configuration (a default image bumped, say) is rolled out to every tenant.
    let reloads = futures::stream::unfold(configs, |mut configs| async move {
        configs.changed().await.ok()?;
        info!("configuration changed: reconciling every tenant");
        Some(((), configs))
    });
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
    let controller = Controller::new(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default(),
    );
    let tenants = controller.store();
    let controller = controller
        // Only the namespaces the operator manages are watched, never every namespace; they
        // carry no owner reference (see build::namespaces), so they are mapped by label.
        .watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            by_tenant_label,
        )
        // Every NetworkPolicy, Enclave's or not: any of them changes what a zone exposes, and
        // the exposure report must follow every network change.
        .watches(
            Api::<NetworkPolicy>::all(client.clone()),
            watcher::Config::default(),
            move |policy| {
                let namespace = policy.namespace()?;
                tenants
                    .state()
                    .iter()
                    .find(|t| {
                        t.spec
                            .zones
                            .iter()
                            .any(|z| t.zone_namespace(&z.name) == namespace)
                    })
                    .map(|t| ObjectRef::from_obj(&**t))
            },
        )
        .watches(
            Api::<RoleBinding>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .watches(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .watches(
            Api::<LimitRange>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .watches(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .watches(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        // Claims carry no owner reference (data is never left to the garbage collector): they
        // are mapped to their tenant by label.
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            by_tenant_label,
        )
        // Certificates and their ConfigMaps (the CA's Secret lives in the operator's namespace,
        // without owner): mapped by label, so an edited or deleted one is re-issued at once.
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            by_tenant_label,
        )
        .watches(
            Api::<k8s_openapi::api::core::v1::ConfigMap>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            by_tenant_label,
        )
        .watches(
            Api::<k8s_openapi::api::batch::v1::CronJob>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        // Backup Jobs (owned by their CronJob) carry the tenant's labels: their outcome is
        // the tenant's backup status.
        .watches(
            Api::<k8s_openapi::api::batch::v1::Job>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            by_tenant_label,
        )
        .watches(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .watches(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(&managed),
            owning_tenant,
        )
        .reconcile_all_on(reloads)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let ready = health.ready.clone();
    tokio::spawn(async move {
        // The store wakes only one of several waiters (the controller is another), so look
        // again now and then rather than wait for a wake-up that may never come.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    ready.store(true, Ordering::Relaxed);
                    info!("tenant cache synced");
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                // One bad Tenant is logged and retried; the others go on.
                warn!(%error, "reconcile failed");
            }
        })
        .await;
    let _ = requests.await;
    info!("controller stopped");
    Ok(())
}

/// Backs off a failed tenant; others are not held up.
#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime's Controller::run asks for
fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error);
    warn!(tenant = %tenant.name_any(), %error, kind = error.metric_label(), "reconcile error, retrying");
    // A conflict means our view was stale: retry at once rather than back off.
    if error.metric_label() == "conflict" {
        Action::requeue(Duration::from_millis(200))
    } else {
        Action::requeue(Duration::from_secs(5))
    }
}

#[instrument(skip(tenant, ctx), fields(tenant = %tenant.name_any()))]
async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let config = ctx.config.borrow().clone();
    let result = Reconcile {
        tenant: &tenant,
        ctx: &ctx,
        config: &config,
    }
    .run()
    .await;
    ctx.metrics.observe(started.elapsed());
    result
}

/// One reconcile of one tenant.
struct Reconcile<'a> {
    tenant: &'a Tenant,
    ctx: &'a Context,
    /// The configuration this reconcile works from, whatever reloads happen meanwhile.
    config: &'a Config,
}

impl Reconcile<'_> {
    async fn run(&self) -> Result<Action> {
        let identity = match Identity::of(self.tenant) {
            Ok(identity) => identity,
            Err(invalid) => {
                warn!(reason = invalid.reason, "{}", invalid.message);
                return Ok(Action::await_change());
            }
        };
        if self.tenant.metadata.deletion_timestamp.is_some() {
            return self.decommission(&identity).await;
        }
        self.ensure_finalizer().await?;
        // A decommissioned tenant: stopped until its deadline, then purged.
        let mut deadline = None;
        if self.tenant.spec.lifecycle.state == LifecycleState::Decommissioned {
            let live = Api::<Tenant>::all(self.ctx.client.clone())
                .get_status(&identity.name)
                .await?;
            let status = live.status.unwrap_or_default();
            let since = status
                .decommissioned_at
                .map_or_else(|| crate::status::seconds(Timestamp::now()), |t| t.0);
            let purge_after = since.checked_add(self.retention()).unwrap_or(since);
            if status.purged_at.is_some() {
                return Ok(Action::await_change());
            }
            if Timestamp::now() >= purge_after {
                return match self.purge(&identity).await? {
                    Purge::Remaining(_) => {
                        let namespaces = self.owned_namespaces(&identity).await?;
                        self.update_status(
                            &Outcome::Decommissioning { purge_after },
                            namespaces,
                            None,
                            None,
                        )
                        .await?;
                        Ok(Action::requeue(self.config.poll))
                    }
                    Purge::Done => {
                        self.update_status(&Outcome::Purged, vec![], None, None)
                            .await?;
                        Ok(Action::await_change())
                    }
                };
            }
            deadline = Some(purge_after);
        }

        // validate + build: pure.
        let mut desired = match build::desired(self.tenant, self.config) {
            Ok(desired) => desired,
            Err(invalid) => {
                let outcome = Outcome::Blocked {
                    reason: invalid.reason,
                    message: invalid.message,
                };
                self.update_status(&outcome, vec![], None, None).await?;
                return Ok(Action::await_change());
            }
        };
        let names: Vec<String> = desired
            .namespaces
            .iter()
            .map(ResourceExt::name_any)
            .collect();

        // Look before touching anything: a tenant is applied whole or not at all.
        let api = Api::<Namespace>::all(self.ctx.client.clone());
        let mut live = Vec::with_capacity(names.len());
        for name in &names {
            live.push(api.get_opt(name).await?);
        }
        let foreign: Vec<&str> = names
            .iter()
            .zip(&live)
            .filter(|(_, ns)| {
                ns.as_ref()
                    .is_some_and(|ns| ns.labels().get(labels::TENANT_UID) != Some(&identity.uid))
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !foreign.is_empty() {
            let outcome = Outcome::Blocked {
                reason: "NamespaceConflict",
                message: format!(
                    "namespace(s) {} already exist and do not belong to this tenant; Enclave never takes over a namespace",
                    foreign.join(", ")
                ),
            };
            self.update_status(&outcome, vec![], None, None).await?;
            return Ok(Action::requeue(self.config.resync));
        }
        let terminating: Vec<&str> = names
            .iter()
            .zip(&live)
            .filter(|(_, ns)| {
                ns.as_ref()
                    .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !terminating.is_empty() {
            let outcome = Outcome::Progressing {
                reason: "NamespaceTerminating",
                message: format!(
                    "waiting for namespace(s) {} to finish terminating, to recreate them",
                    terminating.join(", ")
                ),
            };
            self.update_status(&outcome, names, None, None).await?;
            return Ok(Action::requeue(self.config.poll));
        }

        // apply
        for (namespace, live) in desired.namespaces.iter().zip(&live) {
            if live
                .as_ref()
                .and_then(|ns| crate::apply::purge_after(&ns.metadata))
                .is_some()
            {
                self.unmark(&api, &namespace.name_any()).await?;
            }
            let change = apply(&api, namespace, live.as_ref()).await?;
            self.record_change(change, "Namespace", &namespace.name_any())
                .await;
        }

        // Isolation first: a zone's default-deny stands before anything else runs in it.
        self.apply_namespaced(&desired.network_policies).await?;
        self.apply_namespaced(&desired.resource_quotas).await?;
        self.apply_namespaced(&desired.limit_ranges).await?;
        self.apply_namespaced(&desired.role_bindings).await?;
        self.apply_storage(&desired.storage).await?;
        // Certificates before the workloads that mount them.
        let certificate = self.certificates(&identity).await?;
        if let Some(serial) = &certificate.serial {
            let namespaces: Vec<String> = crate::tls::objects::serving_zones(self.tenant)
                .iter()
                .map(|z| self.tenant.zone_namespace(z))
                .collect();
            build::workloads::mount_certificate(&mut desired.workloads, &namespaces, serial);
        }
        self.apply_namespaced(&desired.workloads.services).await?;
        self.apply_namespaced(&desired.workloads.disruption_budgets)
            .await?;
        self.apply_namespaced(&desired.workloads.deployments)
            .await?;
        self.apply_stateful_sets(&desired.workloads.stateful_sets)
            .await?;
        // Backups: the password first (created once), then what the CronJobs need, then them.
        if let Some(password) = &desired.backup.password {
            self.ensure_key(password).await?;
        }
        self.apply_namespaced(&desired.backup.service_accounts)
            .await?;
        self.apply_namespaced(&desired.backup.operator_ca).await?;
        self.apply_namespaced(&desired.backup.cron_jobs).await?;

        // sweep
        self.sweep_namespaced(&identity, &desired.network_policies)
            .await?;
        self.sweep_namespaced(&identity, &desired.resource_quotas)
            .await?;
        self.sweep_namespaced(&identity, &desired.limit_ranges)
            .await?;
        self.sweep_namespaced(&identity, &desired.role_bindings)
            .await?;
        self.sweep_namespaced(&identity, &desired.workloads.deployments)
            .await?;
        self.sweep_namespaced(&identity, &desired.workloads.stateful_sets)
            .await?;
        self.sweep_namespaced(&identity, &desired.backup.cron_jobs)
            .await?;
        self.sweep_namespaced(&identity, &desired.backup.service_accounts)
            .await?;
        self.sweep_namespaced(&identity, &desired.workloads.disruption_budgets)
            .await?;
        self.sweep_namespaced(&identity, &desired.workloads.services)
            .await?;
        let claims_next = self
            .sweep_claims(&identity, &desired.storage.claims)
            .await?;
        let wanted: BTreeSet<String> = names.iter().cloned().collect();
        let next = self.sweep(&api, &identity, &wanted).await?;
        let next = [next, claims_next, certificate.next]
            .into_iter()
            .flatten()
            .min();

        let report = self.network_report(&identity).await?;
        let outcome = match (self.tenant.spec.lifecycle.state, deadline) {
            (LifecycleState::Decommissioned, Some(purge_after)) => {
                Outcome::Decommissioning { purge_after }
            }
            (LifecycleState::Suspended, _) => Outcome::Suspended,
            _ => Outcome::Ready,
        };
        self.update_status(&outcome, names, Some(&report), certificate.report.as_ref())
            .await?;
        let next = match deadline {
            Some(purge_after) => Some(shortest(next, until(Timestamp::now(), purge_after))),
            None => next,
        };
        Ok(Action::requeue(
            next.map_or(self.config.resync, |d| d.min(self.config.resync)),
        ))
    }

    /// Storage classes (shared, cluster-wide), key Secrets (created once, never rewritten) and
    /// claims (grown when the spec grows; a retained claim wanted again loses its mark).
    async fn apply_storage(&self, storage: &build::storage::StorageObjects) -> Result<()> {
        let classes = Api::<StorageClass>::all(self.ctx.client.clone());
        for class in &storage.storage_classes {
            let live = classes.get_opt(&class.name_any()).await?;
            let change = apply(&classes, class, live.as_ref()).await?;
            self.record_change(change, "StorageClass", &class.name_any())
                .await;
        }
        for key in &storage.keys {
            self.ensure_key(key).await?;
        }
        for claim in &storage.claims {
            let namespace = claim.namespace().unwrap_or_default();
            let api = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), &namespace);
            let live = api.get_opt(&claim.name_any()).await?;
            if live
                .as_ref()
                .and_then(|c| crate::apply::purge_after(&c.metadata))
                .is_some()
            {
                let patch = json!({"metadata": {
                    "labels": {build::storage::RETAINED: null},
                    "annotations": {labels::PURGE_AFTER: null}}});
                api.patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                self.ctx.metrics.write("PersistentVolumeClaim", "update");
                self.publish(
                    EventType::Normal,
                    "Restored",
                    "Update",
                    format!(
                        "volume claim {namespace}/{} is wanted again: retention mark removed",
                        claim.name_any()
                    ),
                )
                .await;
            }
            // Kubernetes grows only a bound claim: an unbound one keeps its size until bound,
            // and its binding (watched) brings the growth.
            let mut claim = claim.clone();
            if let (Some(live), Some(spec)) = (&live, claim.spec.as_mut())
                && live.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
            {
                spec.resources = live.spec.as_ref().and_then(|s| s.resources.clone());
            }
            let change = apply(&api, &claim, live.as_ref()).await?;
            self.record_change(
                change,
                "PersistentVolumeClaim",
                &format!("{namespace}/{}", claim.name_any()),
            )
            .await;
        }
        Ok(())
    }

    /// Creates a key Secret with fresh random keys, unless it exists: a key is never rewritten,
    /// or the data it encrypts would be lost.
    async fn ensure_key(&self, key: &build::storage::KeySecret) -> Result<()> {
        let namespace = key.secret.namespace().unwrap_or_default();
        if !create_once(&self.ctx.client, key).await? {
            return Ok(());
        }
        self.ctx.metrics.write("Secret", "create");
        // The Event names the Secret, never its content.
        self.record_change(
            Change::Created,
            "Secret",
            &format!("{namespace}/{}", key.secret.name_any()),
        )
        .await;
        Ok(())
    }

    /// Applies StatefulSets. Their claim templates cannot change once created, and need not:
    /// the claims exist before the StatefulSet and grow on their own, so the live templates are
    /// kept.
    async fn apply_stateful_sets(&self, desired: &[StatefulSet]) -> Result<()> {
        for set in desired {
            let namespace = set.namespace().unwrap_or_default();
            let api = Api::<StatefulSet>::namespaced(self.ctx.client.clone(), &namespace);
            let live = api.get_opt(&set.name_any()).await?;
            let mut set = set.clone();
            if let (Some(spec), Some(live_spec)) = (
                set.spec.as_mut(),
                live.as_ref().and_then(|l| l.spec.as_ref()),
            ) {
                spec.volume_claim_templates =
                    live_spec.volume_claim_templates.clone().map(|templates| {
                        templates
                            .into_iter()
                            .map(|t| PersistentVolumeClaim {
                                metadata: ObjectMeta {
                                    name: t.metadata.name,
                                    labels: t.metadata.labels,
                                    ..ObjectMeta::default()
                                },
                                spec: t.spec,
                                ..PersistentVolumeClaim::default()
                            })
                            .collect()
                    });
            }
            let change = apply(&api, &set, live.as_ref()).await?;
            self.record_change(
                change,
                "StatefulSet",
                &format!("{namespace}/{}", set.name_any()),
            )
            .await;
        }
        Ok(())
    }

    /// Marks, keeps or purges the claims the spec no longer wants, like zone namespaces: a
    /// volume's data outlives its removal from the spec by the retention window. Returns how
    /// soon the next deadline falls.
    async fn sweep_claims(
        &self,
        identity: &Identity,
        desired: &[PersistentVolumeClaim],
    ) -> Result<Option<Duration>> {
        let owned = Api::<PersistentVolumeClaim>::all(self.ctx.client.clone())
            .list_metadata(&ListParams::default().labels(&identity.selector()))
            .await?;
        let now = Timestamp::now();
        let mut next = None;
        let mut by_namespace: std::collections::BTreeMap<String, Vec<ObjectMeta>> =
            std::collections::BTreeMap::new();
        for claim in owned.items {
            by_namespace
                .entry(claim.namespace().unwrap_or_default())
                .or_default()
                .push(claim.metadata);
        }
        for (namespace, metas) in by_namespace {
            let wanted: BTreeSet<String> = desired
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(namespace.as_str()))
                .map(ResourceExt::name_any)
                .collect();
            let api = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), &namespace);
            for step in plan_sweep(&metas, &wanted, now, self.retention()) {
                match step {
                    Sweep::Unmark(_) => {} // done by the apply
                    Sweep::Mark { name, purge_after } => {
                        let patch = json!({"metadata": {
                            "labels": {build::storage::RETAINED: "true"},
                            "annotations": {labels::PURGE_AFTER: purge_after.to_string()}}});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                        self.ctx.metrics.write("PersistentVolumeClaim", "update");
                        self.publish(EventType::Normal, "Retained", "Retain", format!("volume claim {namespace}/{name} left the spec; its data is kept until {purge_after}"))
                            .await;
                        next = Some(shortest(next, until(now, purge_after)));
                    }
                    Sweep::Purge(name) => {
                        self.purge_claim(&api, &namespace, &name).await?;
                    }
                    Sweep::Wait(deadline) => next = Some(shortest(next, until(now, deadline))),
                }
            }
        }
        Ok(next)
    }

    /// Destroys a claim's data: its volume is switched to `Delete` (classes retain by default)
    /// so that the provisioner erases it, then the claim is deleted.
    async fn purge_claim(
        &self,
        api: &Api<PersistentVolumeClaim>,
        namespace: &str,
        name: &str,
    ) -> Result<()> {
        let claim = api.get_opt(name).await?;
        if let Some(volume) = claim
            .as_ref()
            .and_then(|c| c.spec.as_ref()?.volume_name.clone())
        {
            self.release_volume(&volume).await?;
        }
        api.delete(name, &DeleteParams::background()).await?;
        self.ctx.metrics.write("PersistentVolumeClaim", "delete");
        self.publish(
            EventType::Normal,
            "Purged",
            "Delete",
            format!("deleted volume claim {namespace}/{name} and its volume: its retention window has passed"),
        )
        .await;
        Ok(())
    }

    /// Runs, once, the Job that forgets and prunes every snapshot of the tenant's repository and
    /// fails while one remains. `None` once that is done (or there are no backups); otherwise
    /// where it stands.
    async fn purge_repository(&self, identity: &Identity) -> Result<Option<String>> {
        let Ok(job) = build::requests::purge_job(
            self.tenant,
            identity,
            &self.config.backup,
            &self.config.namespace,
        ) else {
            return Ok(None);
        };
        let secrets = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.config.namespace);
        // Without the password there is nothing left to purge (it goes last).
        if secrets
            .get_metadata_opt(&build::backup::password_secret_name(&identity.name))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(
            self.ctx.client.clone(),
            &self.config.namespace,
        );
        let name = job.name_any();
        let Some(live) = jobs.get_opt(&name).await? else {
            match jobs.create(&kube::api::PostParams::default(), &job).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            self.ctx.metrics.write("Job", "create");
            self.publish(
                EventType::Normal,
                "PurgeStarted",
                "Delete",
                format!(
                    "purging the backup repository with Job {}/{name}",
                    self.config.namespace
                ),
            )
            .await;
            return Ok(Some("backup repository purge started".into()));
        };
        let condition = |type_: &str| {
            crate::status::job_ended(&live, type_).map(|c| c.message.clone().unwrap_or_default())
        };
        if condition("Complete").is_some() {
            jobs.delete(&name, &DeleteParams::background()).await?;
            self.publish(
                EventType::Normal,
                "RepositoryPurged",
                "Delete",
                "every backup snapshot of the tenant forgotten and pruned; none remains".into(),
            )
            .await;
            return Ok(None);
        }
        if let Some(message) = condition("Failed") {
            // Retried with a new Job on the next look; never skipped.
            jobs.delete(&name, &DeleteParams::background()).await?;
            self.publish(
                EventType::Warning,
                "PurgeFailed",
                "Delete",
                format!("the backup repository purge failed, retrying: {message}"),
            )
            .await;
            return Ok(Some("backup repository purge failed, retrying".into()));
        }
        Ok(Some("backup repository purge running".into()))
    }

    /// Switches the volumes bound to the tenant's claims (in `namespace`, or everywhere) to
    /// `Delete`, so that deleting the claims destroys the data rather than leave it on disk.
    async fn release_volumes(&self, selector: &str, namespace: Option<&str>) -> Result<()> {
        let api = match namespace {
            Some(namespace) => {
                Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), namespace)
            }
            None => Api::<PersistentVolumeClaim>::all(self.ctx.client.clone()),
        };
        for claim in api.list(&ListParams::default().labels(selector)).await? {
            if let Some(volume) = claim.spec.and_then(|s| s.volume_name) {
                self.release_volume(&volume).await?;
            }
        }
        Ok(())
    }

    /// Switches one volume to `Delete`, unless it is gone or already so.
    async fn release_volume(&self, volume: &str) -> Result<()> {
        let volumes = Api::<PersistentVolume>::all(self.ctx.client.clone());
        let live = volumes.get_opt(volume).await?;
        if live
            .as_ref()
            .and_then(|v| v.spec.as_ref()?.persistent_volume_reclaim_policy.as_deref())
            .is_none_or(|policy| policy == "Delete")
        {
            return Ok(());
        }
        let patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}});
        volumes
            .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.ctx.metrics.write("PersistentVolume", "update");
        Ok(())
    }

    /// Deletes the key Secrets matching `selector` in the operator's namespace; returns how
    /// many there were.
    async fn delete_keys(&self, selector: &str) -> Result<usize> {
        let api = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.config.namespace);
        let keys = api
            .list_metadata(&ListParams::default().labels(selector))
            .await?;
        for key in &keys.items {
            if key.metadata.deletion_timestamp.is_some() {
                continue;
            }
            api.delete(&key.name_any(), &DeleteParams::background())
                .await?;
            self.ctx.metrics.write("Secret", "delete");
            self.publish(
                EventType::Normal,
                "Purged",
                "Delete",
                format!(
                    "deleted encryption key {}/{}: the data it protected is purged",
                    self.config.namespace,
                    key.name_any()
                ),
            )
            .await;
        }
        Ok(keys.items.len())
    }

    /// The exposure report, from the NetworkPolicies and namespaces as the API server holds them.
    async fn network_report(&self, identity: &Identity) -> Result<NetworkReport> {
        let params = ListParams::default().labels(&identity.selector());
        let namespaces = Api::<Namespace>::all(self.ctx.client.clone())
            .list_metadata(&params)
            .await?
            .items;
        // Every policy in the tenant's namespaces, not only Enclave's: any of them can open a port.
        let mut policies = Vec::new();
        for namespace in &namespaces {
            let api =
                Api::<NetworkPolicy>::namespaced(self.ctx.client.clone(), &namespace.name_any());
            policies.extend(api.list(&ListParams::default()).await?.items);
        }
        let zones: Vec<ZoneNamespace<'_>> = namespaces
            .iter()
            .filter_map(|ns| {
                let labels = ns.metadata.labels.as_ref()?;
                Some(ZoneNamespace {
                    zone: labels.get(labels::ZONE)?,
                    namespace: ns.metadata.name.as_deref()?,
                    labels,
                })
            })
            .collect();
        let exposure = exposure::evaluate(&zones, &policies, &self.config.network);
        let differences = exposure::differences(&exposure, &exposure::expected(self.tenant));
        Ok(NetworkReport {
            exposure,
            differences,
        })
    }

    /// Applies namespaced objects, each unless it already matches.
    async fn apply_namespaced<K>(&self, desired: &[K]) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        for object in desired {
            let namespace = object.namespace().unwrap_or_default();
            let api = Api::<K>::namespaced(self.ctx.client.clone(), &namespace);
            let live = api.get_opt(&object.name_any()).await?;
            let change = apply(&api, object, live.as_ref()).await?;
            self.record_change(
                change,
                &K::kind(&()),
                &format!("{namespace}/{}", object.name_any()),
            )
            .await;
        }
        Ok(())
    }

    /// Deletes the tenant's objects of kind `K` that the build no longer wants. Only for kinds
    /// that hold no data: those are retained instead (see [`Self::sweep`]).
    async fn sweep_namespaced<K>(&self, identity: &Identity, desired: &[K]) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let wanted: BTreeSet<(String, String)> = desired
            .iter()
            .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        let owned = Api::<K>::all(self.ctx.client.clone())
            .list_metadata(&ListParams::default().labels(&identity.selector()))
            .await?;
        for meta in owned.items {
            let key = (meta.namespace().unwrap_or_default(), meta.name_any());
            if wanted.contains(&key) || meta.metadata.deletion_timestamp.is_some() {
                continue;
            }
            Api::<K>::namespaced(self.ctx.client.clone(), &key.0)
                .delete(&key.1, &DeleteParams::background())
                .await?;
            let kind = K::kind(&());
            self.ctx.metrics.write(&kind, "delete");
            self.publish(
                EventType::Normal,
                "Deleted",
                "Delete",
                format!("deleted {kind} {}/{}: no longer in the spec", key.0, key.1),
            )
            .await;
        }
        Ok(())
    }

    /// Marks, keeps or purges the namespaces the spec no longer wants. Returns how soon the
    /// next retention deadline falls.
    async fn sweep(
        &self,
        api: &Api<Namespace>,
        identity: &Identity,
        wanted: &BTreeSet<String>,
    ) -> Result<Option<Duration>> {
        let owned = api
            .list_metadata(&ListParams::default().labels(&identity.selector()))
            .await?;
        let metas: Vec<_> = owned.items.into_iter().map(|o| o.metadata).collect();
        let now = Timestamp::now();
        let mut next: Option<Duration> = None;
        for step in plan_sweep(&metas, wanted, now, self.retention()) {
            match step {
                Sweep::Unmark(_) => {} // done before the apply
                Sweep::Mark { name, purge_after } => {
                    let patch = json!({"metadata": {"annotations": {labels::PURGE_AFTER: purge_after.to_string()}}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    self.ctx.metrics.write("Namespace", "update");
                    self.publish(EventType::Normal, "Retained", "Retain", format!("zone namespace {name} left the spec; its data is kept until {purge_after}"))
                        .await;
                    next = Some(shortest(next, until(now, purge_after)));
                }
                Sweep::Purge(name) => {
                    self.release_volumes(&identity.selector(), Some(&name))
                        .await?;
                    self.delete_keys(&format!(
                        "{},{}={}",
                        identity.selector(),
                        labels::ZONE,
                        name.strip_prefix(&format!("{}-", identity.name))
                            .unwrap_or_default()
                    ))
                    .await?;
                    api.delete(&name, &DeleteParams::background()).await?;
                    self.ctx.metrics.write("Namespace", "delete");
                    self.publish(
                        EventType::Normal,
                        "Purged",
                        "Delete",
                        format!("deleted namespace {name}: its retention window has passed"),
                    )
                    .await;
                }
                Sweep::Wait(deadline) => next = Some(shortest(next, until(now, deadline))),
            }
        }
        Ok(next)
    }

    /// A deleted tenant: stopped and closed at once, everything kept until `purgeAfter`, then
    /// purged, the purge verified, and the Tenant released.
    async fn decommission(&self, identity: &Identity) -> Result<Action> {
        if !self.tenant.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        let live = Api::<Tenant>::all(self.ctx.client.clone())
            .get_status(&identity.name)
            .await?;
        let already_purged = live
            .status
            .as_ref()
            .and_then(|s| s.purged_at.as_ref())
            .is_some();
        let deleted_at = self
            .tenant
            .metadata
            .deletion_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let purge_after = deleted_at
            .checked_add(self.retention())
            .unwrap_or(deleted_at);
        let now = Timestamp::now();
        if now < purge_after && !already_purged {
            self.stop(identity).await?;
            let namespaces = self.owned_namespaces(identity).await?;
            self.update_status(
                &Outcome::Decommissioning { purge_after },
                namespaces,
                None,
                None,
            )
            .await?;
            info!(%purge_after, "tenant deleted: data retained until the deadline");
            return Ok(Action::requeue(
                until(now, purge_after).min(self.config.resync),
            ));
        }
        match self.purge(identity).await? {
            Purge::Remaining(what) => {
                let namespaces = self.owned_namespaces(identity).await?;
                self.update_status(
                    &Outcome::Decommissioning { purge_after },
                    namespaces,
                    None,
                    None,
                )
                .await?;
                info!(remaining = %what, "purge in progress");
                return Ok(Action::requeue(self.config.poll));
            }
            Purge::Done => {}
        }
        // Verified: nothing of the tenant is left. Release the Tenant.
        let finalizers: Vec<&String> = self
            .tenant
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": self.tenant.resource_version()}});
        Api::<Tenant>::all(self.ctx.client.clone())
            .patch(
                &identity.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        info!("tenant purged and verified: finalizer removed");
        Ok(Action::await_change())
    }

    /// At once on deletion: workloads to zero and internet exposure closed (the tenant is not
    /// running, so the builders say so); nothing holding data is touched.
    async fn stop(&self, identity: &Identity) -> Result<()> {
        let Ok(mut desired) = build::desired(self.tenant, self.config) else {
            return Ok(());
        };
        // Without owner references (removed below): a foreground deletion of the Tenant has
        // the garbage collector delete its dependents, and these must stand until the purge.
        for policy in &mut desired.network_policies {
            policy.metadata.owner_references = None;
        }
        for deployment in &mut desired.workloads.deployments {
            deployment.metadata.owner_references = None;
        }
        for set in &mut desired.workloads.stateful_sets {
            set.metadata.owner_references = None;
        }
        let namespaces = self.owned_namespaces(identity).await?;
        let present =
            |namespace: Option<String>| namespace.is_some_and(|n| namespaces.contains(&n));
        let policies: Vec<_> = desired
            .network_policies
            .into_iter()
            .filter(|p| present(p.namespace()))
            .collect();
        self.apply_namespaced(&policies).await?;
        let deployments: Vec<_> = desired
            .workloads
            .deployments
            .into_iter()
            .filter(|d| present(d.namespace()))
            .collect();
        self.apply_namespaced(&deployments).await?;
        let sets: Vec<_> = desired
            .workloads
            .stateful_sets
            .into_iter()
            .filter(|d| present(d.namespace()))
            .collect();
        self.apply_stateful_sets(&sets).await?;
        self.disown(&policies).await?;
        self.disown(&deployments).await?;
        self.disown(&sets).await
    }

    /// Removes the owner references of these objects, where the live ones have any.
    async fn disown<K>(&self, objects: &[K]) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        for object in objects {
            let api = Api::<K>::namespaced(
                self.ctx.client.clone(),
                &object.namespace().unwrap_or_default(),
            );
            let Some(live) = api.get_metadata_opt(&object.name_any()).await? else {
                continue;
            };
            if live
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| !o.is_empty())
            {
                let patch = json!({"metadata": {"ownerReferences": null}});
                api.patch(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                self.ctx.metrics.write(&K::kind(&()), "update");
            }
        }
        Ok(())
    }

    async fn owned_namespaces(&self, identity: &Identity) -> Result<Vec<String>> {
        Ok(Api::<Namespace>::all(self.ctx.client.clone())
            .list_metadata(&ListParams::default().labels(&identity.selector()))
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect())
    }

    /// Destroys the tenant's data and checks that nothing of it remains: volumes switched to
    /// `Delete` then their namespaces deleted, keys and CA deleted; then nothing labelled with
    /// the tenant's uid may be left, and no volume bound to one of its claims. Repeated until
    /// that holds; an Event summarises what was destroyed.
    async fn purge(&self, identity: &Identity) -> Result<Purge> {
        let selector = identity.selector();
        let params = ListParams::default().labels(&selector);
        let namespaces_api = Api::<Namespace>::all(self.ctx.client.clone());
        let namespaces = namespaces_api.list_metadata(&params).await?.items;
        let claims = Api::<PersistentVolumeClaim>::all(self.ctx.client.clone())
            .list(&params)
            .await?
            .items;
        let volumes: Vec<String> = claims
            .iter()
            .filter_map(|c| c.spec.as_ref()?.volume_name.clone())
            .collect();
        self.release_volumes(&selector, None).await?;
        for meta in namespaces
            .iter()
            .filter(|m| m.metadata.deletion_timestamp.is_none())
        {
            namespaces_api
                .delete(&meta.name_any(), &DeleteParams::background())
                .await?;
            self.ctx.metrics.write("Namespace", "delete");
            self.publish(
                EventType::Normal,
                "Purged",
                "Delete",
                format!(
                    "deleted namespace {}: the tenant's retention window has passed",
                    meta.name_any()
                ),
            )
            .await;
        }
        // The backups go before the keys: the purge Job needs the repository's password.
        let mut remaining = Vec::new();
        let repository = self.purge_repository(identity).await?;
        if let Some(state) = &repository {
            remaining.push(state.clone());
        }
        let keys = if repository.is_none() {
            self.delete_keys(&selector).await?
        } else {
            0
        };
        // Verify.
        let left = namespaces_api.list_metadata(&params).await?.items;
        if !left.is_empty() {
            remaining.push(format!(
                "namespace(s) {}",
                left.iter()
                    .map(ResourceExt::name_any)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let left = Api::<PersistentVolumeClaim>::all(self.ctx.client.clone())
            .list_metadata(&params)
            .await?
            .items;
        if !left.is_empty() {
            remaining.push(format!("{} volume claim(s)", left.len()));
        }
        let left = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.config.namespace)
            .list_metadata(&params)
            .await?
            .items;
        if !left.is_empty() {
            remaining.push(format!("{} key(s)", left.len()));
        }
        let tenant_namespaces: BTreeSet<String> = self
            .tenant
            .spec
            .zones
            .iter()
            .map(|z| self.tenant.zone_namespace(&z.name))
            .chain(
                self.tenant
                    .status
                    .iter()
                    .flat_map(|s| s.namespaces.iter().cloned()),
            )
            .collect();
        let bound: Vec<String> = Api::<PersistentVolume>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref()?.namespace.clone())
                    .is_some_and(|n| tenant_namespaces.contains(&n))
            })
            .map(|pv| pv.name_any())
            .collect();
        if !bound.is_empty() {
            remaining.push(format!(
                "volume(s) {} still to be destroyed by their storage driver",
                bound.join(", ")
            ));
        }
        if !remaining.is_empty() {
            let what = remaining.join("; ");
            self.publish(
                EventType::Normal,
                "PurgeInProgress",
                "Delete",
                format!("purge not complete yet, retrying: {what}"),
            )
            .await;
            return Ok(Purge::Remaining(what));
        }
        self.publish(
            EventType::Normal,
            "PurgeVerified",
            "Delete",
            format!(
                "tenant data destroyed: {} namespace(s), {} volume claim(s), {} volume(s), {keys} key Secret(s); nothing labelled {selector} remains",
                namespaces.len(),
                claims.len(),
                volumes.len(),
            ),
        )
        .await;
        self.ctx
            .metrics
            .certificate_expiry
            .remove(&crate::telemetry::TenantLabels {
                tenant: identity.name.clone(),
            });
        Ok(Purge::Done)
    }

    async fn ensure_finalizer(&self) -> Result<()> {
        if self.tenant.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let mut finalizers = self.tenant.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        // resourceVersion makes this a compare-and-swap: a concurrent change gives 409 and a retry.
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": self.tenant.resource_version()}});
        Api::<Tenant>::all(self.ctx.client.clone())
            .patch(
                &self.tenant.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.ctx.metrics.write("Tenant", "update");
        Ok(())
    }

    async fn unmark(&self, api: &Api<Namespace>, name: &str) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {labels::PURGE_AFTER: null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.ctx.metrics.write("Namespace", "update");
        self.publish(
            EventType::Normal,
            "Restored",
            "Update",
            format!("zone namespace {name} is wanted again: retention mark removed"),
        )
        .await;
        Ok(())
    }

    /// Writes the status when it differs from what the API server holds, with an Event when
    /// the Ready condition changes.
    async fn update_status(
        &self,
        outcome: &Outcome,
        namespaces: Vec<String>,
        network: Option<&NetworkReport>,
        certificate: Option<&crate::status::TlsReport>,
    ) -> Result<()> {
        // The cached Tenant can lag behind a status this operator has just written; comparing
        // against it would write (and announce) the same status again.
        let live = Api::<Tenant>::all(self.ctx.client.clone())
            .get_status(&self.tenant.name_any())
            .await?;
        let previous = live.status.as_ref();
        let zones: Vec<String> = self
            .tenant
            .spec
            .zones
            .iter()
            .map(|z| z.name.clone())
            .collect();
        let mut status = tenant_status(
            self.tenant.metadata.generation,
            outcome,
            &zones,
            namespaces,
            network,
            previous,
            Timestamp::now(),
        );
        if let Ok(identity) = Identity::of(self.tenant) {
            let params = ListParams::default().labels(&identity.selector());
            let quotas = Api::<ResourceQuota>::all(self.ctx.client.clone())
                .list(&params)
                .await?;
            status.usage = crate::status::usage(&quotas.items);
            let deployments = Api::<Deployment>::all(self.ctx.client.clone())
                .list(&params)
                .await?;
            let sets = Api::<StatefulSet>::all(self.ctx.client.clone())
                .list(&params)
                .await?;
            let observed: Vec<Observed> = deployments
                .items
                .iter()
                .map(Observed::of_deployment)
                .chain(sets.items.iter().map(Observed::of_stateful_set))
                .collect();
            status.workloads =
                crate::status::workload_statuses(&self.tenant.spec.workloads, &observed);
            let redundancy = crate::status::redundancy(&self.tenant.spec.workloads, &observed);
            if self.tenant.is_running() {
                crate::status::with_redundancy(
                    &mut status,
                    &redundancy,
                    previous,
                    Timestamp::now(),
                );
            } else {
                // Stopped on purpose: no redundancy to report, no alarm to raise.
                status.ready_workloads = Some("stopped".into());
            }
            if self.tenant.is_running()
                && redundancy.reason != "Redundant"
                && condition_reason(previous, crate::status::WORKLOADS_REDUNDANT)
                    != Some(redundancy.reason)
            {
                self.publish(
                    EventType::Warning,
                    redundancy.reason,
                    "Observe",
                    redundancy.message.clone(),
                )
                .await;
            }
        }
        if !matches!(outcome, Outcome::Decommissioning { .. } | Outcome::Purged) {
            self.storage_status(&mut status, previous).await?;
        }
        if let Some(backup) = &self.tenant.spec.backup
            && !matches!(outcome, Outcome::Purged)
        {
            self.backup_status(&mut status, backup, previous).await?;
        } else {
            status.backup = None;
        }
        if self.tenant.spec.tls.is_some() {
            crate::status::with_certificate(&mut status, certificate, previous, Timestamp::now());
        } else {
            status.certificate = None;
        }
        // The retention window of a decommissioned tenant starts when it was first seen so.
        let decommissioned = self.tenant.spec.lifecycle.state == LifecycleState::Decommissioned
            && self.tenant.metadata.deletion_timestamp.is_none();
        // The deadline was computed from it: derived back, the two always agree.
        status.decommissioned_at = match outcome {
            Outcome::Decommissioning { purge_after } if decommissioned => Some(Time(
                purge_after
                    .checked_sub(self.retention())
                    .unwrap_or(*purge_after),
            )),
            _ if decommissioned => previous.and_then(|p| p.decommissioned_at.clone()),
            _ => None,
        };
        status.purged_at = match outcome {
            Outcome::Purged => Some(
                previous
                    .and_then(|p| p.purged_at.clone())
                    .unwrap_or_else(|| Time(crate::status::seconds(Timestamp::now()))),
            ),
            _ if decommissioned => previous.and_then(|p| p.purged_at.clone()),
            _ => None,
        };
        if previous == Some(&status) {
            return Ok(());
        }
        // Server-side apply: a field the new status leaves out is removed, unlike a merge patch.
        let patch = json!({"apiVersion": Tenant::api_version(&()), "kind": Tenant::kind(&()), "status": status});
        Api::<Tenant>::all(self.ctx.client.clone())
            .patch_status(
                &self.tenant.name_any(),
                &PatchParams::apply(build::MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.ctx.metrics.write("Tenant", "status");
        if ready_reason(previous) != ready_reason(Some(&status)) {
            let (type_, note) = match outcome {
                Outcome::Ready => (EventType::Normal, "tenant is ready".to_string()),
                Outcome::Progressing { message, .. } => (EventType::Normal, message.clone()),
                Outcome::Blocked { message, .. } => (EventType::Warning, message.clone()),
                Outcome::Decommissioning { purge_after } => (
                    EventType::Normal,
                    format!(
                        "tenant stopped and closed: data retained until {purge_after}, then purged"
                    ),
                ),
                Outcome::Suspended => (
                    EventType::Normal,
                    "tenant suspended: workloads stopped, exposure closed, data kept".to_string(),
                ),
                Outcome::Purged => (
                    EventType::Normal,
                    "tenant purged: its data is destroyed and verified gone".to_string(),
                ),
            };
            let reason = ready_reason(Some(&status))
                .unwrap_or("Reconciled")
                .to_string();
            self.publish(type_, &reason, "Reconcile", note).await;
        }
        Ok(())
    }

    /// Adds `status.backup` and `BackupHealthy`, from the backup Jobs the API server holds.
    async fn backup_status(
        &self,
        status: &mut TenantStatus,
        backup: &enclave_crds::Backup,
        previous: Option<&TenantStatus>,
    ) -> Result<()> {
        let Ok(identity) = Identity::of(self.tenant) else {
            return Ok(());
        };
        let jobs = Api::<k8s_openapi::api::batch::v1::Job>::all(self.ctx.client.clone())
            .list(&ListParams::default().labels(&format!(
                "{},{}=true",
                identity.selector(),
                build::backup::BACKUP
            )))
            .await?;
        let finished = |job: &k8s_openapi::api::batch::v1::Job, type_: &str| {
            crate::status::job_ended(job, type_)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        };
        let runs: Vec<_> = jobs
            .items
            .iter()
            .map(|job| (finished(job, "Complete"), finished(job, "Failed")))
            .collect();
        let created = self
            .tenant
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let report =
            crate::status::backup_health(&backup.schedule, &runs, created, Timestamp::now());
        if !report.healthy
            && condition_reason(previous, crate::status::BACKUP_HEALTHY) != Some(report.reason)
        {
            self.publish(
                EventType::Warning,
                "BackupOverdue",
                "Observe",
                report.message.clone(),
            )
            .await;
        }
        crate::status::with_backup(status, &report, previous, Timestamp::now());
        Ok(())
    }

    /// Adds `StorageReplicated` and the retained volumes to the status.
    async fn storage_status(
        &self,
        status: &mut TenantStatus,
        previous: Option<&TenantStatus>,
    ) -> Result<()> {
        let Ok(identity) = Identity::of(self.tenant) else {
            return Ok(());
        };
        let params = ListParams::default().labels(&identity.selector());
        let claims = Api::<PersistentVolumeClaim>::all(self.ctx.client.clone())
            .list(&params)
            .await?
            .items;
        let retained = claims
            .iter()
            .filter_map(|c| {
                Some(enclave_crds::RetainedVolume {
                    name: c.metadata.name.clone()?,
                    namespace: c.metadata.namespace.clone()?,
                    purge_after: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        crate::apply::purge_after(&c.metadata)?,
                    ),
                })
            })
            .collect();
        let wanted: Vec<(String, String, i32)> = self
            .tenant
            .spec
            .volumes
            .iter()
            .flat_map(|v| {
                let namespace = self.tenant.zone_namespace(&v.zone);
                build::storage::claim_names(self.tenant, v)
                    .into_iter()
                    .map(move |name| (namespace.clone(), name, v.replicas))
            })
            .collect();
        let replication = if wanted.is_empty() {
            None
        } else {
            let classes = Api::<StorageClass>::all(self.ctx.client.clone())
                .list(&ListParams::default().labels(&format!(
                    "{}={}",
                    labels::MANAGED_BY,
                    labels::MANAGER
                )))
                .await?
                .items;
            Some(crate::status::replication(&wanted, &claims, &classes))
        };
        crate::status::with_storage(
            status,
            replication.as_ref(),
            retained,
            previous,
            Timestamp::now(),
        );
        Ok(())
    }

    async fn record_change(&self, change: Change, kind: &str, name: &str) {
        let (reason, action) = match change {
            Change::Unchanged => return,
            Change::Created => ("Created", "create"),
            Change::Updated => ("Updated", "update"),
        };
        self.ctx.metrics.write(kind, action);
        info!(kind, name, action, "applied");
        let verb = if action == "create" {
            "created"
        } else {
            "restored or changed"
        };
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(kind.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        };
        self.publish_about(
            EventType::Normal,
            reason,
            "Apply",
            format!("{verb} {kind} {name}"),
            Some(object),
        )
        .await;
    }

    /// Publishes an Event on the Tenant; a failure is logged, never fatal.
    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        self.publish_about(type_, reason, action, note, None).await;
    }

    /// Publishes an Event on the Tenant about one of its objects, so that changes to different
    /// objects stay separate Events rather than one aggregated series.
    async fn publish_about(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        object: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: object,
        };
        if let Err(error) = self
            .ctx
            .recorder
            .publish(&event, &self.tenant.object_ref(&()))
            .await
        {
            warn!(%error, "could not publish event");
        }
    }

    /// The tenant's retention window, clamped to the policy's 30 days.
    fn retention(&self) -> Duration {
        let max = Duration::from_secs(MAX_RETENTION_SECONDS);
        duration::parse(&self.tenant.spec.lifecycle.retention)
            .map_or(Duration::from_secs(7 * 86_400), |d| d.min(max))
    }
}

/// Where a purge stands.
enum Purge {
    /// Something of the tenant remains (named): look again.
    Remaining(String),
    /// Nothing remains.
    Done,
}

/// The Tenant owning a namespaced child. `Controller::owns` would look for the owner in the
/// child's namespace, giving one cluster-scoped Tenant a key per namespace, and so
/// reconciles of the same tenant running side by side.
#[allow(clippy::needless_pass_by_value)] // the mapper signature `Controller::watches` asks for
fn owning_tenant<K: Resource>(child: K) -> Option<ObjectRef<Tenant>> {
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Tenant" && o.api_version.starts_with(enclave_crds::GROUP))
        .map(|o| ObjectRef::new(&o.name))
}

/// The Tenant named by an object's tenant label, for objects without owner reference.
#[allow(clippy::needless_pass_by_value)] // the mapper signature `Controller::watches` asks for
fn by_tenant_label<K: Resource>(object: K) -> Option<ObjectRef<Tenant>> {
    object
        .meta()
        .labels
        .as_ref()?
        .get(labels::TENANT)
        .map(|name| ObjectRef::new(name))
}

fn condition_reason<'a>(status: Option<&'a TenantStatus>, type_: &str) -> Option<&'a str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

fn ready_reason(status: Option<&TenantStatus>) -> Option<&str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.reason.as_str())
}

/// Creates a Secret with fresh random keys in `key.key_fields`, unless it exists: a key is
/// never rewritten, or what it protects would be lost. True when it was created now.
///
/// # Errors
/// When the API server refuses, or the system has no randomness.
pub(crate) async fn create_once(client: &Client, key: &build::storage::KeySecret) -> Result<bool> {
    let namespace = key.secret.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(client.clone(), &namespace);
    if api
        .get_metadata_opt(&key.secret.name_any())
        .await?
        .is_some()
    {
        return Ok(false);
    }
    let mut secret = key.secret.clone();
    let data = secret.string_data.get_or_insert_with(Default::default);
    for field in &key.key_fields {
        data.insert(field.clone(), random_key()?);
    }
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        // Created meanwhile by another reconcile: that key stands.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// 256 random bits from the operating system, as 64 hex digits.
fn random_key() -> Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Key(e.to_string()))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

fn until(now: Timestamp, deadline: Timestamp) -> Duration {
    // A second past the deadline, so the next look finds it passed.
    Duration::try_from(deadline.duration_since(now)).unwrap_or_default() + Duration::from_secs(1)
}

fn shortest(a: Option<Duration>, b: Duration) -> Duration {
    a.map_or(b, |a| a.min(b))
}
