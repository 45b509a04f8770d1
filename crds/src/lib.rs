//! Enclave's API: the cluster-scoped `Tenant` (`enclave.dev/v1alpha1`).
//!
//! Everything a CRD schema or a CEL rule can refuse is declared here, so the API server itself
//! refuses bad input with a message that names the field. What only the operator can judge is
//! reported as a status condition.
//!
//! Longer than most files, for a reason: the types are the API, read in the order the CRD
//! reads (spec, then status), each field documented where `kubectl explain` shows it; the
//! duration parser and the tests live in modules of their own.
#![forbid(unsafe_code)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod duration;
pub mod incidents;
pub mod network;
pub mod requests;

pub use incidents::Incident;
pub use network::{EgressEntry, ExposureEntry, IngressFirewallStatus};

pub use requests::{
    RequestPhase, RequestStatus, TenantExport, TenantExportSpec, TenantRestore, TenantRestoreSpec,
};

/// API group of every Enclave resource.
pub const GROUP: &str = "enclave.dev";
/// Longest tenant name: `<tenant>-<zone>` must stay a DNS label (63 characters).
pub const MAX_TENANT_NAME: usize = 40;
/// Longest zone name, for the same reason.
pub const MAX_ZONE_NAME: usize = 15;
/// The policy's limit on how long data outlives a decommissioning request.
pub const MAX_RETENTION_SECONDS: u64 = 30 * 24 * 3600;

/// A customer of the platform: isolated namespaces per network zone, their access rights,
/// quotas, workloads, volumes, certificates and backups, kept as declared.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "enclave.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tnt",
    category = "enclave",
    status = "TenantStatus",
    derive = "PartialEq",
    derive = "Default",
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40")
        .message("metadata.name must be a DNS label of at most 40 characters (lower-case letters, digits, '-'), so that '<tenant>-<zone>' is a valid namespace name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Where the tenant stands: Pending, Ready, Degraded, Blocked or Decommissioning"),
    printcolumn(name = "Zones", type_ = "string", json_path = ".status.zones", description = "The tenant's network zones"),
    printcolumn(name = "Workloads", type_ = "string", json_path = ".status.readyWorkloads", description = "Workloads with N+1 replicas available, over all workloads"),
    // Future times as strings: a `date` column shows an age, `<invalid>` for the future.
    printcolumn(name = "Cert-Expiry", type_ = "string", json_path = ".status.certificate.notAfter", description = "When the tenant's TLS certificate expires"),
    printcolumn(name = "Last-Backup", type_ = "date", json_path = ".status.backup.lastSuccessfulTime", description = "When the last backup succeeded"),
    printcolumn(name = "Purge-After", type_ = "string", json_path = ".status.purgeAfter", priority = 1, description = "When a decommissioned tenant's data is destroyed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.workloads) || self.workloads.all(w, self.zones.exists(z, z.name == w.zone))")
        .message("every workload's zone must be declared in spec.zones")
        .field_path(".workloads"),
    validation = Rule::new("!has(self.volumes) || self.volumes.all(v, self.zones.exists(z, z.name == v.zone))")
        .message("every volume's zone must be declared in spec.zones")
        .field_path(".volumes"),
    validation = Rule::new("!has(self.egress) || self.egress.all(e, !has(e.zone) || self.zones.exists(z, z.name == e.zone))")
        .message("every egress rule's zone must be declared in spec.zones")
        .field_path(".egress"),
    validation = Rule::new("!has(self.workloads) || self.workloads.all(w, !has(w.volumeMounts) || w.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.volume && v.zone == w.zone)))")
        .message("every volumeMounts entry must name a volume of spec.volumes in the workload's zone")
        .field_path(".workloads"),
    validation = Rule::new("!has(self.workloads) || !has(self.volumes) || self.workloads.all(w, !has(w.volumeMounts) || w.volumeMounts.all(m, self.volumes.all(v, v.name != m.volume || (has(v.accessMode) && v.accessMode == 'ReadWriteMany') || (has(v.perReplica) && v.perReplica))))")
        .message("a ReadWriteOnce volume cannot be mounted by a workload's N+1 replicas on different nodes: set the volume's accessMode to ReadWriteMany, or perReplica: true to give each replica its own copy")
        .field_path(".workloads")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the customer, shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// People to notify about incidents, expiring certificates and failed backups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub contacts: Vec<Contact>,

    /// Who may use the tenant's namespaces, and with which role.
    #[serde(default)]
    pub access: Access,

    /// Network zones: one namespace each, default-deny, open only where declared.
    /// Defaults to `dmz` (internet-facing on 443), `app` (reachable from dmz) and `data`
    /// (reachable from app).
    #[serde(default = "default_zones")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["name".into()]),
        validation = Rule::new("self.all(z, !has(z.allowFrom) || z.allowFrom.all(f, self.exists(y, y.name == f)))")
            .message("allowFrom names a zone that is not declared in spec.zones")
    )]
    pub zones: Vec<Zone>,

    /// Source addresses allowed to reach the internet-facing zones.
    #[serde(default)]
    pub firewall: Firewall,

    /// Third-party destinations the tenant may reach; nothing else outside the cluster is
    /// reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,

    /// The tenant's resource limits, in total over all its zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,

    /// Services to run, each with N+1 replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub workloads: Vec<Workload>,

    /// Replicated persistent volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub volumes: Vec<Volume>,

    /// The tenant's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,

    /// Scheduled, encrypted, off-site backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,

    /// Per-tenant security options published to the tenant's applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,

    /// Whether the tenant runs, and how long its data outlives a decommissioning request.
    #[serde(default)]
    pub lifecycle: Lifecycle,
}

