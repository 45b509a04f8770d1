//! The Tenant controller: its watches and their mappers, the error policy, and the entry to
//! the pipeline ([`reconcile`]).
//!
//! ```text
//! identity -> lifecycle gate -> desired (pure) -> preflight (pure) -> TLS -> apply + sweep
//!          -> observe -> status (pure compute, then one write)
//! ```

use crate::cache::{Caches, CachesBuilder};
use crate::cluster::Gateway;
use crate::config::Config;
use crate::desired::{self, labels};
use crate::error::{Error, Phase, Result, api};
use crate::telemetry::{Health, Metrics};
use enclave_crds::{Tenant, TenantStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, instrument, warn};

mod access;
mod backup_now;
mod incidents;
mod ingress;
mod lifecycle;
mod observe;
mod preflight;
mod purge;
mod quota;
mod reconcile;
mod tls;

/// What every reconcile shares, built once.
pub struct Context {
    /// Client of the API server, for reads.
    pub client: Client,
    /// The one way to write to the API server.
    pub gateway: Gateway,
    /// The operator's configuration, as last loaded: a change re-reconciles every tenant.
    pub config: tokio::sync::watch::Receiver<Config>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether prometheus-operator's `AlertmanagerConfig` is served (looked up at start and at
    /// each configuration reload): the tenants' alert routing is kept then.
    pub alert_routing: Arc<AtomicBool>,
    /// Whether cert-manager's `Certificate` is served (looked up at start, at each
    /// configuration reload, and whenever the TLS step finds its CRD): the sweep lists
    /// Certificates only then.
    pub certificates_served: Arc<AtomicBool>,
    /// Tenants (by uid) whose incident register could not be written: tried again at their
    /// next reconcile.
    pub register_retry: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The objects reconciles compare against, kept by the controller's watches.
    pub caches: Caches,
    /// The status this operator last wrote per tenant uid, with the resourceVersion the write
    /// gave: the cached Tenant can lag behind it (see `observe::previous_status`).
    pub written: std::sync::Mutex<std::collections::HashMap<String, (String, TenantStatus)>>,
    /// The alert routing last applied per tenant uid (its JSON): applied again only when it
    /// changes, or after a restart or a configuration reload.
    pub routed: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

/// Whether the API server serves prometheus-operator's `AlertmanagerConfig`.
async fn alertmanager_served(client: &Client) -> bool {
    served(
        client,
        &crate::desired::incidents::alertmanager_config_resource(),
    )
    .await
}

/// Whether the API server serves `resource` (a kind of an optional CRD).
async fn served(client: &Client, resource: &kube::api::ApiResource) -> bool {
    let served = kube::discovery::oneshot::pinned_group(
        client,
        &kube::core::GroupVersion::gv(&resource.group, &resource.version),
    )
    .await
    .is_ok_and(|group| {
        group
            .resources_by_stability()
            .iter()
            .any(|(r, _)| r.kind == resource.kind)
    });
    info!(served, kind = %resource.kind, "looked up an optional kind");
    served
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
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let requests_gateway = Gateway::new(client.clone(), reporter.clone(), health.metrics.clone());
    // Aborted if this future is dropped (a lost leader lease): nothing goes on writing.
    let mut requests = AbortOnDrop(tokio::spawn(crate::controllers::requests::run(
        requests_gateway,
        configs.clone(),
        shutdown.clone(),
    )));
    let gateway = Gateway::new(client.clone(), reporter, health.metrics.clone());
    // The tenant roles are shared by every tenant: kept once per start, before any binding.
    let roles = Api::<ClusterRole>::all(client.clone());
    let writer = gateway.writer(Phase::Start, None);
    for role in desired::access::cluster_roles() {
        let live = roles.get_opt(&role.name_any()).await.map_err(api(
            Phase::Start,
            "get",
            "ClusterRole",
            role.name_any(),
        ))?;
        writer.apply(&role, live.as_ref()).await?;
    }
    let alert_routing = Arc::new(AtomicBool::new(alertmanager_served(&client).await));
    let certificate = crate::desired::tls::certificate_resource();
    let certificates_served = Arc::new(AtomicBool::new(served(&client, &certificate).await));
    let certificates = certificates_served.clone();
    // A new configuration (a default image bumped, say) is rolled out to every tenant; a
    // prometheus-operator installed meanwhile is found then.
    let discovery = client.clone();
    let routing = alert_routing.clone();
    let routed: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let forget = routed.clone();
    let reloads = futures::stream::unfold(configs.clone(), move |mut configs| {
        let (client, alert_routing) = (discovery.clone(), routing.clone());
        let (forget, certificates) = (forget.clone(), certificates.clone());
        let certificate = crate::desired::tls::certificate_resource();
        async move {
            configs.changed().await.ok()?;
            if let Ok(mut routed) = forget.lock() {
                routed.clear();
            }
            info!("configuration changed: reconciling every tenant");
            alert_routing.store(alertmanager_served(&client).await, Ordering::Relaxed);
            if served(&client, &certificate).await {
                certificates.store(true, Ordering::Relaxed);
            }
            Some(((), configs))
        }
    });
    let managed = labels::managed_selector();
    let every = watcher::Config::default;
    let ours = || watcher::Config::default().labels(&managed);
    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let tenant_stream = watcher(Api::<Tenant>::all(client.clone()), every())
        .modify(crate::cache::strip::<Tenant>)
        .reflect(tenant_writer)
        .applied_objects();
    let controller = Controller::for_stream(tenant_stream, tenants);
    // Every watch fills a store the reconcile reads from (crate::cache): the objects it
    // compares against are not read from the API server again.
    let mut caches = CachesBuilder::default();
    let c = &client;
    // Only the namespaces the operator manages are watched, never every namespace; they
    // carry no owner reference (see build::namespaces), so they are mapped by label.
    let controller = controller.watches_stream(
        caches.watch(Api::<Namespace>::all(c.clone()), ours()),
        by_tenant_label,
    );
    // The Tenant whose zone `namespace` is, by the zone namespace's tenant label.
    let zones = caches.store::<Namespace>();
    let by_zone = move |namespace: Option<String>| {
        let zone = zones.as_ref()?.get(&ObjectRef::new(&namespace?))?;
        zone.labels().get(labels::TENANT).map(|t| ObjectRef::new(t))
    };
    let (by_zone_1, by_zone_2, by_zone_3) = (by_zone.clone(), by_zone.clone(), by_zone.clone());
    let controller = controller
        // Every NetworkPolicy, Enclave's or not: any of them changes what a zone exposes, and
        // the exposure report must follow every network change.
        .watches_stream(
            caches.watch(Api::<NetworkPolicy>::all(c.clone()), every()),
            move |policy| by_zone(policy.namespace()),
        )
        // Every Ingress (the tenants' own): each in an internet-facing zone carries the
        // firewall's source ranges for the ingress controller, set as soon as it appears.
        .watches_stream(
            caches.watch(Api::<Ingress>::all(c.clone()), every()),
            move |ingress| by_zone_1(ingress.namespace()),
        )
        // Every RoleBinding: Enclave's (owned), and the tenants' own, which the status and
        // the report list, and which lose their subjects when access is revoked.
        .watches_stream(
            caches.watch(Api::<RoleBinding>::all(c.clone()), every()),
            move |binding| {
                let namespace = binding.namespace();
                managed_owner(binding).or_else(|| by_zone_2(namespace))
            },
        )
        // Every Service: Enclave's (owned), and the tenants' own, whose type is part of the
        // exposure report.
        .watches_stream(
            caches.watch(Api::<Service>::all(c.clone()), every()),
            move |service| {
                let namespace = service.namespace();
                managed_owner(service).or_else(|| by_zone_3(namespace))
            },
        )
        .watches_stream(
            caches.watch(Api::<ResourceQuota>::all(c.clone()), ours()),
            owning_tenant,
        )
        .watches_stream(
            caches.watch(Api::<LimitRange>::all(c.clone()), ours()),
            owning_tenant,
        )
        .watches_stream(
            caches.watch(Api::<Deployment>::all(c.clone()), ours()),
            owning_tenant,
        )
        .watches_stream(
            caches.watch(Api::<StatefulSet>::all(c.clone()), ours()),
            owning_tenant,
        )
        // Claims carry no owner reference (data is never left to the garbage collector): they
        // are mapped to their tenant by label.
        .watches_stream(
            caches.watch(Api::<PersistentVolumeClaim>::all(c.clone()), ours()),
            by_tenant_label,
        )
        // Certificates and their ConfigMaps (the CA's Secret lives in the operator's namespace,
        // without owner): mapped by label, so an edited or deleted one is re-issued at once.
        .watches_stream(
            caches.watch(Api::<Secret>::all(c.clone()), ours()),
            by_tenant_label,
        )
        .watches_stream(
            caches.watch(Api::<ConfigMap>::all(c.clone()), ours()),
            by_tenant_label,
        )
        .watches_stream(
            caches.watch(Api::<CronJob>::all(c.clone()), ours()),
            owning_tenant,
        )
        // Backup Jobs (owned by their CronJob) carry the tenant's labels: their outcome is
        // the tenant's backup status.
        .watches_stream(
            caches.watch(Api::<Job>::all(c.clone()), ours()),
            by_tenant_label,
        )
        // The backup service accounts: a deleted one is made again at once.
        .watches_stream(
            caches.watch(Api::<ServiceAccount>::all(c.clone()), ours()),
            owning_tenant,
        )
        .watches_stream(
            caches.watch(Api::<PodDisruptionBudget>::all(c.clone()), ours()),
            owning_tenant,
        )
        // Shared by the tenants asking for the same storage profile.
        .watches_stream(
            caches.watch(Api::<StorageClass>::all(c.clone()), ours()),
            |_| None,
        )
        .reconcile_all_on(reloads)
        // One watch's errors must not hold up the others (see TriggerBackoff).
        .trigger_backoff(super::TriggerBackoff)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown);
    let ctx = Arc::new(Context {
        client: client.clone(),
        gateway,
        config: configs.clone(),
        metrics: health.metrics.clone(),
        alert_routing: alert_routing.clone(),
        certificates_served,
        register_retry: std::sync::Mutex::default(),
        caches: caches.build(),
        written: std::sync::Mutex::default(),
        routed,
    });
    let store = controller.store();
    let ready = health.ready.clone();
    let caches = ctx.caches.clone();
    tokio::spawn(async move {
        // The store wakes only one of several waiters (the controller is another), so look
        // again now and then rather than wait for a wake-up that may never come.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
        caches.synced().await;
        ready.store(true, Ordering::Relaxed);
        info!("tenant cache synced");
    });
    controller
        .run(reconcile_tenant, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                // One bad Tenant is logged and retried; the others go on.
                warn!(%error, "reconcile failed");
            }
        })
        .await;
    let _ = (&mut requests.0).await;
    info!("controller stopped");
    Ok(())
}

