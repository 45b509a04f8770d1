//! Logs, metrics and health: JSON logs with the tenant on every line, Prometheus metrics, and
//! `/livez`, `/readyz`, `/metrics` on the admin port.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use enclave_crds::TenantStatus;
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

mod tenants;

use tenants::{TenantGauges, TenantState};

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
    /// 1 while this replica holds the leader lease, else 0.
    pub leader: Gauge,
    /// Each tenant's state as its last reconcile computed it (phase, conditions, deadlines).
    tenants: Arc<TenantGauges>,
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
        let leader = Gauge::default();
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
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let tenants = Arc::new(TenantGauges::default());
        registry.register_collector(Box::new(tenants.clone()));
        Self {
            certificate_expiry,
            reconciles,
            errors,
            duration,
            writes,
            denials,
            leader,
            tenants,
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

    /// Records what the status computed for `tenant` says, for the per-tenant gauges
    /// (`enclave_tenant_phase`, `enclave_tenant_condition`, `enclave_tenant_redundancy_lost`,
    /// `enclave_backup_last_success_timestamp_seconds`,
    /// `enclave_tenant_purge_after_timestamp_seconds`,
    /// `enclave_certificate_renewal_timestamp_seconds`). Called once per reconcile.
    pub fn tenant_state(&self, tenant: &str, status: &TenantStatus) {
        let state = TenantState::of(status);
        self.tenants.lock().insert(tenant.to_string(), state);
        if status.certificate.is_none() {
            // `spec.tls` removed: no certificate left to expire.
            self.certificate_expiry.remove(&TenantLabels {
                tenant: tenant.to_string(),
            });
        }
    }

    /// Drops every series of `tenant`: it is gone (purged and released).
    pub fn forget_tenant(&self, tenant: &str) {
        self.tenants.lock().remove(tenant);
        self.certificate_expiry.remove(&TenantLabels {
            tenant: tenant.to_string(),
        });
    }

    /// Sets `enclave_leader`; a replica that is no longer the leader stops reporting tenants
    /// (another replica reconciles them now, and reports them).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            self.tenants.lock().clear();
            self.certificate_expiry.clear();
        }
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
    /// Set once the Tenant cache has synced (on the leader).
    pub ready: Arc<AtomicBool>,
    /// Set while the admission guard and the broker answer here: a replica waiting for the
    /// leader lease is ready too, since every replica serves them.
    pub serving: Arc<AtomicBool>,
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
    if health.ready.load(Ordering::Relaxed) || health.serving.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "neither serving the guard nor caches synced",
        )
    }
}

async fn metrics(State(health): State<Health>) -> String {
    health.metrics.render()
}

#[cfg(test)]
mod tests {
    use super::tenants::PHASES;
    use super::*;
    use enclave_crds::Phase;

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

