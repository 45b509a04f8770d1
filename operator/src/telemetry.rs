//! Logs, metrics and health: JSON logs with the tenant on every line, Prometheus metrics, and
//! `/livez`, `/readyz`, `/metrics` on the admin port.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use enclave_crds::{Phase, TenantStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// What the per-tenant gauges show of one tenant, from the status its last reconcile computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TenantState {
    phase: Option<Phase>,
    /// Each condition's type and status (`true`, `false` or `unknown`).
    conditions: Vec<(String, &'static str)>,
    redundancy_lost: bool,
    last_backup: Option<i64>,
    /// Only while a purge is pending: cleared once the purge is verified.
    purge_after: Option<i64>,
    certificate_renewal: Option<i64>,
    /// The types of the open incidents, with their severity.
    incidents: Vec<(String, String)>,
}

/// Every phase, in the order the gauges list them.
const PHASES: [Phase; 7] = [
    Phase::Pending,
    Phase::Ready,
    Phase::Degraded,
    Phase::Blocked,
    Phase::Decommissioning,
    Phase::Suspended,
    Phase::Purged,
];

/// The phase as `status.phase` spells it.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Ready => "Ready",
        Phase::Degraded => "Degraded",
        Phase::Blocked => "Blocked",
        Phase::Decommissioning => "Decommissioning",
        Phase::Suspended => "Suspended",
        Phase::Purged => "Purged",
    }
}

impl TenantState {
    fn of(status: &TenantStatus) -> Self {
        let condition_status = |status: &str| match status {
            "True" => "true",
            "False" => "false",
            _ => "unknown",
        };
        Self {
            phase: status.phase,
            conditions: status
                .conditions
                .iter()
                .map(|c| (c.type_.clone(), condition_status(&c.status)))
                .collect(),
            // Some workload runs short of N+1 (`RedundancyLost`) or of N (`Unavailable`).
            redundancy_lost: status
                .conditions
                .iter()
                .any(|c| c.type_ == crate::status::WORKLOADS_REDUNDANT && c.status == "False"),
            last_backup: status
                .backup
                .as_ref()
                .and_then(|b| b.last_successful_time.as_ref())
                .map(|t| t.0.as_second()),
            purge_after: status
                .purge_after
                .as_ref()
                .filter(|_| status.purged_at.is_none())
                .map(|t| t.0.as_second()),
            certificate_renewal: status
                .certificate
                .as_ref()
                .and_then(|c| c.renewal_time.as_ref())
                .map(|t| t.0.as_second()),
            incidents: status
                .incidents
                .iter()
                .filter(|i| i.resolved_at.is_none())
                .map(|i| (i.type_.clone(), i.severity.clone()))
                .collect(),
        }
    }
}

/// The per-tenant gauges, rendered from each tenant's last [`TenantState`] at every scrape: a
/// tenant forgotten leaves no series behind, nor does a condition that left its status.
#[derive(Debug, Default)]
struct TenantGauges(Mutex<BTreeMap<String, TenantState>>);

impl TenantGauges {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantState>> {
        // A panic elsewhere cannot leave a map half-written: use it as it is.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One gauge family of the per-tenant gauges: its name, help, and each tenant's series.
fn encode_gauges<'a, L: EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, Gauge::<i64>::TYPE)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

impl Collector for TenantGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tenants = self.lock();
        encode_gauges(
            &mut encoder,
            "tenant_phase",
            "1 for the tenant's current phase (status.phase), 0 for the others",
            tenants.iter().flat_map(|(tenant, state)| {
                PHASES.iter().map(move |&phase| {
                    (
                        [("tenant", tenant.as_str()), ("phase", phase_name(phase))],
                        i64::from(state.phase == Some(phase)),
                    )
                })
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "tenant_condition",
            "1 for each status condition's current status (true, false or unknown), 0 for the others",
            tenants.iter().flat_map(|(tenant, state)| {
                state
                    .conditions
                    .iter()
                    .flat_map(move |(condition, current)| {
                        ["true", "false", "unknown"].into_iter().map(move |status| {
                            (
                                [
                                    ("tenant", tenant.as_str()),
                                    ("condition", condition.as_str()),
                                    ("status", status),
                                ],
                                i64::from(*current == status),
                            )
                        })
                    })
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "tenant_redundancy_lost",
            "1 while some workload of the tenant runs short of N+1 available replicas (WorkloadsRedundant is False)",
            tenants.iter().map(|(tenant, state)| {
                (
                    [("tenant", tenant.as_str())],
                    i64::from(state.redundancy_lost),
                )
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "backup_last_success_timestamp_seconds",
            "When the tenant's last backup succeeded (Unix time, status.backup.lastSuccessfulTime)",
            tenants.iter().filter_map(|(tenant, state)| {
                Some(([("tenant", tenant.as_str())], state.last_backup?))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "tenant_purge_after_timestamp_seconds",
            "When a deleted or decommissioned tenant's data is due to be purged (Unix time, status.purgeAfter), while the purge is pending",
            tenants.iter().filter_map(|(tenant, state)| {
                Some(([("tenant", tenant.as_str())], state.purge_after?))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "certificate_renewal_timestamp_seconds",
            "When the tenant's serving certificate is due for renewal (Unix time, status.certificate.renewalTime)",
            tenants.iter().filter_map(|(tenant, state)| {
                Some(([("tenant", tenant.as_str())], state.certificate_renewal?))
            }),
        )?;
        encode_gauges(
            &mut encoder,
            "tenant_incident_open",
            "1 for each open incident of the tenant (status.incidents), by type and severity: what alerting routes to the tenant's contacts",
            tenants.iter().flat_map(|(tenant, state)| {
                state.incidents.iter().map(move |(type_, severity)| {
                    (
                        [
                            ("tenant", tenant.as_str()),
                            ("type", type_.as_str()),
                            ("severity", severity.as_str()),
                        ],
                        1,
                    )
                })
            }),
        )?;
        Ok(())
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