/// Someone to contact about the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Email address.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+$')").message("must be an email address"))]
    pub email: String,
    /// What this contact is told about.
    #[serde(default)]
    pub role: ContactRole,
}

/// What a contact is told about.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContactRole {
    /// Security incidents and abuse attempts.
    #[default]
    Security,
    /// Availability, redundancy and backup alerts.
    Operations,
    /// Contractual notices such as decommissioning.
    Billing,
}

/// Subjects bound to Enclave's tenant roles in every zone namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// Run workloads, services, config, secrets and volumes; grant member or viewer to others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub admins: Vec<Subject>,
    /// Run and change workloads; no role grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub members: Vec<Subject>,
    /// Read everything but Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub viewers: Vec<Subject>,
}

/// A user, group or service account.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind != 'ServiceAccount' || has(self.__namespace__)")
        .message("a ServiceAccount subject needs its namespace"),
    validation = Rule::new("self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("a ServiceAccount subject's name must be a DNS subdomain such as ci-deployer")
        .field_path(".name")
)]
pub struct Subject {
    /// User, Group or `ServiceAccount`.
    pub kind: SubjectKind,
    /// Name as the cluster's authenticator reports it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a `ServiceAccount` subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
}

/// Kind of an RBAC subject.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubjectKind {
    /// A user name.
    #[default]
    User,
    /// A group name.
    Group,
    /// A service account, with its namespace.
    ServiceAccount,
}

/// A network zone: one namespace, default-deny, reachable only as declared.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    /// Zone name; the namespace is `<tenant>-<zone>`. A DNS label of at most 15 characters.
    #[schemars(length(min = 1, max = 15), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// `Internet` zones are reachable from the ingress controller and the firewall's allowed
    /// sources on their ports; `Internal` zones only from the zones in `allowFrom`.
    #[serde(default)]
    pub exposure: Exposure,
    /// Ports the zone serves; nothing else is reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))").message("a port may be listed once per protocol"))]
    pub ports: Vec<Port>,
    /// Zones of the same tenant allowed to reach this zone's ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allow_from: Vec<String>,
}

/// Whether a zone faces the internet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exposure {
    /// Reachable from outside the cluster on the zone's ports.
    Internet,
    /// Reachable only from the tenant's own zones listed in `allowFrom`.
    #[default]
    Internal,
}

/// A port and its protocol.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port number, 1-65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TCP (default) or UDP.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of a port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// Source address lists of the internet-facing zones' virtual firewall.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.allowCidrs) || size(self.allowCidrs) == 0 || !has(self.denyCidrs) || self.denyCidrs.all(d, self.allowCidrs.exists(a, cidr(a).containsCIDR(d) || cidr(d).containsCIDR(a)))").message("every denyCidrs entry must overlap one of allowCidrs (outside them nothing is allowed anyway)").field_path(".denyCidrs"))]
pub struct Firewall {
    /// Sources allowed to reach internet-facing zones, as CIDRs. Empty: any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c) && cidr(c) == cidr(c).masked())").message("every allowCidrs entry must be a network such as 203.0.113.0/24, without host bits"))]
    pub allow_cidrs: Vec<String>,
    /// Sources refused even when inside an allowed range, as CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c) && cidr(c) == cidr(c).masked())").message("every denyCidrs entry must be a network such as 203.0.113.0/24, without host bits"))]
    pub deny_cidrs: Vec<String>,
}