    fn condition(
        type_: &str,
        status: &str,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: "Test".to_string(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    fn time(second: i64) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
        k8s_openapi::jiff::Timestamp::from_second(second)
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
    }

    #[test]
    fn tenant_gauges_follow_the_status() {
        let m = Metrics::default();
        let status = TenantStatus {
            phase: Some(Phase::Degraded),
            conditions: vec![
                condition("Ready", "True"),
                condition("WorkloadsRedundant", "False"),
                condition("BackupHealthy", "Unknown"),
            ],
            backup: Some(enclave_crds::BackupStatus {
                last_successful_time: time(1_700_000_000),
                last_failure_time: None,
            }),
            certificate: Some(enclave_crds::CertificateStatus {
                renewal_time: time(1_800_000_000),
                ..Default::default()
            }),
            purge_after: time(1_900_000_000),
            incidents: vec![enclave_crds::Incident {
                id: "RedundancyLost-1".into(),
                type_: "RedundancyLost".into(),
                severity: "warning".into(),
                opened_at: time(1).expect("time"),
                notified_at: None,
                resolved_at: None,
                summary: "web: 2 of 3".into(),
                contacts: vec![],
            }],
            ..Default::default()
        };
        m.certificate_expires("acme", k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        m.tenant_state("acme", &status);
        let text = m.render();
        for line in [
            r#"enclave_certificate_expiry_timestamp_seconds{tenant="acme"} 0"#,
            r#"enclave_tenant_phase{tenant="acme",phase="Degraded"} 1"#,
            r#"enclave_tenant_phase{tenant="acme",phase="Ready"} 0"#,
            r#"enclave_tenant_phase{tenant="acme",phase="Purged"} 0"#,
            r#"enclave_tenant_condition{tenant="acme",condition="Ready",status="true"} 1"#,
            r#"enclave_tenant_condition{tenant="acme",condition="Ready",status="false"} 0"#,
            r#"enclave_tenant_condition{tenant="acme",condition="WorkloadsRedundant",status="false"} 1"#,
            r#"enclave_tenant_condition{tenant="acme",condition="BackupHealthy",status="unknown"} 1"#,
            r#"enclave_tenant_redundancy_lost{tenant="acme"} 1"#,
            r#"enclave_backup_last_success_timestamp_seconds{tenant="acme"} 1700000000"#,
            r#"enclave_certificate_renewal_timestamp_seconds{tenant="acme"} 1800000000"#,
            r#"enclave_tenant_purge_after_timestamp_seconds{tenant="acme"} 1900000000"#,
            r#"enclave_tenant_incident_open{tenant="acme",type="RedundancyLost",severity="warning"} 1"#,
            "# TYPE enclave_tenant_phase gauge",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(
            text.matches("enclave_tenant_phase{").count(),
            PHASES.len(),
            "{text}"
        );

        // The next reconcile: ready, the backup and TLS gone from the spec, the purge done.
        let status = TenantStatus {
            phase: Some(Phase::Ready),
            conditions: vec![
                condition("Ready", "True"),
                condition("WorkloadsRedundant", "True"),
            ],
            purge_after: time(1_900_000_000),
            purged_at: time(1_900_000_100),
            ..Default::default()
        };
        m.tenant_state("acme", &status);
        let text = m.render();
        assert!(
            text.contains(r#"enclave_tenant_phase{tenant="acme",phase="Ready"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"enclave_tenant_redundancy_lost{tenant="acme"} 0"#),
            "{text}"
        );
        for gone in [
            "BackupHealthy",
            "enclave_backup_last_success_timestamp_seconds{",
            "enclave_certificate_renewal_timestamp_seconds{",
            "enclave_tenant_purge_after_timestamp_seconds{",
            "enclave_certificate_expiry_timestamp_seconds{",
        ] {
            assert!(!text.contains(gone), "{gone} still in:\n{text}");
        }
    }

    #[test]
    fn a_forgotten_tenant_leaves_no_series() {
        let m = Metrics::default();
        let status = TenantStatus {
            phase: Some(Phase::Ready),
            conditions: vec![condition("Ready", "True")],
            ..Default::default()
        };
        m.tenant_state("acme", &status);
        m.tenant_state("globex", &status);
        m.certificate_expires("acme", k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        m.forget_tenant("acme");
        let text = m.render();
        assert!(!text.contains(r#"tenant="acme""#), "{text}");
        assert!(
            text.contains(r#"enclave_tenant_phase{tenant="globex",phase="Ready"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn leader_gauge_and_a_lost_lease() {
        let m = Metrics::default();
        assert!(m.render().contains("enclave_leader 0"));
        m.set_leader(true);
        m.tenant_state("acme", &TenantStatus::default());
        let text = m.render();
        assert!(text.contains("enclave_leader 1"), "{text}");
        assert!(
            text.contains(r#"enclave_tenant_redundancy_lost{tenant="acme"} 0"#),
            "{text}"
        );
        m.set_leader(false);
        let text = m.render();
        assert!(text.contains("enclave_leader 0"), "{text}");
        assert!(!text.contains(r#"tenant="acme""#), "{text}");
    }
}
