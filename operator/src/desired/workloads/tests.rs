use super::*;
use crate::desired::fixtures::tenant;
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

fn mounting(per_replica: bool, access: enclave_crds::VolumeAccessMode) -> Tenant {
    let mut t = with_workload("x");
    t.spec.workloads[0].volume_mounts = vec![enclave_crds::VolumeMount {
        volume: "files".into(),
        mount_path: "/srv/files".into(),
        read_only: true,
    }];
    t.spec.volumes = vec![enclave_crds::Volume {
        name: "files".into(),
        zone: "dmz".into(),
        size: "5Gi".into(),
        replicas: 3,
        encrypted: true,
        profile: "default".into(),
        access_mode: access,
        per_replica,
    }];
    t
}

#[test]
fn shared_volume_is_mounted_by_claim_in_a_deployment() {
    let t = mounting(false, enclave_crds::VolumeAccessMode::ReadWriteMany);
    let objects = build(&t, &BTreeMap::new());
    assert!(objects.stateful_sets.is_empty());
    let pod = objects.deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "files")
        .expect("volume");
    assert_eq!(
        volume
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("files")
    );
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "files")
        .expect("mount");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/srv/files", Some(true))
    );
}

#[test]
fn per_replica_volume_makes_a_stateful_set_that_keeps_its_claims() {
    let t = mounting(true, enclave_crds::VolumeAccessMode::ReadWriteOnce);
    let objects = build(&t, &BTreeMap::new());
    assert!(objects.deployments.is_empty());
    let spec = objects.stateful_sets[0].spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let templates = spec.volume_claim_templates.as_ref().expect("templates");
    assert_eq!(templates[0].metadata.name.as_deref(), Some("files"));
    assert_eq!(
        templates[0]
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("enclave-default-r3-encrypted")
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    let pod = spec.template.spec.as_ref().expect("pod");
    // The claim comes from the template, not from a pod volume.
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "files"));
    assert_eq!(
        pod.containers[0]
            .security_context
            .as_ref()
            .and_then(|c| c.read_only_root_filesystem),
        Some(true)
    );
    assert_eq!(objects.disruption_budgets.len(), 1);
}

#[test]
fn certificate_is_mounted_read_only_and_its_serial_rolls_the_pods() {
    let mut objects = build(&with_workload("x"), &BTreeMap::new());
    mount_certificate(&mut objects, &["acme-dmz".to_string()], "0abc");
    let template = &objects.deployments[0].spec.as_ref().expect("spec").template;
    assert_eq!(
        template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations")[crate::desired::tls::SERIAL_ANNOTATION],
        "0abc"
    );
    let pod = template.spec.as_ref().expect("pod");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "enclave-tls")
        .expect("volume");
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("enclave-tls")
    );
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "enclave-tls")
        .expect("mount");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/enclave/tls", Some(true))
    );
    // Workloads of other zones are left alone.
    let mut other = build(&with_workload("x"), &BTreeMap::new());
    mount_certificate(&mut other, &["acme-app".to_string()], "0abc");
    assert_eq!(other, build(&with_workload("x"), &BTreeMap::new()));
}