/// A third-party destination the tenant may reach.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Zone allowed to reach it; absent: every zone of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    pub zone: Option<String>,
    /// Destination, as a CIDR.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self) == cidr(self).masked()").message("cidr must be a network such as 198.51.100.0/24, without host bits"))]
    pub cidr: String,
    /// Destination ports; at least one.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))").message("a port may be listed once per protocol"))]
    pub ports: Vec<Port>,
    /// Why the tenant needs it (shown in reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// The tenant's total: split over its zones as one `ResourceQuota` each, by what each zone
/// uses, so that the zones together never exceed it (a `LimitRange` gives containers that set
/// no resources a default, so the quota can count them).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// CPU limit, summed over the tenant's pods in all its zones (a Kubernetes quantity such as
    /// `8` or `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && !quantity(self).isLessThan(quantity('0'))").message("cpu must be a quantity of at least 0, such as 8 or 500m"))]
    pub cpu: Option<String>,
    /// Memory limit, summed over the tenant's pods in all its zones (such as `16Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && !quantity(self).isLessThan(quantity('0'))").message("memory must be a quantity of at least 0, such as 16Gi"))]
    pub memory: Option<String>,
    /// Storage requested by the tenant's volumes in all its zones (such as `500Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && !quantity(self).isLessThan(quantity('0'))").message("storage must be a quantity of at least 0, such as 500Gi"))]
    pub storage: Option<String>,
    /// Most pods of the tenant, in all its zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub pods: Option<i32>,
}

/// A service run with N+1 replicas: N for the required capacity and one spare.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Workload name, a DNS label.
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Zone the workload runs in.
    #[schemars(length(min = 1, max = 15))]
    pub zone: String,
    /// Container image, or `default:<key>` for an image named in the operator's configuration.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Replicas needed to carry the load (N); the operator runs N+1.
    #[schemars(range(min = 1, max = 100))]
    pub capacity: i32,
    /// Ports the workload serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))").message("a port may be listed once per protocol"))]
    pub ports: Vec<Port>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// `ConfigMaps` and Secrets of the zone namespace exposed as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub env_from: Vec<EnvSource>,
    /// CPU and memory of each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// HTTP path answering 200 when a replica is ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("readinessPath must be an absolute path such as /healthz"))]
    pub readiness_path: Option<String>,
    /// Volumes of the tenant mounted into each replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(m, !m.mountPath.matches('^/+(tmp/*)?$') && self.exists_one(n, n.mountPath == m.mountPath) && self.exists_one(n, n.volume == m.volume))").message("each volume is mounted once, each mountPath used once, and never / nor /tmp (the replicas' scratch space)"))]
    pub volume_mounts: Vec<VolumeMount>,
}

/// A `ConfigMap` or Secret exposed as environment variables.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.configMap) != has(self.secret)")
        .message("set exactly one of configMap and secret")
)]
pub struct EnvSource {
    /// Name of a `ConfigMap` in the workload's zone namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub config_map: Option<String>,
    /// Name of a Secret in the workload's zone namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub secret: Option<String>,
}

/// Requests (and limits) of one replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU of one replica (such as `250m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("cpu must be a positive quantity such as 250m"))]
    pub cpu: Option<String>,
    /// Memory of one replica (such as `256Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("memory must be a positive quantity such as 256Mi"))]
    pub memory: Option<String>,
}

