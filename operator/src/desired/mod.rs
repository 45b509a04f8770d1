//! Pure builders: `(Tenant, configuration) -> desired objects`. No client, no I/O, so nearly
//! every rule of the product is unit-tested here.

pub mod access;
pub mod backup;
pub mod cidr;
pub mod incidents;
pub mod namespaces;
pub mod network;
pub mod quota;
pub mod requests;
pub mod security;
pub mod storage;
pub mod tls;
pub mod workloads;

use crate::config::Config;
use enclave_crds::Tenant;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;

pub use crate::labels::{FINALIZER, MANAGER};

pub use crate::labels;

/// Why a Tenant cannot be built, for the Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// Every object the operator keeps for one tenant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// One namespace per zone.
    pub namespaces: Vec<Namespace>,
    /// Default-deny and the declared openings, per zone.
    pub network_policies: Vec<NetworkPolicy>,
    /// `spec.access` bound to Enclave's roles, per zone.
    pub role_bindings: Vec<RoleBinding>,
    /// `spec.quota`, per zone.
    pub resource_quotas: Vec<ResourceQuota>,
    /// Container defaults, per zone.
    pub limit_ranges: Vec<LimitRange>,
    /// Deployments, disruption budgets and Services of the workloads.
    pub workloads: workloads::WorkloadObjects,
    /// Storage classes, claims and encryption keys of the volumes.
    pub storage: storage::StorageObjects,
    /// Backup CronJobs and what they run as.
    pub backup: backup::BackupObjects,
    /// The security options, `enclave-security`, per zone.
    pub security: Vec<ConfigMap>,
    /// The compliance report, `enclave-report`, per zone: added by the reconcile (the report
    /// reads the status, above this module), empty here.
    pub report: Vec<ConfigMap>,
    /// The TLS policy here; the certificates, which need the live CA, are added by the TLS
    /// step before the apply.
    pub tls: tls::TlsObjects,
}

impl Desired {
    /// Every object, as JSON, in the order the applier applies them (namespaces first): what
    /// a bare client would apply to make the same tenant (the benchmark, the property tests).
    #[must_use]
    pub fn objects(&self) -> Vec<serde_json::Value> {
        fn all<K: serde::Serialize>(out: &mut Vec<serde_json::Value>, items: &[K]) {
            out.extend(items.iter().filter_map(|i| serde_json::to_value(i).ok()));
        }
        let mut out = Vec::new();
        all(&mut out, &self.namespaces);
        all(&mut out, &self.network_policies);
        all(&mut out, &self.backup.network_policies);
        all(&mut out, &self.resource_quotas);
        all(&mut out, &self.limit_ranges);
        all(&mut out, &self.role_bindings);
        all(&mut out, &self.storage.storage_classes);
        let keys: Vec<_> = (self.storage.keys.iter())
            .chain(&self.backup.password)
            .map(|k| k.secret.clone())
            .collect();
        all(&mut out, &keys);
        all(&mut out, &self.storage.claims);
        all(&mut out, &self.tls.secrets);
        all(&mut out, &self.tls.bundles);
        all(&mut out, &self.tls.policies);
        all(&mut out, &self.security);
        all(&mut out, &self.report);
        out.extend(self.tls.certificates.iter().cloned());
        all(&mut out, &self.workloads.services);
        all(&mut out, &self.workloads.disruption_budgets);
        all(&mut out, &self.workloads.deployments);
        all(&mut out, &self.workloads.stateful_sets);
        all(&mut out, &self.backup.service_accounts);
        all(&mut out, &self.backup.operator_ca);
        all(&mut out, &self.backup.cron_jobs);
        out
    }
}

