//! The admission guard (R3): a validating webhook, served by the operator, that refuses any
//! change to what Enclave manages by anyone but the operator, validates Tenants against what
//! only the operator knows, and records every refused attempt as an Event on the Tenant and in
//! a metric: the abuse-attempt trail the policy promises.
//!
//! It must not take the cluster down with it:
//! - it sees only Enclave-managed objects (an `objectSelector` on the managed-by label) and
//!   Tenants: nothing else in the cluster ever waits on it;
//! - the operator's own requests, and the garbage collector's and namespace controller's, are
//!   excluded by `matchConditions` in the API server itself, so the operator keeps reconciling
//!   while the guard is down;
//! - managed objects fail closed (`Fail`): while the guard is down nobody but the operator and
//!   those controllers can change them, which is what isolation needs;
//! - Tenants fail open (`Ignore`): their schema and CEL rules still hold, and the operator reports
//!   what they miss as a condition, so GitOps is not blocked by an operator restart;
//! - a 5 second timeout, well inside the API server's own request deadline.

use crate::config::NetworkConfig;
use crate::labels::{self, MANAGER};
use crate::telemetry::Metrics;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::events::{Event, EventType, Recorder};
use std::net::SocketAddr;
use std::sync::Arc;

/// Name of the ValidatingWebhookConfiguration the operator keeps.
pub const WEBHOOK_CONFIGURATION: &str = "enclave-guard";
/// Path the guard serves.
pub const PATH: &str = "/validate";
/// Path of the guard's one mutation (the firewall on a tenant's Ingresses).
pub const MUTATE_PATH: &str = "/mutate";

mod cache;
mod certificate;
mod ingress;
mod mutate;
mod review;
mod webhook;

pub use cache::Caches;
pub use certificate::keep_ca_bundle;
pub use mutate::firewall_mutation;
pub use review::{CONFIRM_DELETE, EXPOSURE, GRANTABLE_ROLES, Lookup, review, verb};
pub use webhook::{
    MUTATING_WEBHOOKS, ServingCertificate, WEBHOOKS, ca_bundle, mutating_configuration,
    webhook_configuration,
};

/// The system controllers whose writes the guard never sees: they act for objects already
/// admitted (a managed CronJob's Jobs, a managed Deployment's pods, claims being bound) and
/// must keep working while the guard is down.
pub const SYSTEM_CONTROLLERS: [&str; 9] = [
    "generic-garbage-collector",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "persistent-volume-binder",
];

/// The user name of the operator's service account `account` in `namespace`.
#[must_use]
pub fn operator_service_account(namespace: &str, account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{account}")
}

/// Who the guard lets through, and what it checks Tenants against.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The operator's own user names.
    pub operator_users: Vec<String>,
    /// System controllers that must keep working (garbage collection, namespace deletion).
    pub exempt_users: Vec<String>,
    /// Groups allowed through, for break-glass access by the platform team. Empty by default.
    pub exempt_groups: Vec<String>,
    /// The network settings Tenants are validated against.
    pub network: NetworkConfig,
    /// The shortest `lifecycle.retention` a Tenant may ask for.
    pub min_retention: std::time::Duration,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            operator_users: vec![operator_service_account("enclave-system", MANAGER)],
            exempt_users: SYSTEM_CONTROLLERS
                .iter()
                .map(|c| format!("system:serviceaccount:kube-system:{c}"))
                // The controller manager without per-controller credentials.
                .chain(["system:kube-controller-manager".to_string()])
                .collect(),
            exempt_groups: vec![],
            network: NetworkConfig::default(),
            min_retention: std::time::Duration::from_secs(3600),
        }
    }
}

/// The guard's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Refuse it, saying why; `tenant` names the Tenant the object belongs to.
    Deny {
        /// For the requester.
        message: String,
        /// The Tenant the attempt was made against, if known.
        tenant: Option<String>,
    },
}

/// What the guard's HTTP handler needs.
#[derive(Clone)]
pub struct GuardState {
    /// The rules, replaced when the operator's configuration is reloaded.
    pub guard: tokio::sync::watch::Receiver<Arc<Guard>>,
    /// Records refused attempts on the Tenant.
    pub recorder: Recorder,
    /// Counts refused attempts.
    pub metrics: Arc<Metrics>,
    /// Reads what a decision needs (the pod of an exec).
    pub client: Option<kube::Client>,
    /// The namespaces' labels and the Tenants, kept by watches.
    pub caches: Option<Caches>,
    /// Answer only callers that presented a client certificate the TLS layer verified
    /// against [`GuardConfig::client_ca`] (the API server).
    pub require_client_certificate: bool,
}

