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

/// What each zone namespace uses, per quota resource (`limits.cpu`, `pods`...), in nano-units
/// ([`crate::units::quantity`]), as its ResourceQuota's `status.used` says.
pub type Usage = BTreeMap<String, BTreeMap<String, i128>>;

const NANO: i128 = 1_000_000_000;

/// The smallest step of a resource, in nano-units: a millicore, or one byte or pod.
fn step(resource: &str) -> i128 {
    if resource.ends_with("cpu") {
        NANO / 1000
    } else {
        NANO
    }
}

/// A quantity of `resource` from nano-units, rounded down to its step.
fn quantity_of(resource: &str, nano: i128) -> Quantity {
    let units = nano / step(resource);
    Quantity(if resource.ends_with("cpu") {
        format!("{units}m")
    } else {
        units.to_string()
    })
}

/// The tenant's total (`spec.quota`), per quota resource, in nano-units.
fn totals(tenant: &Tenant) -> BTreeMap<String, i128> {
    let Some(quota) = &tenant.spec.quota else {
        return BTreeMap::new();
    };
    [
        ("limits.cpu", quota.cpu.clone()),
        ("limits.memory", quota.memory.clone()),
        ("requests.storage", quota.storage.clone()),
        ("pods", quota.pods.map(|p| p.to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.to_string(), crate::units::quantity(&value?)?)))
    .collect()
}

/// The ResourceQuota of every zone, when the tenant declares a quota: `spec.quota` is the
/// tenant's total, split over its zones. Each zone may keep what it uses (`used`), and the
/// headroom left is shared: equally, the indivisible remainder to the zones using the most.
/// The hard limits of all zones together never exceed the total, so the API server's own
/// quota admission, atomic in each namespace, keeps the tenant within it whatever is created
/// at once in several zones. The operator rebalances as usage moves (quotas are watched), and
/// writes the shrinking limits before the growing ones ([`grows`]).
#[must_use]
pub fn resource_quotas(tenant: &Tenant, identity: &Identity, used: &Usage) -> Vec<ResourceQuota> {
    let totals = totals(tenant);
    if totals.is_empty() {
        return Vec::new();
    }
    let namespaces: Vec<String> = tenant
        .spec
        .zones
        .iter()
        .map(|z| tenant.zone_namespace(&z.name))
        .collect();
    let zones = i128::try_from(namespaces.len()).unwrap_or(1).max(1);
    let mut hard: Vec<BTreeMap<String, Quantity>> = vec![BTreeMap::new(); namespaces.len()];
    for (resource, total) in &totals {
        let using: Vec<i128> = namespaces
            .iter()
            .map(|ns| {
                used.get(ns)
                    .and_then(|u| u.get(resource))
                    .copied()
                    .unwrap_or(0)
                    .max(0)
            })
            .collect();
        let step = step(resource);
        let free = (total - using.iter().sum::<i128>()).max(0) / step;
        let (share, mut remainder) = (free / zones, free % zones);
        // The remainder goes to the busiest zones, so one zone alone can reach the total.
        let mut busiest: Vec<usize> = (0..namespaces.len()).collect();
        busiest.sort_by_key(|&i| std::cmp::Reverse(using[i]));
        let mut extra = vec![0; namespaces.len()];
        for &i in &busiest {
            if remainder == 0 {
                break;
            }
            extra[i] = 1;
            remainder -= 1;
        }
        for (i, limits) in hard.iter_mut().enumerate() {
            let nano = using[i] + (share + extra[i]) * step;
            limits.insert(resource.clone(), quantity_of(resource, nano));
        }
    }
    tenant
        .spec
        .zones
        .iter()
        .zip(hard)
        .map(|(zone, hard)| ResourceQuota {
            metadata: identity.zone_object(tenant, &zone.name, QUOTA),
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        })
        .collect()
}

/// What a zone's quota uses, per resource, from its `status.used`.
#[must_use]
pub fn used(quota: &ResourceQuota) -> BTreeMap<String, i128> {
    quota
        .status
        .as_ref()
        .and_then(|s| s.used.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), crate::units::quantity(&v.0)?)))
        .collect()
}