/// Where a volume is mounted in a workload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name of a volume in `spec.volumes`.
    #[schemars(length(min = 1, max = 40))]
    pub volume: String,
    /// Absolute path in the container.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("mountPath must be an absolute path"))]
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A replicated, optionally encrypted persistent volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
        .message("size cannot shrink: a volume can only grow")
        .field_path(".size"),
    validation = Rule::new("self.zone == oldSelf.zone").message("zone is immutable").field_path(".zone"),
    validation = Rule::new("self.encrypted == oldSelf.encrypted").message("encrypted is immutable").field_path(".encrypted"),
    validation = Rule::new("self.profile == oldSelf.profile").message("profile is immutable").field_path(".profile"),
    validation = Rule::new("self.replicas == oldSelf.replicas")
        .message("replicas is immutable: a bound volume cannot move to another storage class; declare a new volume")
        .field_path(".replicas"),
    validation = Rule::new("self.perReplica == oldSelf.perReplica").message("perReplica is immutable").field_path(".perReplica")
)]
pub struct Volume {
    /// Volume name, a DNS label (`tmp` is reserved for the replicas' scratch space).
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self != 'tmp'").message("tmp is reserved for the replicas' scratch space at /tmp"))]
    pub name: String,
    /// Zone whose namespace holds the volume. Immutable.
    #[schemars(length(min = 1, max = 15))]
    pub zone: String,
    /// Capacity (such as `50Gi`); it may grow, never shrink.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("size must be a positive quantity such as 50Gi"))]
    pub size: String,
    /// Copies of every block, on different disks of different servers; at least 3.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 3, max = 9))]
    pub replicas: i32,
    /// Encrypt at rest, with a key kept in the operator's namespace. Immutable.
    #[serde(default = "default_true")]
    pub encrypted: bool,
    /// Storage profile of the operator's configuration. Immutable.
    #[serde(default = "default_profile")]
    #[schemars(length(min = 1, max = 63))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub profile: String,
    /// `ReadWriteOnce` (default) or `ReadWriteMany`.
    #[serde(default)]
    pub access_mode: VolumeAccessMode,
    /// Give each replica of a workload mounting this volume its own copy (a `StatefulSet`
    /// volume claim per replica, named `<volume>-<workload>-<ordinal>`). Immutable.
    #[serde(default)]
    pub per_replica: bool,
}

/// How a volume may be mounted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumeAccessMode {
    /// Mounted by the pods of one node.
    #[default]
    ReadWriteOnce,
    /// Mounted by pods on many nodes.
    ReadWriteMany,
}

/// The tenant's TLS certificate and the TLS policy its front services apply (R1).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(concat!(
        "!has(self.renewBefore) || ",
        "int(self.renewBefore.substring(0, size(self.renewBefore) - 1)) * (self.renewBefore.endsWith('d') ? 86400 : self.renewBefore.endsWith('h') ? 3600 : self.renewBefore.endsWith('m') ? 60 : 1) < ",
        "int(self.duration.substring(0, size(self.duration) - 1)) * (self.duration.endsWith('d') ? 86400 : self.duration.endsWith('h') ? 3600 : self.duration.endsWith('m') ? 60 : 1)"
    ))
    .message("renewBefore must be shorter than duration")
    .field_path(".renewBefore")
)]
pub struct Tls {
    /// DNS names the certificate covers (a leading `*.` for a wildcard). The in-cluster names of
    /// the Services of internet-facing workloads are added.
    #[schemars(
        length(min = 1, max = 32),
        inner(
            length(min = 1, max = 253),
            pattern(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    pub dns_names: Vec<String>,
    /// A cert-manager issuer; absent: Enclave's built-in CA, one per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerRef>,
    /// Validity of each certificate (such as `2160h`, the default: 90 days).
    #[serde(default = "default_tls_duration")]
    #[schemars(length(max = 16), pattern(r"^[0-9]{1,6}(s|m|h|d)$"))]
    pub duration: String,
    /// Renew this long before expiry (such as `720h`); absent: once two thirds of the
    /// validity have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), pattern(r"^[0-9]{1,6}(s|m|h|d)$"))]
    pub renew_before: Option<String>,
    /// Private key algorithm: `ECDSAP256` (default) or RSA of 2048, 3072 or 4096 bits.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    /// Oldest TLS version front services accept: `TLS12` (default) or `TLS13`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// Private key algorithms.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    /// RSA, 2048 bits.
    #[serde(rename = "RSA2048")]
    Rsa2048,
    /// RSA, 3072 bits.
    #[serde(rename = "RSA3072")]
    Rsa3072,
    /// RSA, 4096 bits.
    #[serde(rename = "RSA4096")]
    Rsa4096,
}

/// TLS protocol versions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "TLS13")]
    Tls13,
}

/// A cert-manager issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Issuer name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Issuer or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

/// Kind of a cert-manager issuer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerKind {
    /// A namespaced Issuer in the tenant's internet-facing zone.
    Issuer,
    /// A `ClusterIssuer`.
    #[default]
    ClusterIssuer,
}

/// Scheduled, incremental, encrypted backups to an off-site object store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Cron schedule (such as `0 2 * * *`).
    #[schemars(length(min = 9, max = 64))]
    pub schedule: String,
    /// Snapshots kept.
    #[serde(default)]
    pub retention: BackupRetention,
    /// Where backups are stored.
    pub destination: BackupDestination,
}

