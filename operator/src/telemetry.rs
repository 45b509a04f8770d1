//! Logs, metrics and health: JSON logs with the tenant on every line, Prometheus metrics, and
//! `/livez`, `/readyz`, `/metrics` on the admin port.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Starts JSON logging to stderr, filtered by `RUST_LOG` (else at `default_level`).
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A second call (tests, the demo) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Label of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`].
    pub kind: String,
}

/// Label of the write counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind of object written.
    pub resource: String,
    /// create, update or delete.
    pub action: String,
}

/// Label of per-tenant metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant's name.
    pub tenant: String,
}

/// The operator's metrics.
pub struct Metrics {
    /// When each tenant's serving certificate expires, as a Unix time.
    pub certificate_expiry: Family<TenantLabels, Gauge>,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed, by error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations, in seconds.
    pub duration: Histogram,
    /// Writes made to managed objects.
    pub writes: Family<WriteLabels, Counter>,
    /// Attempts refused by the admission guard.
    pub denials: Family<WriteLabels, Counter>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let writes = Family::<WriteLabels, Counter>::default();
        let denials = Family::<WriteLabels, Counter>::default();
        let certificate_expiry = Family::<TenantLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("enclave");
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When each tenant's serving certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        registry.register(
            "reconciles",
            "Tenant reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Tenant reconciles that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a tenant reconcile took",
            duration.clone(),
        );
        registry.register("writes", "Writes made to managed objects", writes.clone());
        registry.register(
            "admission_denials",
            "Attempts on managed objects refused by the admission guard",
            denials.clone(),
        );
        Self {
            certificate_expiry,
            reconciles,
            errors,
            duration,
            writes,
            denials,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile.
    pub fn error(&self, error: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Records when a tenant's serving certificate expires.
    pub fn certificate_expires(&self, tenant: &str, not_after: k8s_openapi::jiff::Timestamp) {
        self.certificate_expiry
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .set(not_after.as_second());
    }

    /// Counts a write.
    pub fn write(&self, resource: &str, action: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                resource: resource.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    /// Counts an attempt the admission guard refused.
    pub fn denial(&self, resource: &str, action: &str) {
        self.denials
            .get_or_create(&WriteLabels {
                resource: resource.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    /// The metrics in Prometheus' text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records how long a reconcile took.
    pub fn observe(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
    }
}

/// What the admin endpoints report.
#[derive(Clone, Default)]
pub struct Health {
    /// Set once the Tenant cache has synced.
    pub ready: Arc<AtomicBool>,
    /// The metrics served on `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// Serves `/livez`, `/readyz` and `/metrics` on `addr` until `shutdown` resolves.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

async fn metrics(State(health): State<Health>) -> String {
    health.metrics.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_counters_by_label() {
        let m = Metrics::default();
        m.reconciles.inc();
        m.write("Namespace", "create");
        m.error(&crate::Error::MissingMetadata("uid"));
        let text = m.render();
        assert!(text.contains("enclave_reconciles_total 1"), "{text}");
        assert!(
            text.contains(r#"enclave_writes_total{resource="Namespace",action="create"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"enclave_reconcile_errors_total{kind="metadata"} 1"#),
            "{text}"
        );
    }
}
