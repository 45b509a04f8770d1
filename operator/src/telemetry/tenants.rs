//! The per-tenant gauges behind the chart's alerts: each tenant's phase, conditions,
//! redundancy, last backup, purge deadline, certificate renewal and open incidents, rendered
//! at every scrape from the status its last reconcile computed.

use enclave_crds::{Phase, TenantStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// What the per-tenant gauges show of one tenant, from the status its last reconcile computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TenantState {
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
pub(super) const PHASES: [Phase; 7] = [
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
    pub(super) fn of(status: &TenantStatus) -> Self {
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
pub(super) struct TenantGauges(Mutex<BTreeMap<String, TenantState>>);

impl TenantGauges {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TenantState>> {
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