/// How many snapshots of each period are kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.daily + self.weekly + self.monthly > 0").message("keep at least one snapshot: daily, weekly and monthly cannot all be 0"))]
pub struct BackupRetention {
    /// Daily snapshots kept.
    #[schemars(range(min = 0, max = 366))]
    pub daily: i32,
    /// Weekly snapshots kept.
    #[schemars(range(min = 0, max = 104))]
    pub weekly: i32,
    /// Monthly snapshots kept.
    #[schemars(range(min = 0, max = 120))]
    pub monthly: i32,
}

impl Default for BackupRetention {
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

/// An S3-compatible bucket outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupDestination {
    /// Endpoint URL (https).
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("endpoint must be an https:// URL"))]
    pub endpoint: String,
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Secret in the operator's namespace holding the store's credentials.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub credentials_secret: String,
}

/// Security options published to the tenant's applications.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    /// Password complexity level required by the applications, published as concrete
    /// parameters (minimum length, character classes, Argon2id hashing parameters) in each
    /// zone's `enclave-security` ConfigMap.
    #[serde(default)]
    pub password_policy: PasswordPolicy,
    /// Download volume per user and hour above which an alert is raised (such as `500Mi`),
    /// published in bytes as `download.thresholdBytesPerHour` in each zone's `enclave-security`
    /// ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("downloadThreshold must be a positive quantity such as 500Mi"))]
    pub download_threshold: Option<String>,
}

/// Password complexity levels.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordPolicy {
    /// 8 characters, mixed classes.
    Standard,
    /// 12 characters, mixed classes.
    #[default]
    Strong,
    /// 16 characters, mixed classes, no dictionary words.
    Strict,
}

/// Whether the tenant runs, and how long its data is kept after a decommissioning request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Active, Suspended (workloads stopped, data kept) or Decommissioned.
    #[serde(default)]
    pub state: LifecycleState,
    /// How long data is kept after the Tenant is deleted or decommissioned, as a number and a
    /// unit (`s`, `m`, `h`, `d`), such as `7d`; at most 30 days.
    #[serde(default = "default_retention")]
    #[schemars(length(min = 2, max = 8), pattern(r"^[0-9]{1,7}(s|m|h|d)$"))]
    #[x_kube(
        validation = Rule::new("int(self.substring(0, size(self) - 1)) * (self.endsWith('d') ? 86400 : self.endsWith('h') ? 3600 : self.endsWith('m') ? 60 : 1) <= 2592000")
            .message("retention must not exceed 30 days (the policy destroys data within 30 days of a request)")
    )]
    pub retention: String,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            state: LifecycleState::default(),
            retention: default_retention(),
        }
    }
}

/// Lifecycle states of a tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LifecycleState {
    /// Running.
    #[default]
    Active,
    /// Workloads stopped; data and access kept.
    Suspended,
    /// Workloads stopped; data purged once the retention window has passed.
    Decommissioned,
}

/// What the operator observed of the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the tenant stands, at a glance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Detailed conditions: Ready, and one per concern as features land.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The tenant's namespaces, one per zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The zones, comma-separated, as `kubectl get tenants` shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<String>,
    /// Workloads with N+1 replicas available, over all workloads (such as `2/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_workloads: Option<String>,
    /// Each workload: the image it runs and its replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadStatus>,
    /// Volumes that left the spec, kept until their purge deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained_volumes: Vec<RetainedVolume>,
    /// RoleBindings the tenant's own admins made in its namespaces, as
    /// `namespace/name: role -> subjects`: who has access besides `spec.access`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenant_bindings: Vec<String>,
    /// Tenant-wide resource usage, summed over its zone namespaces' quotas, as `used/hard`
    /// (such as `limits.cpu: 1500m/12`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, String>,
    /// Every port reachable from outside its zone, computed from the applied `NetworkPolicies`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposure: Vec<ExposureEntry>,
    /// Every destination outside its zone that a zone's pods can reach, computed from the
    /// applied `NetworkPolicies` (the cluster DNS, other zones, third parties, the backup
    /// store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressEntry>,
    /// Each Ingress of the internet-facing zones, and whether it carries the firewall's
    /// source ranges for the shared ingress controller (`network.ingressFirewall`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingresses: Vec<IngressFirewallStatus>,
    /// The latest incidents (at most 20, newest first): what degraded, when, whether it
    /// recovered, and who is to be told. The whole register is kept in the ConfigMap
    /// `enclave-incidents-<tenant>-<uid>` of the operator's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<Incident>,
    /// The tenant's current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// Outcome of the latest backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// When the retained data of a deleted or decommissioned tenant is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<Time>,
    /// When the operator first saw `lifecycle.state: Decommissioned` (the retention window
    /// starts there); cleared when the tenant returns to `Active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommissioned_at: Option<Time>,
    /// When the tenant's data was purged and the purge verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<Time>,
}