/// Backs off a failed tenant; others are not held up.
#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime's Controller::run asks for
fn error_policy(tenant: Arc<Tenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error);
    warn!(tenant = %tenant.name_any(), %error, kind = error.metric_label(), "reconcile error, retrying");
    // A conflict means our view was stale: retry at once rather than back off.
    if error.is_conflict() {
        Action::requeue(Duration::from_millis(200))
    } else {
        Action::requeue(Duration::from_secs(5))
    }
}

#[instrument(skip(tenant, ctx), fields(tenant = %tenant.name_any()))]
async fn reconcile_tenant(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    // Nothing is compared against a store before it holds its first full list.
    ctx.caches.synced().await;
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let config = ctx.config.borrow().clone();
    let result = Box::pin(reconcile::run(&tenant, &ctx, &config)).await;
    ctx.metrics.observe(started.elapsed());
    result
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

/// The Tenant owning an object Enclave manages. A tenant's own object (a Service, a
/// RoleBinding) is mapped by its namespace instead: an owner reference a tenant wrote could
/// name another tenant.
#[allow(clippy::needless_pass_by_value)] // the mapper signature `Controller::watches` asks for
fn managed_owner<K: Resource>(child: K) -> Option<ObjectRef<Tenant>> {
    let managed = child
        .meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|m| m == labels::MANAGER);
    if managed { owning_tenant(child) } else { None }
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

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
