//! `StorageReplicated`, the retained volumes and `status.usage`: claims against their replicas
//! (R8), quotas summed over the tenant's zones (R11).

use super::{
    BTreeMap, PersistentVolumeClaim, ResourceQuota, RetainedVolume, StorageClass, TenantStatus,
    Timestamp, degrading_condition,
};
/// The `StorageReplicated` condition type.
pub const STORAGE_REPLICATED: &str = "StorageReplicated";

/// How the claims stand against the replicas the spec asks (R8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    /// True when every claim is Bound on a class giving at least its replicas.
    pub ok: bool,
    /// `Replicated`, `Pending` or `WrongClass`.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// Checks that every wanted claim (`(namespace, name, replicas)`) is Bound on an Enclave class
/// giving at least `replicas` copies.
#[must_use]
pub fn replication(
    wanted: &[(String, String, i32)],
    claims: &[PersistentVolumeClaim],
    classes: &[StorageClass],
) -> Replication {
    let mut pending = Vec::new();
    let mut wrong = Vec::new();
    for (namespace, name, replicas) in wanted {
        let claim = claims.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(name)
        });
        let Some(claim) = claim else {
            pending.push(format!("{namespace}/{name} (missing)"));
            continue;
        };
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Bound") {
            pending.push(format!(
                "{namespace}/{name} ({})",
                phase.unwrap_or("Pending")
            ));
            continue;
        }
        let class = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref());
        let gives = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == class)
            .and_then(|c| {
                c.metadata
                    .labels
                    .as_ref()?
                    .get(crate::desired::storage::REPLICAS)
            })
            .and_then(|r| r.parse::<i32>().ok());
        if gives.is_none_or(|g| g < *replicas) {
            wrong.push(format!(
                "{namespace}/{name} (class {} gives {} replicas, {replicas} required)",
                class.unwrap_or("none"),
                gives.map_or_else(|| "unknown".to_string(), |g| g.to_string())
            ));
        }
    }
    if !wrong.is_empty() {
        Replication {
            ok: false,
            reason: "WrongClass",
            message: wrong.join("; "),
        }
    } else if !pending.is_empty() {
        Replication {
            ok: false,
            reason: "Pending",
            message: format!("not bound yet: {}", pending.join(", ")),
        }
    } else {
        Replication {
            ok: true,
            reason: "Replicated",
            message: format!(
                "{} volume claim(s) bound with their required replicas",
                wanted.len()
            ),
        }
    }
}

/// Adds the workloads' images, the retained volumes and `StorageReplicated` (when the tenant
/// has volumes); a ready tenant whose storage is short is `Degraded`.
pub fn with_storage(
    status: &mut TenantStatus,
    replication: Option<&Replication>,
    retained: Vec<RetainedVolume>,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    status.retained_volumes = retained;
    let Some(replication) = replication else {
        return;
    };
    degrading_condition(
        status,
        STORAGE_REPLICATED,
        (replication.ok, replication.reason, &replication.message),
        previous,
        now,
    );
}

/// Tenant-wide usage from the quotas of its namespaces: `used/hard` per resource.
#[must_use]
pub fn usage(quotas: &[ResourceQuota]) -> BTreeMap<String, String> {
    let mut used: BTreeMap<String, i128> = BTreeMap::new();
    let mut hard: BTreeMap<String, i128> = BTreeMap::new();
    for status in quotas.iter().filter_map(|q| q.status.as_ref()) {
        for (totals, values) in [(&mut used, &status.used), (&mut hard, &status.hard)] {
            for (resource, quantity) in values.iter().flatten() {
                *totals.entry(resource.clone()).or_default() +=
                    crate::units::quantity(&quantity.0).unwrap_or_default();
            }
        }
    }
    hard.iter()
        .map(|(resource, limit)| {
            let spent = used.get(resource).copied().unwrap_or_default();
            (
                resource.clone(),
                format!(
                    "{}/{}",
                    format_quantity(resource, spent),
                    format_quantity(resource, *limit)
                ),
            )
        })
        .collect()
}

/// A quantity in nano units, written as people read it: bytes with binary suffixes, CPU in
/// cores or millicores, counts as numbers.
fn format_quantity(resource: &str, nanos: i128) -> String {
    const NANO: i128 = 1_000_000_000;
    if resource.contains("memory") || resource.contains("storage") {
        let bytes = nanos / NANO;
        for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            if bytes != 0 && bytes % (1_i128 << shift) == 0 {
                return format!("{}{suffix}", bytes >> shift);
            }
        }
        return bytes.to_string();
    }
    if nanos % NANO == 0 {
        (nanos / NANO).to_string()
    } else {
        format!("{}m", nanos / 1_000_000)
    }
}
