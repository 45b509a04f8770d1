//! What the tenants are made of, after the faults: orphans, duplicates, and the data to find
//! again.

use super::MANAGED;
use crate::harness::OPERATOR_NAMESPACE;
use anyhow::Result;
use enclave_crds::Tenant;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// What the tenants are made of, for the checks after the faults.
#[derive(Default)]
pub struct Inventory {
    /// Managed objects whose tenant uid is no Tenant's, as `kind namespace/name`.
    pub orphans: Vec<String>,
    /// What a tenant has twice: a zone's namespace, a CA, a key, a password.
    pub duplicates: Vec<String>,
    /// Uids of the claims and of the Secrets of the operator's namespace (keys, CAs,
    /// passwords), to find them again later.
    pub data: BTreeSet<String>,
    /// Every managed object, as `kind namespace/name`, by tenant uid.
    pub objects: BTreeMap<String, Vec<String>>,
}

/// Lists every managed object of the kinds the operator makes.
///
/// # Errors
/// When a list fails.
pub async fn inventory(client: &Client) -> Result<Inventory> {
    let tenants: BTreeSet<String> = Api::<Tenant>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|t| t.metadata.uid.clone())
        .collect();
    let kinds = [
        ApiResource::erase::<Namespace>(&()),
        ApiResource::erase::<k8s_openapi::api::networking::v1::NetworkPolicy>(&()),
        ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
        ApiResource::erase::<ResourceQuota>(&()),
        ApiResource::erase::<LimitRange>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
        ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
        ApiResource::erase::<k8s_openapi::api::batch::v1::CronJob>(&()),
        ApiResource::erase::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(&()),
    ];
    let mut found = Inventory::default();
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    for kind in &kinds {
        let list = Api::<DynamicObject>::all_with(client.clone(), kind)
            .list_metadata(&ListParams::default().labels(MANAGED))
            .await?;
        for object in list.items {
            let labels = object.labels();
            let Some(uid) = labels.get("enclave.dev/tenant-uid") else {
                continue;
            };
            let name = object.name_any();
            let namespace = object.namespace().unwrap_or_default();
            let what = format!("{} {namespace}/{name}", kind.kind);
            if !tenants.contains(uid) {
                found.orphans.push(what.clone());
            }
            found
                .objects
                .entry(uid.clone())
                .or_default()
                .push(what.clone());
            if kind.kind == "PersistentVolumeClaim"
                || (kind.kind == "Secret" && namespace == OPERATOR_NAMESPACE)
            {
                found.data.insert(format!(
                    "{what} {}",
                    object.meta().uid.clone().unwrap_or_default()
                ));
            }
            // What must exist once per tenant (or per zone): named by its role.
            let tenant = labels
                .get("enclave.dev/tenant")
                .cloned()
                .unwrap_or_default();
            let role = match kind.kind.as_str() {
                "Namespace" => Some(format!(
                    "zone {}",
                    labels.get("enclave.dev/zone").cloned().unwrap_or_default()
                )),
                "Secret" if namespace == OPERATOR_NAMESPACE => {
                    Some(name.replace(&tenant, "<tenant>"))
                }
                _ => None,
            };
            if let Some(role) = role {
                *roles.entry(format!("{uid} {role}")).or_default() += 1;
            }
        }
    }
    found.duplicates = roles
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, n)| format!("{k} x{n}"))
        .collect();
    Ok(found)
}