/// Where a tenant stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being set up.
    Pending,
    /// Everything declared is in place.
    Ready,
    /// In place, but something is not as declared (see the conditions).
    Degraded,
    /// Refused to proceed: the spec cannot be applied as is (see the Ready condition).
    Blocked,
    /// Deleted or decommissioned: workloads stopped, exposure closed, data retained until
    /// `purgeAfter`, then purged.
    Decommissioning,
    /// Suspended: workloads stopped and exposure closed; data and access kept.
    Suspended,
    /// Decommissioned and past its deadline: every namespace, volume, key and backup of the
    /// tenant destroyed and verified gone.
    Purged,
}

/// How one workload runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Workload name.
    pub name: String,
    /// Zone it runs in.
    pub zone: String,
    /// The image its replicas are being rolled to (or run, once `updated` equals `desired`).
    pub image: String,
    /// Replicas wanted: N+1.
    pub desired: i32,
    /// Replicas running the current image.
    pub updated: i32,
    /// Replicas available to serve.
    pub available: i32,
}

/// A volume that left the spec, kept until its deadline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetainedVolume {
    /// The claim's name.
    pub name: String,
    /// Namespace holding it.
    pub namespace: String,
    /// When it is deleted.
    pub purge_after: Time,
}

/// The tenant's current certificate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Serial number, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Start of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// When it is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// Who issued it: the subject of the tenant's CA, or the cert-manager issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The Secret holding it, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Outcome of the latest backups.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// When the last backup succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the last backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
}

fn default_zones() -> Vec<Zone> {
    vec![
        Zone {
            name: "dmz".into(),
            exposure: Exposure::Internet,
            ports: vec![Port {
                port: 443,
                protocol: Protocol::Tcp,
            }],
            allow_from: vec![],
        },
        Zone {
            name: "app".into(),
            exposure: Exposure::Internal,
            ports: vec![],
            allow_from: vec!["dmz".into()],
        },
        Zone {
            name: "data".into(),
            exposure: Exposure::Internal,
            ports: vec![],
            allow_from: vec!["app".into()],
        },
    ]
}

fn default_replicas() -> i32 {
    3
}

fn default_true() -> bool {
    true
}

fn default_profile() -> String {
    "default".into()
}

/// A certificate's validity when `spec.tls.duration` is not set: 90 days.
pub const DEFAULT_TLS_DURATION: &str = "2160h";
/// How long data outlives a decommissioning request when `lifecycle.retention` is not set.
pub const DEFAULT_RETENTION: &str = "7d";

fn default_tls_duration() -> String {
    DEFAULT_TLS_DURATION.into()
}

fn default_retention() -> String {
    DEFAULT_RETENTION.into()
}

impl Lifecycle {
    /// The retention window, clamped to the policy's 30 days; the default when the text does
    /// not parse (the schema refuses such text, so only an object written around it has one).
    #[must_use]
    pub fn retention(&self) -> std::time::Duration {
        let max = std::time::Duration::from_secs(MAX_RETENTION_SECONDS);
        duration::parse(&self.retention)
            .or_else(|| duration::parse(DEFAULT_RETENTION))
            .map_or(max, |d| d.min(max))
    }
}

impl Tls {
    /// The certificates' validity; the default when the text does not parse.
    #[must_use]
    pub fn validity(&self) -> std::time::Duration {
        duration::parse(&self.duration)
            .or_else(|| duration::parse(DEFAULT_TLS_DURATION))
            .unwrap_or_default()
    }
}

impl Tenant {
    /// True while the tenant runs: `Active` and not deleted. Otherwise its workloads are
    /// stopped and nothing of it faces the internet.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.spec.lifecycle.state == LifecycleState::Active
            && self.metadata.deletion_timestamp.is_none()
    }

    /// The namespace of one of the tenant's zones.
    #[must_use]
    pub fn zone_namespace(&self, zone: &str) -> String {
        format!(
            "{}-{zone}",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// The CRDs of every Enclave resource, as YAML documents ready for `kubectl apply`.
///
/// # Errors
/// When a CRD cannot be serialised (never, for well-formed types).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out =
        String::from("# Generated by `cargo run -p enclave-crds --bin crdgen`: do not edit.\n");
    for crd in [Tenant::crd(), TenantRestore::crd(), TenantExport::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
