//! The compliance report: for each promise of the security policy (R1..R17, in the customer's
//! words), whether it is kept now and the evidence, read from the Tenant's spec and status.
//! Pure, and free of the clock: the operator publishes it in every zone (`enclave-report`, so
//! a tenant's own admins read it with their RBAC) without a write while nothing changes, and
//! `kubectl enclave report` renders it, ages included, at the time it is read.

use enclave_crds::{Phase, Tenant, TenantStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};

mod promises;
mod render;
use promises::Facts;
pub use promises::{MAX_EVIDENCE, MAX_LINE};
pub use render::{age, markdown, text};

/// The name of the ConfigMap holding the report in each zone, under [`KEY`].
pub const NAME: &str = "enclave-report";
/// The entry of [`NAME`] holding the report as JSON.
pub const KEY: &str = "report.json";

/// Whether a promise holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Kept now, with the evidence.
    Kept,
    /// Not kept now: the evidence says what is wrong.
    Broken,
    /// Nothing of the tenant is concerned (no volume to replicate).
    NotApplicable,
    /// Cannot be judged from what the operator sees: `why` says who can.
    Unknown,
}

/// One promise of the policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Promise {
    /// `R1`..`R17` of the requirements.
    pub id: String,
    /// The promise, in the customer's words.
    pub promise: String,
    /// Whether it holds.
    pub verdict: Verdict,
    /// Why the verdict: what is wrong, or why it cannot be judged.
    pub why: String,
    /// The live evidence.
    pub evidence: Vec<String>,
}

/// The report of one tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The Tenant's name.
    pub tenant: String,
    /// The customer's name (`spec.displayName`).
    pub display_name: Option<String>,
    /// The tenant's phase.
    pub phase: Option<Phase>,
    /// The generation of the spec the status describes.
    pub observed_generation: Option<i64>,
    /// Kept promises over judged ones (`15/17`).
    pub summary: String,
    /// Every promise, R1 first.
    pub promises: Vec<Promise>,
}

/// The report of `tenant`, from its spec and status.
#[must_use]
pub fn report(tenant: &Tenant) -> Report {
    let empty = TenantStatus::default();
    let status = tenant.status.as_ref().unwrap_or(&empty);
    let facts = Facts { tenant, status };
    let promises = vec![
        facts.https(),
        facts.access(),
        Facts::traceability(),
        facts.security_options(),
        facts.password_hashes(),
        facts.zones(),
        facts.patches(),
        facts.replicated_storage(),
        facts.encryption(),
        facts.backups(),
        facts.separation(),
        facts.export(),
        facts.destruction(),
        facts.incidents(),
        facts.redundancy(),
        facts.exposure_report(),
        facts.internet_ports(),
    ];
    let kept = promises
        .iter()
        .filter(|p| p.verdict == Verdict::Kept)
        .count();
    let judged = promises
        .iter()
        .filter(|p| matches!(p.verdict, Verdict::Kept | Verdict::Broken))
        .count();
    Report {
        tenant: tenant.metadata.name.clone().unwrap_or_default(),
        display_name: tenant.spec.display_name.clone(),
        phase: status.phase,
        observed_generation: status.observed_generation,
        summary: format!("{kept}/{judged} kept"),
        promises,
    }
}

/// The report in a ConfigMap ([`NAME`]) in every zone: read by the tenant's own admins with
/// the RBAC of their namespaces, and kept from their edits by the guard like every managed
/// object.
#[must_use]
pub fn config_maps(tenant: &Tenant, identity: &crate::desired::Identity) -> Vec<ConfigMap> {
    let json = serde_json::to_string_pretty(&report(tenant)).unwrap_or_default();
    let data = std::collections::BTreeMap::from([(KEY.to_string(), json)]);
    crate::desired::per_zone_config_maps(tenant, identity, NAME, &data)
}

#[cfg(test)]
mod tests;