/// Validates what the schema cannot, then builds the tenant's objects.
///
/// # Errors
/// [`Invalid`] when the tenant lacks the identity every object is tied to, or asks for what
/// the operator's configuration does not allow.
pub fn desired(tenant: &Tenant, config: &Config) -> Result<Desired, Invalid> {
    let identity = Identity::of(tenant)?;
    network::validate(tenant, &config.network)?;
    quota::totals(tenant)?;
    let backup = backup::backup_objects(
        tenant,
        &identity,
        &config.backup,
        &config.network.cluster_cidrs,
        &config.namespace,
        (config.operator_ca.as_deref(), config.broker_url.as_deref()),
    )?;
    let policy = crate::pki::Policy {
        min_version: tenant
            .spec
            .tls
            .as_ref()
            .map(|t| t.min_version)
            .unwrap_or_default(),
    };
    Ok(Desired {
        namespaces: namespaces::zone_namespaces(tenant, &identity),
        network_policies: network::zone_policies(tenant, &identity, &config.network),
        role_bindings: access::role_bindings(tenant, &identity),
        // Split evenly here; the reconcile splits it again by what each zone uses.
        resource_quotas: quota::resource_quotas(tenant, &identity, &quota::Usage::new()),
        limit_ranges: quota::limit_ranges(tenant, &identity),
        workloads: workloads::workload_objects(tenant, &identity, &config.images)?,
        storage: storage::storage_objects(tenant, &identity, config)?,
        backup,
        security: security::config_maps(tenant, &identity),
        report: Vec::new(),
        tls: tls::TlsObjects {
            policies: tls::policies(tenant, &identity, policy),
            ..tls::TlsObjects::default()
        },
    })
}

/// One ConfigMap named `name` holding `data` in every zone of the tenant.
#[must_use]
pub fn per_zone_config_maps(
    tenant: &Tenant,
    identity: &Identity,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Vec<ConfigMap> {
    tenant
        .spec
        .zones
        .iter()
        .map(|z| ConfigMap {
            metadata: identity.zone_object(tenant, &z.name, name),
            data: Some(data.clone()),
            ..ConfigMap::default()
        })
        .collect()
}

/// The restricted container security context (Pod Security `restricted`) of every container the
/// operator runs: non-root, read-only root filesystem, no privilege escalation, no capability.
#[must_use]
pub fn restricted_container() -> k8s_openapi::api::core::v1::SecurityContext {
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// What ties objects to a tenant: its name for people, its uid for selection.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The tenant's name.
    pub name: String,
    /// The tenant's uid.
    pub uid: String,
    /// The owner reference every child carries, so the Tenant's watch sees drift.
    pub owner: Option<OwnerReference>,
}

impl Identity {
    /// The identity of a tenant read from the API server.
    ///
    /// # Errors
    /// [`Invalid`] for a tenant without name or uid (never one read from the API server).
    pub fn of(tenant: &Tenant) -> Result<Self, Invalid> {
        let missing = |what: &str| Invalid {
            reason: "MissingMetadata",
            message: format!("the Tenant has no metadata.{what}"),
        };
        Ok(Self {
            name: tenant
                .metadata
                .name
                .clone()
                .ok_or_else(|| missing("name"))?,
            uid: tenant.metadata.uid.clone().ok_or_else(|| missing("uid"))?,
            owner: tenant.controller_owner_ref(&()),
        })
    }

    /// The labels every object of this tenant carries.
    #[must_use]
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        [
            (labels::MANAGED_BY, labels::MANAGER),
            (labels::TENANT, self.name.as_str()),
            (labels::TENANT_UID, self.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Metadata of the object `name` in the namespace of `zone`: the tenant's and the zone's
    /// labels, and the owner reference.
    #[must_use]
    pub fn zone_object(&self, tenant: &Tenant, zone: &str, name: &str) -> ObjectMeta {
        let mut labels = self.labels();
        labels.insert(labels::ZONE.to_string(), zone.to_string());
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(tenant.zone_namespace(zone)),
            labels: Some(labels),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// Label selector of every object the operator made for this tenant: its uid, and the
    /// managed-by label nobody else may set (the guard). The uid alone is readable and so
    /// forgeable on a tenant's own objects.
    #[must_use]
    pub fn selector(&self) -> String {
        format!(
            "{}={},{}",
            labels::TENANT_UID,
            self.uid,
            labels::managed_selector()
        )
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