/// What [`review`] needs from the API server for `request`; a failed read leaves it out (the
/// rules then fall back to what the request carries, and a subresource on an object not found
/// is refused by the API server anyway).
async fn look_up(
    client: Option<&kube::Client>,
    caches: Option<&Caches>,
    request: &AdmissionRequest<DynamicObject>,
) -> Lookup {
    use kube::api::{Api, ApiResource, GroupVersionKind};
    let (Some(client), Some(caches)) = (client, caches) else {
        return Lookup::default();
    };
    let namespace_labels = match &request.namespace {
        Some(namespace) => caches.namespace_labels(namespace).await.ok().flatten(),
        None => None,
    };
    let parent = match (request.sub_resource.as_deref(), &request.namespace) {
        (Some("scale" | "exec" | "attach" | "portforward"), Some(namespace)) => {
            let (group, version, kind) = match request.resource.resource.as_str() {
                "deployments" => ("apps", "v1", "Deployment"),
                "statefulsets" => ("apps", "v1", "StatefulSet"),
                "pods" => ("", "v1", "Pod"),
                _ => ("", "", ""),
            };
            if kind.is_empty() {
                None
            } else {
                let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
                Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
                    .get_opt(&request.name)
                    .await
                    .ok()
                    .flatten()
            }
        }
        _ => None,
    };
    // The tenant's spec, for the names its Ingresses may serve.
    let tenant = match (
        request.kind.kind.as_str(),
        namespace_labels
            .as_ref()
            .and_then(|l| l.get(labels::TENANT)),
    ) {
        ("Ingress", Some(name)) => caches
            .tenant(name)
            .await
            .ok()
            .flatten()
            .map(|t| (*t).clone()),
        _ => None,
    };
    Lookup {
        namespace_labels,
        parent,
        tenant,
    }
}

async fn validate(
    State(state): State<GuardState>,
    tls: Option<axum::Extension<Arc<axum_server::tls::TlsInfo>>>,
    Json(review_in): Json<AdmissionReview<DynamicObject>>,
) -> Result<Json<AdmissionReview<DynamicObject>>, (axum::http::StatusCode, &'static str)> {
    only_the_api_server(&state, tls)?;
    Ok(review_request(&state, review_in).await)
}

/// With `require_client_certificate`, refuses a caller that presented no client certificate
/// (the TLS layer verified any that was presented): the guard answers only the API server.
fn only_the_api_server(
    state: &GuardState,
    tls: Option<axum::Extension<Arc<axum_server::tls::TlsInfo>>>,
) -> Result<(), (axum::http::StatusCode, &'static str)> {
    let presented = tls.is_some_and(|info| !info.peer_certificates.is_empty());
    if state.require_client_certificate && !presented {
        tracing::warn!("admission review without the API server's client certificate: refused");
        return Err((
            axum::http::StatusCode::UNAUTHORIZED,
            "the guard answers only the API server",
        ));
    }
    Ok(())
}

/// The mutating webhook: sets the tenant's firewall on an Ingress as it is created or changed.
/// Refuses nothing (the validating webhook does); a malformed review is answered as invalid.
async fn mutate(
    State(state): State<GuardState>,
    tls: Option<axum::Extension<Arc<axum_server::tls::TlsInfo>>>,
    Json(review_in): Json<AdmissionReview<DynamicObject>>,
) -> Result<Json<AdmissionReview<DynamicObject>>, (axum::http::StatusCode, &'static str)> {
    only_the_api_server(&state, tls)?;
    let request: AdmissionRequest<DynamicObject> = match review_in.try_into() {
        Ok(request) => request,
        Err(error) => {
            return Ok(Json(
                AdmissionResponse::invalid(error.to_string()).into_review(),
            ));
        }
    };
    let response = AdmissionResponse::from(&request);
    let lookup = look_up(state.client.as_ref(), state.caches.as_ref(), &request).await;
    let guard = Arc::clone(&state.guard.borrow());
    let Some(patch) = firewall_mutation(&guard, &request, &lookup) else {
        return Ok(Json(response.into_review()));
    };
    tracing::info!(name = %request.name, namespace = ?request.namespace, "the firewall set on an Ingress");
    Ok(Json(match response.clone().with_patch(patch) {
        Ok(patched) => patched.into_review(),
        Err(error) => response.deny(error.to_string()).into_review(),
    }))
}

