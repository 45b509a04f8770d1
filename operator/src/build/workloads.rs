//! N+1 workloads (R15): each `spec.workloads[]` entry becomes a Deployment of N+1 replicas
//! spread across nodes and zones, a PodDisruptionBudget keeping N available, and a Service for
//! its ports, all under the restricted security context.

use super::{Identity, Invalid};
use crate::build::network::protocol;
use enclave_crds::{Tenant, Workload};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Service, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label naming the workload a pod belongs to.
pub const WORKLOAD: &str = "enclave.dev/workload";
/// Prefix of an image named by the operator's configuration: `default:<key>`.
pub const DEFAULT_IMAGE: &str = "default:";

/// The objects of one workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadObjects {
    /// N+1 replicas.
    pub deployments: Vec<Deployment>,
    /// Keeps N available through voluntary disruptions.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The workload's ports.
    pub services: Vec<Service>,
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
        objects.deployments.push(Deployment {
            metadata: meta.clone(),
            spec: Some(DeploymentSpec {
                // N for the load, one spare (R15).
                replicas: Some(workload.capacity + 1),
                selector: selector.clone(),
                // Surge first, never take a ready replica away before its successor is ready.
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(1)),
                        max_unavailable: Some(IntOrString::Int(0)),
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod_spec(workload, image, &selector)),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        });
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

fn pod_spec(workload: &Workload, image: String, selector: &LabelSelector) -> PodSpec {
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
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            // A read-only root still needs somewhere to write temporary files.
            volume_mounts: Some(vec![VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }],
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::tenant;
    use enclave_crds::{Port, Protocol};

    fn with_workload(image: &str) -> Tenant {
        let mut t = tenant("acme");
        t.spec.workloads = vec![Workload {
            name: "web".into(),
            zone: "dmz".into(),
            image: image.into(),
            capacity: 2,
            ports: vec![Port {
                port: 8443,
                protocol: Protocol::Tcp,
            }],
            readiness_path: Some("/healthz".into()),
            ..Workload::default()
        }];
        t
    }

    fn build(t: &Tenant, images: &BTreeMap<String, String>) -> WorkloadObjects {
        workload_objects(t, &Identity::of(t).expect("identity"), images).expect("valid")
    }

    #[test]
    fn runs_capacity_plus_one_with_a_budget_keeping_capacity() {
        let objects = build(&with_workload("registry.example/web:1"), &BTreeMap::new());
        let spec = objects.deployments[0].spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            objects.deployments[0].metadata.namespace.as_deref(),
            Some("acme-dmz")
        );
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .expect("rolling");
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        let pdb = objects.disruption_budgets[0].spec.as_ref().expect("pdb");
        assert_eq!(pdb.min_available, Some(IntOrString::Int(2)));
        assert_eq!(
            objects.services[0]
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .expect("ports")[0]
                .port,
            8443
        );
    }

    #[test]
    fn pods_are_restricted_and_spread() {
        let objects = build(&with_workload("registry.example/web:1"), &BTreeMap::new());
        let pod = objects.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let pod_security = pod.security_context.as_ref().expect("pod security");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security
                .seccomp_profile
                .as_ref()
                .map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let container = &pod.containers[0]
            .security_context
            .as_ref()
            .expect("container security");
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(
            container.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        let spread: Vec<_> = pod
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(
            spread,
            [
                ("kubernetes.io/hostname", 1),
                ("topology.kubernetes.io/zone", 1)
            ]
        );
        let probe = pod.containers[0]
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(
            (probe.path.as_deref(), &probe.port),
            (Some("/healthz"), &IntOrString::Int(8443))
        );
    }

    #[test]
    fn default_images_come_from_the_configuration() {
        let images = BTreeMap::from([(
            "nginx".to_string(),
            "registry.example/nginx:1.27.3".to_string(),
        )]);
        let objects = build(&with_workload("default:nginx"), &images);
        let pod = objects.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example/nginx:1.27.3")
        );
        let t = with_workload("default:unknown");
        let error = workload_objects(&t, &Identity::of(&t).expect("identity"), &images)
            .expect_err("unknown key");
        assert_eq!(error.reason, "UnknownImage");
        assert!(
            error.message.contains("default:unknown") && error.message.contains("nginx"),
            "{}",
            error.message
        );
    }

    #[test]
    fn selector_ties_pods_to_tenant_uid_and_workload() {
        let objects = build(&with_workload("x"), &BTreeMap::new());
        let selector = objects.deployments[0]
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .and_then(|s| s.match_labels)
            .expect("selector");
        assert_eq!(selector[super::super::labels::TENANT_UID], "uid-acme");
        assert_eq!(selector[WORKLOAD], "web");
    }
}
