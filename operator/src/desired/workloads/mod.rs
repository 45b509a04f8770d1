//! N+1 workloads (R15): each `spec.workloads[]` entry becomes a Deployment of N+1 replicas
//! (a StatefulSet when it mounts a `perReplica` volume) spread across nodes and zones, a
//! PodDisruptionBudget keeping N available, and a Service for its ports, all under the
//! restricted security context.

use super::{Identity, Invalid, storage};
use crate::desired::network::protocol;
use enclave_crds::{Tenant, Workload};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label naming the workload a pod belongs to.
pub const WORKLOAD: &str = "enclave.dev/workload";
/// The scratch space mounted at `/tmp` (a read-only root still needs one); no volume of the
/// spec may take this name.
pub const SCRATCH: &str = "tmp";
/// Prefix of an image named by the operator's configuration: `default:<key>`.
pub const DEFAULT_IMAGE: &str = "default:";

/// The objects of one workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadObjects {
    /// N+1 replicas.
    pub deployments: Vec<Deployment>,
    /// N+1 replicas, each with its own claim of every `perReplica` volume it mounts.
    pub stateful_sets: Vec<StatefulSet>,
    /// Keeps N available through voluntary disruptions.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The workload's ports.
    pub services: Vec<Service>,
}

/// Mounts the serving certificate's Secret into every workload of `namespaces` (at
/// [`crate::desired::tls::MOUNT_PATH`], read-only) and stamps its serial on the pod template, so
/// that a renewed certificate rolls the workload one pod at a time, like any other change.
pub fn mount_certificate(objects: &mut WorkloadObjects, namespaces: &[String], serial: &str) {
    use crate::desired::tls::{MOUNT_PATH, SERIAL_ANNOTATION, SERVING_SECRET};
    let templates = objects
        .deployments
        .iter_mut()
        .filter(|d| {
            d.metadata
                .namespace
                .as_ref()
                .is_some_and(|n| namespaces.contains(n))
        })
        .filter_map(|d| d.spec.as_mut().map(|s| &mut s.template))
        .chain(
            objects
                .stateful_sets
                .iter_mut()
                .filter(|d| {
                    d.metadata
                        .namespace
                        .as_ref()
                        .is_some_and(|n| namespaces.contains(n))
                })
                .filter_map(|d| d.spec.as_mut().map(|s| &mut s.template)),
        );
    for template in templates {
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SERIAL_ANNOTATION.into(), serial.into());
        let Some(pod) = template.spec.as_mut() else {
            continue;
        };
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: SERVING_SECRET.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(SERVING_SECRET.into()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        for container in &mut pod.containers {
            container
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(VolumeMount {
                    name: SERVING_SECRET.into(),
                    mount_path: MOUNT_PATH.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
        }
    }
}

/// N+1 while the tenant runs, none while it is suspended, decommissioned or deleted.
#[must_use]
pub fn replicas(tenant: &Tenant, workload: &Workload) -> i32 {
    if tenant.is_running() {
        workload.capacity + 1
    } else {
        0
    }
}

/// The image a workload runs: its own, or the operator's default for `default:<key>`.
///
/// # Errors
/// [`Invalid`] when the key is not in the operator's configuration.
pub fn image(workload: &Workload, images: &BTreeMap<String, String>) -> Result<String, Invalid> {
    match workload.image.strip_prefix(DEFAULT_IMAGE) {
        None => Ok(workload.image.clone()),
        Some(key) => images.get(key).cloned().ok_or_else(|| Invalid {
            reason: "UnknownImage",
            message: format!(
                "workload {}: image {} names no default image of the operator's configuration (known: {})",
                workload.name,
                workload.image,
                images.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// The Deployments, PodDisruptionBudgets and Services of every workload.
///
/// # Errors
/// [`Invalid`] when a workload names an unknown default image.
pub fn workload_objects(
    tenant: &Tenant,
    identity: &Identity,
    images: &BTreeMap<String, String>,
) -> Result<WorkloadObjects, Invalid> {
    let mut objects = WorkloadObjects::default();
    for workload in &tenant.spec.workloads {
        let image = image(workload, images)?;
        let mut meta = identity.zone_object(tenant, &workload.zone, &workload.name);
        let mut pod_labels = BTreeMap::from([
            (super::labels::TENANT_UID.to_string(), identity.uid.clone()),
            (WORKLOAD.to_string(), workload.name.clone()),
        ]);
        if let Some(labels) = &mut meta.labels {
            labels.insert(WORKLOAD.to_string(), workload.name.clone());
            pod_labels.extend(labels.clone());
        }
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([
                (super::labels::TENANT_UID.to_string(), identity.uid.clone()),
                (WORKLOAD.to_string(), workload.name.clone()),
            ])),
            ..LabelSelector::default()
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels),
                ..ObjectMeta::default()
            }),
            spec: Some(pod_spec(tenant, workload, image, &selector)),
        };
        let claim_templates = claim_templates(tenant, identity, workload);
        if claim_templates.is_empty() {
            objects.deployments.push(Deployment {
                metadata: meta.clone(),
                spec: Some(DeploymentSpec {
                    // N for the load, one spare (R15); none while the tenant is stopped.
                    replicas: Some(replicas(tenant, workload)),
                    selector: selector.clone(),
                    // Surge first, never take a ready replica away before its successor is ready.
                    strategy: Some(DeploymentStrategy {
                        type_: Some("RollingUpdate".into()),
                        rolling_update: Some(RollingUpdateDeployment {
                            max_surge: Some(IntOrString::Int(1)),
                            max_unavailable: Some(IntOrString::Int(0)),
                        }),
                    }),
                    template,
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            });
        } else {
            objects.stateful_sets.push(StatefulSet {
                metadata: meta.clone(),
                spec: Some(StatefulSetSpec {
                    replicas: Some(replicas(tenant, workload)),
                    selector: selector.clone(),
                    // Replicas are peers, not a chain: start and replace them in parallel.
                    pod_management_policy: Some("Parallel".into()),
                    service_name: (!workload.ports.is_empty()).then(|| workload.name.clone()),
                    template,
                    // The claims exist before the StatefulSet (the operator creates them), so
                    // growing a volume is a change to the claims, not to these templates.
                    volume_claim_templates: Some(claim_templates),
                    // A replica's data outlives the replica: claims are deleted by the
                    // operator at their retention deadline only.
                    persistent_volume_claim_retention_policy: Some(
                        StatefulSetPersistentVolumeClaimRetentionPolicy {
                            when_deleted: Some("Retain".into()),
                            when_scaled: Some("Retain".into()),
                        },
                    ),
                    ..StatefulSetSpec::default()
                }),
                ..StatefulSet::default()
            });
        }
        objects.disruption_budgets.push(PodDisruptionBudget {
            metadata: meta.clone(),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(workload.capacity)),
                selector: Some(selector.clone()),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        });
        if !workload.ports.is_empty() {
            objects.services.push(Service {
                metadata: meta,
                spec: Some(ServiceSpec {
                    selector: selector.match_labels.clone(),
                    ports: Some(
                        workload
                            .ports
                            .iter()
                            .map(|p| ServicePort {
                                name: Some(format!(
                                    "{}-{}",
                                    protocol(p.protocol).to_lowercase(),
                                    p.port
                                )),
                                port: p.port,
                                protocol: Some(protocol(p.protocol).into()),
                                target_port: Some(IntOrString::Int(p.port)),
                                ..ServicePort::default()
                            })
                            .collect(),
                    ),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            });
        }
    }
    Ok(objects)
}

/// The claim templates of the `perReplica` volumes a workload mounts, named after the volume
/// so that replica `i` gets the claim `<volume>-<workload>-<i>`.
fn claim_templates(
    tenant: &Tenant,
    identity: &Identity,
    workload: &Workload,
) -> Vec<PersistentVolumeClaim> {
    tenant
        .spec
        .volumes
        .iter()
        .filter(|v| v.per_replica && workload.volume_mounts.iter().any(|m| m.volume == v.name))
        .map(|v| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(v.name.clone()),
                labels: Some(storage::claim_labels(identity, v)),
                ..ObjectMeta::default()
            },
            spec: Some(storage::claim_spec(
                v,
                &storage::class_name(&v.profile, v.replicas, v.encrypted),
            )),
            ..PersistentVolumeClaim::default()
        })
        .collect()
}

fn pod_spec(
    tenant: &Tenant,
    workload: &Workload,
    image: String,
    selector: &LabelSelector,
) -> PodSpec {
    let spread = |key: &str, when_unsatisfiable: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: when_unsatisfiable.into(),
        label_selector: Some(selector.clone()),
        ..TopologySpreadConstraint::default()
    };
    let resources = workload.resources.as_ref().map(|r| {
        let mut amounts = BTreeMap::new();
        if let Some(cpu) = &r.cpu {
            amounts.insert("cpu".to_string(), Quantity(cpu.clone()));
        }
        if let Some(memory) = &r.memory {
            amounts.insert("memory".to_string(), Quantity(memory.clone()));
        }
        // Requests equal limits: a replica gets what it was sized for, no more, no less.
        ResourceRequirements {
            limits: Some(amounts.clone()),
            requests: Some(amounts),
            ..ResourceRequirements::default()
        }
    });
    let first_port = workload.ports.first().map(|p| p.port);
    PodSpec {
        // No API token in the pod unless a later option asks for one.
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // One replica per node while nodes allow it; balanced across zones when possible.
        topology_spread_constraints: Some(vec![
            spread("kubernetes.io/hostname", "DoNotSchedule"),
            spread("topology.kubernetes.io/zone", "ScheduleAnyway"),
        ]),
        containers: vec![Container {
            name: workload.name.clone(),
            image: Some(image),
            command: (!workload.command.is_empty()).then(|| workload.command.clone()),
            args: (!workload.args.is_empty()).then(|| workload.args.clone()),
            ports: (!workload.ports.is_empty()).then(|| {
                workload
                    .ports
                    .iter()
                    .map(|p| ContainerPort {
                        container_port: p.port,
                        protocol: Some(protocol(p.protocol).into()),
                        ..ContainerPort::default()
                    })
                    .collect()
            }),
            env_from: (!workload.env_from.is_empty()).then(|| {
                workload
                    .env_from
                    .iter()
                    .map(|e| EnvFromSource {
                        config_map_ref: e.config_map.clone().map(|name| ConfigMapEnvSource {
                            name,
                            ..ConfigMapEnvSource::default()
                        }),
                        secret_ref: e.secret.clone().map(|name| SecretEnvSource {
                            name,
                            ..SecretEnvSource::default()
                        }),
                        ..EnvFromSource::default()
                    })
                    .collect()
            }),
            resources,
            readiness_probe: workload
                .readiness_path
                .clone()
                .zip(first_port)
                .map(|(path, port)| Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some(path),
                        port: IntOrString::Int(port),
                        ..HTTPGetAction::default()
                    }),
                    ..Probe::default()
                }),
            security_context: Some(super::restricted_container()),
            // A read-only root still needs somewhere to write temporary files.
            volume_mounts: Some(
                std::iter::once(VolumeMount {
                    name: SCRATCH.into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                })
                .chain(workload.volume_mounts.iter().map(|m| VolumeMount {
                    name: m.volume.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: m.read_only.then_some(true),
                    ..VolumeMount::default()
                }))
                .collect(),
            ),
            ..Container::default()
        }],
        volumes: Some(
            std::iter::once(Volume {
                name: SCRATCH.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            })
            // Shared volumes are mounted by claim; `perReplica` ones come from the
            // StatefulSet's claim templates.
            .chain(
                tenant
                    .spec
                    .volumes
                    .iter()
                    .filter(|v| {
                        !v.per_replica && workload.volume_mounts.iter().any(|m| m.volume == v.name)
                    })
                    .map(|v| Volume {
                        name: v.name.clone(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: v.name.clone(),
                            read_only: None,
                        }),
                        ..Volume::default()
                    }),
            )
            .collect(),
        ),
        ..PodSpec::default()
    }
}

#[cfg(test)]
mod tests;
