//! `WorkloadsRedundant` and `status.workloads`: each workload's replicas against N+1 (R15).

use super::{
    Deployment, PodTemplateSpec, StatefulSet, TenantStatus, Timestamp, WorkloadStatus,
    degrading_condition,
};
/// The `WorkloadsRedundant` condition type.
pub const WORKLOADS_REDUNDANT: &str = "WorkloadsRedundant";

/// How the workloads stand against N+1 (R15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redundancy {
    /// Workloads with N+1 replicas available.
    pub redundant: usize,
    /// Workloads declared.
    pub total: usize,
    /// `Redundant`, `RedundancyLost` (some at N: still serving) or `Unavailable` (some below N).
    pub reason: &'static str,
    /// Which workloads are short, and by how much.
    pub message: String,
}

/// What the API server reports of the controller running one workload (a Deployment or a
/// StatefulSet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Its namespace.
    pub namespace: String,
    /// Its name: the workload's.
    pub name: String,
    /// Its zone label.
    pub zone: Option<String>,
    /// The image of its pod template.
    pub image: String,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Replicas available.
    pub available: i32,
}

fn template_image(template: &PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

impl Observed {
    /// From a Deployment.
    #[must_use]
    pub fn of_deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        Self::of(
            &d.metadata,
            spec.map(|s| (&s.template, s.replicas)),
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.updated_replicas),
            status.and_then(|s| s.available_replicas),
        )
    }

    /// From a StatefulSet.
    #[must_use]
    pub fn of_stateful_set(s: &StatefulSet) -> Self {
        let spec = s.spec.as_ref();
        let status = s.status.as_ref();
        Self::of(
            &s.metadata,
            spec.map(|s| (&s.template, s.replicas)),
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.updated_replicas),
            status.and_then(|s| s.available_replicas),
        )
    }

    /// What either controller reports: its metadata, pod template and replicas wanted, and
    /// replicas updated and available.
    ///
    /// Until the controller has observed the current generation, its `updatedReplicas` counts
    /// the replicas of the template before: none is known to run the current one yet, so a
    /// rollout just written is never reported as done.
    fn of(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        spec: Option<(&PodTemplateSpec, Option<i32>)>,
        observed_generation: Option<i64>,
        updated: Option<i32>,
        available: Option<i32>,
    ) -> Self {
        let current = observed_generation.unwrap_or(0) >= meta.generation.unwrap_or(0);
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            zone: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::labels::ZONE).cloned()),
            image: spec.map(|(t, _)| template_image(t)).unwrap_or_default(),
            desired: spec.and_then(|(_, r)| r).unwrap_or(1),
            updated: if current { updated.unwrap_or(0) } else { 0 },
            available: available.unwrap_or(0),
        }
    }

    fn runs(&self, workload: &enclave_crds::Workload) -> bool {
        // The zone label, exactly: a namespace suffix would match `t-dmz` and `t-x-dmz` alike.
        self.name == workload.name
            && match &self.zone {
                Some(zone) => *zone == workload.zone,
                None => self.namespace.ends_with(&format!("-{}", workload.zone)),
            }
    }
}

/// The image and replica counts of each declared workload.
#[must_use]
pub fn workload_statuses(
    workloads: &[enclave_crds::Workload],
    observed: &[Observed],
) -> Vec<WorkloadStatus> {
    workloads
        .iter()
        .filter_map(|w| {
            let o = observed.iter().find(|o| o.runs(w))?;
            Some(WorkloadStatus {
                name: w.name.clone(),
                zone: w.zone.clone(),
                image: o.image.clone(),
                desired: o.desired,
                updated: o.updated,
                available: o.available,
            })
        })
        .collect()
}

/// Compares each workload's available replicas with its capacity N.
#[must_use]
pub fn redundancy(workloads: &[enclave_crds::Workload], observed: &[Observed]) -> Redundancy {
    let mut short = Vec::new();
    let mut below = false;
    let mut redundant = 0;
    for workload in workloads {
        let available = observed
            .iter()
            .find(|o| o.runs(workload))
            .map_or(0, |o| o.available);
        if available > workload.capacity {
            redundant += 1;
        } else {
            below |= available < workload.capacity;
            short.push(format!(
                "{}: {available} available of {} (capacity {})",
                workload.name,
                workload.capacity + 1,
                workload.capacity
            ));
        }
    }
    let reason = if short.is_empty() {
        "Redundant"
    } else if below {
        "Unavailable"
    } else {
        "RedundancyLost"
    };
    let message = if short.is_empty() {
        format!("{redundant} workload(s) run N+1")
    } else {
        short.join("; ")
    };
    Redundancy {
        redundant,
        total: workloads.len(),
        reason,
        message,
    }
}

/// Adds the `WorkloadsRedundant` condition and the ready count; a ready tenant whose workloads
/// are short is `Degraded`.
pub fn with_redundancy(
    status: &mut TenantStatus,
    redundancy: &Redundancy,
    previous: Option<&TenantStatus>,
    now: Timestamp,
) {
    status.ready_workloads = Some(format!("{}/{}", redundancy.redundant, redundancy.total));
    if redundancy.total == 0 {
        return;
    }
    let ok = redundancy.reason == "Redundant";
    degrading_condition(
        status,
        WORKLOADS_REDUNDANT,
        (ok, redundancy.reason, &redundancy.message),
        previous,
        now,
    );
}
