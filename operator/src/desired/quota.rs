//! Quotas (R11): a ResourceQuota per zone namespace from `spec.quota`, and a LimitRange giving
//! containers that set no resources a default, so the quota can count them.

use super::Identity;
use enclave_crds::Tenant;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Name of the ResourceQuota of each zone namespace.
pub const QUOTA: &str = "enclave-quota";
/// Name of the LimitRange of each zone namespace.
pub const LIMITS: &str = "enclave-limits";

/// The ResourceQuota of every zone, when the tenant declares a quota.
#[must_use]
pub fn resource_quotas(tenant: &Tenant, identity: &Identity) -> Vec<ResourceQuota> {
    let Some(quota) = &tenant.spec.quota else {
        return Vec::new();
    };
    let mut hard = BTreeMap::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            hard.insert(key.to_string(), Quantity(value));
        }
    };
    set("limits.cpu", quota.cpu.clone());
    set("limits.memory", quota.memory.clone());
    set("requests.storage", quota.storage.clone());
    set("pods", quota.pods.map(|p| p.to_string()));
    if hard.is_empty() {
        return Vec::new();
    }
    tenant
        .spec
        .zones
        .iter()
        .map(|zone| ResourceQuota {
            metadata: identity.zone_object(tenant, &zone.name, QUOTA),
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard.clone()),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        })
        .collect()
}

/// The LimitRange of every zone: defaults for containers that set no requests or limits.
#[must_use]
pub fn limit_ranges(tenant: &Tenant, identity: &Identity) -> Vec<LimitRange> {
    let quantities = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]))
    };
    tenant
        .spec
        .zones
        .iter()
        .map(|zone| LimitRange {
            metadata: identity.zone_object(tenant, &zone.name, LIMITS),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    default: quantities("500m", "512Mi"),
                    default_request: quantities("100m", "128Mi"),
                    ..LimitRangeItem::default()
                }],
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;
    use enclave_crds::Quota;

    #[test]
    fn quota_per_zone_from_spec() {
        let mut t = tenant("acme");
        t.spec.quota = Some(Quota {
            cpu: Some("8".into()),
            memory: Some("16Gi".into()),
            storage: None,
            pods: Some(60),
        });
        let quotas = resource_quotas(&t, &Identity::of(&t).expect("identity"));
        assert_eq!(quotas.len(), 3);
        let hard = quotas[1]
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .expect("hard");
        assert_eq!(hard["limits.cpu"], Quantity("8".into()));
        assert_eq!(hard["limits.memory"], Quantity("16Gi".into()));
        assert_eq!(hard["pods"], Quantity("60".into()));
        assert!(!hard.contains_key("requests.storage"));
        assert_eq!(quotas[1].metadata.namespace.as_deref(), Some("acme-app"));
    }

    #[test]
    fn no_quota_declared_no_resource_quota() {
        let t = tenant("acme");
        assert!(resource_quotas(&t, &Identity::of(&t).expect("identity")).is_empty());
    }

    #[test]
    fn containers_without_resources_get_defaults() {
        let t = tenant("acme");
        let ranges = limit_ranges(&t, &Identity::of(&t).expect("identity"));
        assert_eq!(ranges.len(), 3);
        let item = &ranges[0].spec.as_ref().expect("spec").limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(
            item.default.as_ref().expect("default")["memory"],
            Quantity("512Mi".into())
        );
        assert_eq!(
            item.default_request.as_ref().expect("request")["cpu"],
            Quantity("100m".into())
        );
    }
}