async fn review_request(
    state: &GuardState,
    review_in: AdmissionReview<DynamicObject>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review_in.try_into() {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "malformed admission review");
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let response = AdmissionResponse::from(&request);
    let lookup = look_up(state.client.as_ref(), state.caches.as_ref(), &request).await;
    let guard = Arc::clone(&state.guard.borrow());
    match review(&guard, &request, &lookup) {
        Verdict::Allow => Json(response.into_review()),
        Verdict::Deny { message, tenant } => {
            let user = request.user_info.username.clone().unwrap_or_default();
            let action = verb(&request.operation);
            tracing::warn!(%user, action, kind = %request.kind.kind, name = %request.name, "refused: {message}");
            state.metrics.denial(&request.kind.kind, action);
            // A dry run is an attempt too (a probe of what the guard lets through): it is on
            // record like the others, marked as such. The webhook declares `NoneOnDryRun`: the
            // Event is the trail, not a change to anything the request was about.
            if let Some(tenant) = tenant {
                record(&state.recorder, &tenant, &user, action, &request, &message).await;
            }
            let mut denied = response.deny(message);
            // Forbidden, like an RBAC refusal: the request was understood and is not allowed.
            denied.result.code = 403;
            denied.result.reason = "Forbidden".into();
            Json(denied.into_review())
        }
    }
}