/// `desired` with each limit no higher than `live`'s: the first of the two writes of a
/// rebalance, so that no zone's limit grows before the others' have shrunk. `None` when no
/// limit grows (one write is enough).
#[must_use]
pub fn shrunk_first(
    desired: &ResourceQuota,
    live: Option<&ResourceQuota>,
) -> Option<ResourceQuota> {
    let live_hard = live
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.hard.as_ref())?;
    let wanted = desired.spec.as_ref().and_then(|s| s.hard.as_ref())?;
    let nano = |q: &Quantity| crate::units::quantity(&q.0);
    let mut lowered = wanted.clone();
    let mut grows = false;
    for (key, value) in &mut lowered {
        if let Some(before) = live_hard.get(key)
            && nano(value) > nano(before)
        {
            value.clone_from(before);
            grows = true;
        }
    }
    grows.then(|| ResourceQuota {
        spec: Some(ResourceQuotaSpec {
            hard: Some(lowered),
            ..ResourceQuotaSpec::default()
        }),
        ..desired.clone()
    })
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
        let identity = Identity::of(&t).expect("identity");
        let quotas = resource_quotas(&t, &identity, &Usage::new());
        assert_eq!(quotas.len(), 3);
        let hard = |quotas: &[ResourceQuota], i: usize| {
            quotas[i]
                .spec
                .as_ref()
                .and_then(|s| s.hard.clone())
                .expect("hard")
        };
        // Nothing used: the total shared, the remainder to the first zones.
        let h = hard(&quotas, 1);
        assert_eq!(h["limits.cpu"], Quantity("2667m".into()));
        assert_eq!(h["limits.memory"], Quantity("5726623061".into()));
        assert_eq!(h["pods"], Quantity("20".into()));
        assert!(!h.contains_key("requests.storage"));
        assert_eq!(quotas[1].metadata.namespace.as_deref(), Some("acme-app"));
        let sum = |quotas: &[ResourceQuota], key: &str| -> i128 {
            (0..3)
                .map(|i| crate::units::quantity(&hard(quotas, i)[key].0).expect("quantity"))
                .sum()
        };
        assert!(sum(&quotas, "limits.cpu") <= 8_000_000_000);
        assert_eq!(sum(&quotas, "pods"), 60_000_000_000);
        // One zone busy: it keeps what it uses and shares what is left.
        let used = Usage::from([(
            "acme-data".to_string(),
            BTreeMap::from([("pods".to_string(), 50 * NANO)]),
        )]);
        let quotas = resource_quotas(&t, &identity, &used);
        let pods: Vec<Quantity> = (0..3).map(|i| hard(&quotas, i)["pods"].clone()).collect();
        assert_eq!(pods, ["3", "3", "54"].map(|p| Quantity(p.into())));
        assert_eq!(sum(&quotas, "pods"), 60_000_000_000);
        // Over the total (the spec shrank): every zone keeps only what it uses.
        let over = Usage::from([(
            "acme-app".to_string(),
            BTreeMap::from([("pods".to_string(), 70 * NANO)]),
        )]);
        let quotas = resource_quotas(&t, &identity, &over);
        assert_eq!(hard(&quotas, 1)["pods"], Quantity("70".into()));
        assert_eq!(hard(&quotas, 0)["pods"], Quantity("0".into()));
    }

    #[test]
    fn no_quota_declared_no_resource_quota() {
        let t = tenant("acme");
        assert!(
            resource_quotas(&t, &Identity::of(&t).expect("identity"), &Usage::new()).is_empty()
        );
    }

    #[test]
    fn a_rebalance_lowers_before_it_raises() {
        let quota = |pods: &str, cpu: &str| ResourceQuota {
            spec: Some(ResourceQuotaSpec {
                hard: Some(BTreeMap::from([
                    ("pods".to_string(), Quantity(pods.into())),
                    ("limits.cpu".to_string(), Quantity(cpu.into())),
                ])),
                ..ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        };
        // Pods grow, cpu shrinks: first the cpu alone.
        let first = shrunk_first(&quota("5", "1"), Some(&quota("3", "2"))).expect("two writes");
        assert_eq!(first, quota("3", "1"));
        // Nothing grows: one write.
        assert_eq!(shrunk_first(&quota("3", "1"), Some(&quota("3", "2"))), None);
        assert_eq!(shrunk_first(&quota("3", "1"), None), None);
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