/// The abuse-attempt trail: who tried what, on the Tenant.
async fn record(
    recorder: &Recorder,
    tenant: &str,
    user: &str,
    action: &str,
    request: &AdmissionRequest<DynamicObject>,
    message: &str,
) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(format!("{}/v1alpha1", enclave_crds::GROUP)),
        kind: Some("Tenant".into()),
        name: Some(tenant.to_string()),
        ..Default::default()
    };
    // The action, the object and the user tell attempts apart, so each stays its own Event
    // rather than joining a series under the first one's note: a second user repeating a
    // refused attempt is on record under their own name. (The recorder keys a series by the
    // related object; the user rides in its field path.)
    let object = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some(request.kind.kind.clone()),
        name: Some(request.name.clone()),
        namespace: request.namespace.clone(),
        field_path: Some(format!("attempt by {user}")),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "AttemptRefused".into(),
        note: Some(format!(
            "{user} tried to {action} {} {}{}: refused. {message}",
            request.kind.kind,
            request.name,
            if request.dry_run { " (dry run)" } else { "" }
        )),
        action: format!("Refuse{}", capitalised(action)),
        secondary: Some(object),
    };
    if let Err(error) = recorder.publish(&event, &reference).await {
        tracing::warn!(%error, "could not record refused attempt");
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Serves `/validate` (and the broker's endpoint) over `tls` on `addr` until `shutdown`
/// resolves. `tls` may be reloaded while it serves (a renewed certificate).
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: GuardState,
    broker: Option<crate::credentials::Broker>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let app = Router::new()
        .route(PATH, post(validate))
        .route(MUTATE_PATH, post(mutate))
        .with_state(state);
    let app = match broker {
        Some(broker) => app.merge(
            Router::new()
                .route(
                    crate::credentials::PATH,
                    axum::routing::get(crate::credentials::handle),
                )
                .with_state(Arc::new(broker)),
        ),
        None => app,
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    tracing::info!(%addr, "admission guard listening");
    axum_server::bind_rustls(addr, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;

/// Where the guard listens and how the API server reaches it.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Address the guard's TLS server binds.
    pub listen: SocketAddr,
    /// How the API server calls it: a URL (`https://127.0.0.1:9443/validate`) or a Service.
    pub client_config: WebhookClientConfig,
    /// The operator's namespace, where the broker finds backup passwords and credentials.
    pub namespace: String,
    /// Names in the serving certificate (the Service's DNS names, or 127.0.0.1).
    pub names: Vec<String>,
    /// The rules.
    pub guard: Guard,
    /// The CA of the client certificate the API server presents to webhooks (its
    /// `--admission-control-config-file`): when set, `/validate` answers only a caller with a
    /// certificate from it, so no one else can have an attempt recorded on a Tenant.
    pub client_ca: Option<String>,
    /// Where the serving certificate comes from.
    pub certificates: Certificates,
}

/// Where the guard's serving certificate comes from, and who keeps the webhook configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Certificates {
    /// Made at start, in memory; this process writes the whole webhook configuration with its
    /// `caBundle`. For one operator outside the cluster (`--guard-url`, the demo).
    #[default]
    Ephemeral,
    /// Kept in the Secret `secret` of the operator's namespace, shared by every replica and
    /// reloaded when it changes. The webhook configuration `webhook_configuration` is
    /// installed by the chart. When `issued_by_operator`, the first replica to start makes the
    /// Secret and the leader keeps the configuration's `caBundle` ([`keep_ca_bundle`]);
    /// otherwise cert-manager does both (a Certificate and its CA injector).
    Secret {
        /// The Secret's name.
        secret: String,
        /// The chart's ValidatingWebhookConfiguration.
        webhook_configuration: String,
        /// Whether the operator makes the certificate (else cert-manager).
        issued_by_operator: bool,
    },
}

/// Starts the guard with its serving certificate (made now, or kept in a Secret: see
/// [`Certificates`]) and, for an ephemeral certificate, points the API server at it with a
/// current `caBundle`. The guard runs until `shutdown` resolves.
///
/// # Errors
/// When the certificate cannot be made or read, or the webhook configuration cannot be
/// applied.
pub async fn start(
    client: kube::Client,
    config: GuardConfig,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<Started> {
    let reporter = kube::runtime::events::Reporter {
        controller: "enclave-guard".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let gateway = crate::cluster::Gateway::new(client.clone(), reporter, metrics.clone());
    let certificate = match &config.certificates {
        Certificates::Ephemeral => ServingCertificate::generate(&config.names)
            .map_err(|e| crate::Error::Certificate(e.to_string()))?,
        Certificates::Secret {
            secret,
            issued_by_operator,
            ..
        } => {
            certificate::load_or_issue(
                &gateway,
                &config.namespace,
                secret,
                &config.names,
                *issued_by_operator,
            )
            .await?
        }
    };
    // Every replica keeps its caches, leader or not: the guard answers on each.
    let caches = Caches::start(client.clone());
    let (rules, guard) = tokio::sync::watch::channel(Arc::new(config.guard.clone()));
    let state = GuardState {
        guard,
        recorder,
        metrics,
        client: Some(client.clone()),
        caches: Some(caches.clone()),
        require_client_certificate: config.client_ca.is_some(),
    };
    let ca_pem = certificate.ca_pem.clone();
    let listen = config.listen;
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(webhook::server_config(
        &certificate,
        config.client_ca.as_deref(),
    )?);
    if let Certificates::Secret { secret, .. } = &config.certificates {
        tokio::spawn(certificate::reload(
            client.clone(),
            config.namespace.clone(),
            secret.clone(),
            certificate.clone(),
            config.client_ca.clone(),
            tls.clone(),
        ));
    }
    let broker = crate::credentials::Broker {
        client: client.clone(),
        namespace: config.namespace.clone(),
        caches: caches.clone(),
    };
    // No answer from caches not yet filled: the port opens once they are.
    caches.synced().await;
    let server = tokio::spawn(serve(listen, tls, state, Some(broker), shutdown));
    // Wait until the port answers, so the API server never calls a guard not yet listening.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if config.certificates == Certificates::Ephemeral {
        let writer = gateway.writer(crate::error::Phase::Start, None);
        let validating = webhook_configuration(
            config.client_config.clone(),
            &ca_pem,
            &config.guard,
            &config.namespace,
        );
        webhook::apply_configuration(&client, &writer, &validating).await?;
        let mutating = mutating_configuration(
            config.client_config,
            &ca_pem,
            &config.guard,
            &config.namespace,
        );
        webhook::apply_configuration(&client, &writer, &mutating).await?;
        tracing::info!("admission guard configured");
    }
    Ok(Started {
        server,
        ca_pem,
        rules,
    })
}

/// The guard, started.
pub struct Started {
    /// Its server task.
    pub server: tokio::task::JoinHandle<crate::Result<()>>,
    /// The CA its certificate chains to: the webhook's `caBundle`, and what backup pods trust
    /// when they fetch their credentials.
    pub ca_pem: String,
    /// Replaces the rules it answers by: the operator sends the network settings of each
    /// configuration it loads, so the guard and the controllers judge Tenants alike.
    pub rules: tokio::sync::watch::Sender<Arc<Guard>>,
}

impl Started {
    /// Keeps the guard's network settings those of `configs`, the live configuration, until
    /// its sender is gone.
    pub fn follow(&self, mut configs: tokio::sync::watch::Receiver<crate::config::Config>) {
        let rules = self.rules.clone();
        tokio::spawn(async move {
            loop {
                let network = configs.borrow_and_update().network.clone();
                rules.send_modify(|guard| {
                    *guard = Arc::new(Guard {
                        network,
                        ..Guard::clone(guard)
                    });
                });
                if configs.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

impl GuardConfig {
    /// Where pods reach the credentials broker: the guard's URL or Service, at
    /// [`crate::credentials::PATH`].
    #[must_use]
    pub fn credentials_url(&self) -> Option<String> {
        if let Some(url) = &self.client_config.url {
            let base = url.strip_suffix(PATH).unwrap_or(url);
            return Some(format!("{base}{}", crate::credentials::PATH));
        }
        let service = self.client_config.service.as_ref()?;
        Some(format!(
            "https://{}.{}.svc:{}{}",
            service.name,
            service.namespace,
            service.port.unwrap_or(443),
            crate::credentials::PATH
        ))
    }
}
