//! Quotas (R11): a ResourceQuota per zone namespace from `spec.quota`, and a LimitRange giving
//! containers that set no resources a default, so the quota can count them.

use super::{Identity, Invalid};
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
///
/// # Errors
/// [`Invalid`] naming the field whose quantity cannot be read (the schema's `isQuantity`
/// admits forms such as `1e40` that no limit can hold): no limit is ever dropped silently.
pub fn totals(tenant: &Tenant) -> Result<BTreeMap<String, i128>, Invalid> {
    let Some(quota) = &tenant.spec.quota else {
        return Ok(BTreeMap::new());
    };
    let mut totals = BTreeMap::new();
    for (key, field, value) in [
        ("limits.cpu", "cpu", quota.cpu.clone()),
        ("limits.memory", "memory", quota.memory.clone()),
        ("requests.storage", "storage", quota.storage.clone()),
        ("pods", "pods", quota.pods.map(|p| p.to_string())),
    ] {
        let Some(value) = value else { continue };
        let nano = crate::units::quantity(&value)
            .filter(|n| (0..=NANO << 64).contains(n))
            .ok_or_else(|| Invalid {
                reason: "InvalidQuota",
                message: format!("spec.quota.{field}: {value:?} cannot be read as a limit"),
            })?;
        totals.insert(key.to_string(), nano);
    }
    Ok(totals)
}

/// What each zone's declared objects need at their peak, per quota resource: the claims of
/// its volumes, and its workloads' replicas (N+1, and one more while a rollout surges) with
/// their limits. A zone is never given less than this, so that a volume or a replica larger
/// than an even share of the headroom can still be admitted.
#[must_use]
pub fn reserved(tenant: &Tenant) -> Usage {
    let mut reserved = Usage::new();
    let mut add = |zone: &str, key: &str, nano: i128| {
        let entry = reserved
            .entry(tenant.zone_namespace(zone))
            .or_default()
            .entry(key.to_string())
            .or_default();
        *entry = entry.saturating_add(nano);
    };
    for volume in &tenant.spec.volumes {
        let claims =
            i128::try_from(crate::desired::storage::claim_names(tenant, volume).len()).unwrap_or(0);
        let size = crate::units::quantity(&volume.size).unwrap_or(0).max(0);
        add(
            &volume.zone,
            "requests.storage",
            size.saturating_mul(claims),
        );
    }
    for workload in &tenant.spec.workloads {
        let replicas = i128::from(workload.capacity) + 2;
        let resources = workload.resources.clone().unwrap_or_default();
        let limit = |value: Option<String>, default: &str| {
            crate::units::quantity(value.as_deref().unwrap_or(default)).unwrap_or(0)
        };
        add(&workload.zone, "pods", replicas * NANO);
        add(
            &workload.zone,
            "limits.cpu",
            replicas.saturating_mul(limit(resources.cpu, "500m")),
        );
        add(
            &workload.zone,
            "limits.memory",
            replicas.saturating_mul(limit(resources.memory, "512Mi")),
        );
    }
    reserved
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
    let totals = totals(tenant).unwrap_or_default();
    if totals.is_empty() {
        return Vec::new();
    }
    let reserved = reserved(tenant);
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
                    .max(
                        reserved
                            .get(ns)
                            .and_then(|u| u.get(resource))
                            .copied()
                            .unwrap_or(0),
                    )
            })
            .collect();
        let step = step(resource);
        let busy = using.iter().fold(0_i128, |sum, u| sum.saturating_add(*u));
        let free = total.saturating_sub(busy).max(0) / step;
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
            let nano = using[i].saturating_add((share + extra[i]) * step);
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

/// The live split as the basis of the next one, when it can stand: every zone has its quota,
/// with the tenant's resources only, holding together exactly the total, each at least what
/// its declared objects need, and none near its limit on any resource (an eighth of it left). Splitting from these
/// limits gives them back unchanged, so usage that moves within them writes nothing; a zone
/// that reaches a limit (or a changed total) rebalances from usage. `None`: rebalance.
#[must_use]
pub fn standing(tenant: &Tenant, live: &[Option<ResourceQuota>]) -> Option<Usage> {
    let totals = totals(tenant).ok()?;
    let reserved = reserved(tenant);
    let mut basis = Usage::new();
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for (zone, quota) in tenant.spec.zones.iter().zip(live) {
        let quota = quota.as_ref()?;
        let namespace = tenant.zone_namespace(&zone.name);
        let hard = limits(quota);
        let used = used(quota);
        if hard.keys().ne(totals.keys()) {
            return None;
        }
        for (resource, limit) in &hard {
            let need = reserved
                .get(&namespace)
                .and_then(|r| r.get(resource))
                .copied()
                .unwrap_or(0);
            // Near its limit (less than an eighth of it, or one step, left): a request larger
            // than what is left would be refused without usage ever reaching the limit.
            let left = limit.saturating_sub(used.get(resource).copied().unwrap_or(0));
            if left < (limit / 8).max(step(resource)) || *limit < need {
                return None;
            }
            *sums.entry(resource.clone()).or_default() += limit;
        }
        basis.insert(namespace, hard);
    }
    (live.len() == tenant.spec.zones.len() && sums == totals).then_some(basis)
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

/// How a rebalance is written without ever letting the zones together exceed the total:
/// first every limit that shrinks (`lowered`, written before anything else), then the limits
/// that grow, each only within what is left once every zone is counted at the most it can
/// hold now, its live limit or its usage if higher (`kept`). Headroom a zone gives up
/// becomes usable by the others on the next reconcile, once its lowered limit is in force.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rebalance {
    /// Quotas to write first: each live limit lowered to the split's where that is lower.
    pub lowered: Vec<ResourceQuota>,
    /// The quotas to keep: the split, raises capped.
    pub kept: Vec<ResourceQuota>,
}

/// The limits of a quota, in nano-units.
fn limits(quota: &ResourceQuota) -> BTreeMap<String, i128> {
    quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), crate::units::quantity(&v.0)?)))
        .collect()
}

/// The rebalance from the live quotas (`live[i]` for `desired[i]`'s zone) to `desired`.
#[must_use]
pub fn rebalance(
    tenant: &Tenant,
    desired: &[ResourceQuota],
    live: &[Option<ResourceQuota>],
) -> Rebalance {
    let totals = totals(tenant).unwrap_or_default();
    let wanted: Vec<BTreeMap<String, i128>> = desired.iter().map(limits).collect();
    let live_of = |i: usize| live.get(i).and_then(Option::as_ref);
    let mut capped = wanted.clone();
    for (resource, total) in &totals {
        // The most each zone can hold now: its live limit, or its usage if higher; a zone
        // without a quota yet is counted at the split's value (its usage is not known).
        let holds: Vec<i128> = (0..desired.len())
            .map(|i| {
                let want = wanted[i].get(resource).copied().unwrap_or(0);
                match live_of(i) {
                    Some(q) => limits(q)
                        .get(resource)
                        .copied()
                        .unwrap_or(*total)
                        .max(used(q).get(resource).copied().unwrap_or(0)),
                    None => want,
                }
            })
            .collect();
        let mut budget = holds
            .iter()
            .fold(*total, |left, h| left.saturating_sub(*h))
            .max(0);
        for i in 0..desired.len() {
            let want = wanted[i].get(resource).copied().unwrap_or(0);
            if live_of(i).is_none() || want <= holds[i] {
                continue; // new, lowered, or within what it holds already
            }
            let grant = (want - holds[i]).min(budget);
            budget -= grant;
            capped[i].insert(resource.clone(), holds[i] + grant);
        }
    }
    let with_limits = |base: &ResourceQuota, nano: &BTreeMap<String, i128>| ResourceQuota {
        spec: Some(ResourceQuotaSpec {
            hard: Some(
                nano.iter()
                    .map(|(k, v)| (k.clone(), quantity_of(k, *v)))
                    .collect(),
            ),
            ..ResourceQuotaSpec::default()
        }),
        ..base.clone()
    };
    let mut lowered = Vec::new();
    for (i, quota) in desired.iter().enumerate() {
        let Some(live) = live_of(i) else { continue };
        let mut first = limits(live);
        let mut lowers = false;
        for (resource, want) in &wanted[i] {
            if first.get(resource).is_none_or(|h| want < h) {
                first.insert(resource.clone(), *want);
                lowers = true;
            }
        }
        if lowers {
            lowered.push(with_limits(quota, &first));
        }
    }
    let kept = desired
        .iter()
        .zip(&capped)
        .map(|(quota, nano)| with_limits(quota, nano))
        .collect();
    Rebalance { lowered, kept }
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
    fn a_split_with_room_in_every_zone_stands_and_one_at_its_limit_does_not() {
        let mut t = tenant("acme");
        t.spec.zones.truncate(2); // dmz, app
        t.spec.quota = Some(Quota {
            pods: Some(10),
            ..Quota::default()
        });
        let identity = Identity::of(&t).expect("identity");
        let with = |pods: [&str; 2], used: [&str; 2]| -> Vec<Option<ResourceQuota>> {
            (0..2)
                .map(|zone| {
                    let mut q = resource_quotas(&t, &identity, &Usage::new())[zone].clone();
                    q.spec = Some(ResourceQuotaSpec {
                        hard: Some(BTreeMap::from([(
                            "pods".into(),
                            Quantity(pods[zone].into()),
                        )])),
                        ..ResourceQuotaSpec::default()
                    });
                    q.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
                        used: Some(BTreeMap::from([(
                            "pods".into(),
                            Quantity(used[zone].into()),
                        )])),
                        ..Default::default()
                    });
                    Some(q)
                })
                .collect()
        };
        // Room in both zones: the split stands, and splitting from it changes nothing.
        let live = with(["7", "3"], ["4", "1"]);
        let basis = standing(&t, &live).expect("stands");
        assert_eq!(pods_of(&resource_quotas(&t, &identity, &basis)), ["7", "3"]);
        // A zone at or near its limit, a total not reached, a missing quota: rebalance.
        assert!(standing(&t, &with(["7", "3"], ["7", "1"])).is_none());
        assert!(standing(&t, &with(["6", "3"], ["1", "1"])).is_none());
        assert!(standing(&t, &with(["7", "3"], ["1", "1"])[..1]).is_none());
        let mut missing = with(["7", "3"], ["1", "1"]);
        missing[1] = None;
        assert!(standing(&t, &missing).is_none());
    }

    fn pods_of(quotas: &[ResourceQuota]) -> Vec<String> {
        quotas
            .iter()
            .map(|q| {
                q.spec.as_ref().and_then(|s| s.hard.as_ref()).expect("hard")["pods"]
                    .0
                    .clone()
            })
            .collect()
    }

    #[test]
    fn a_rebalance_lowers_first_and_raises_only_within_what_the_zones_can_hold() {
        let mut t = tenant("acme");
        t.spec.zones.truncate(2); // dmz, app
        t.spec.quota = Some(Quota {
            pods: Some(10),
            ..Quota::default()
        });
        let identity = Identity::of(&t).expect("identity");
        let live = |zone: usize, pods: &str, used: &str| {
            let mut q = resource_quotas(&t, &identity, &Usage::new())[zone].clone();
            q.spec = Some(ResourceQuotaSpec {
                hard: Some(BTreeMap::from([(
                    "pods".to_string(),
                    Quantity(pods.into()),
                )])),
                ..ResourceQuotaSpec::default()
            });
            q.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
                used: Some(BTreeMap::from([(
                    "pods".to_string(),
                    Quantity(used.into()),
                )])),
                ..Default::default()
            });
            q
        };
        let usage = |now: &[Option<ResourceQuota>]| -> Usage {
            ["acme-dmz", "acme-app"]
                .iter()
                .zip(now)
                .map(|(ns, q)| ((*ns).to_string(), q.as_ref().map(used).unwrap_or_default()))
                .collect()
        };
        // Live 5 and 5; dmz uses 4, app nothing: the split wants dmz 7, app 3.
        let now = [Some(live(0, "5", "4")), Some(live(1, "5", "0"))];
        let desired = resource_quotas(&t, &identity, &usage(&now));
        assert_eq!(pods_of(&desired), ["7", "3"]);
        let plan = rebalance(&t, &desired, &now);
        // app lowered first; dmz not raised yet: app may hold 5 until its 3 is in force.
        assert_eq!(pods_of(&plan.lowered), ["3"]);
        assert_eq!(pods_of(&plan.kept), ["5", "3"]);
        // Next reconcile, app's 3 in force: dmz gets the rest.
        let now = [Some(live(0, "5", "4")), Some(live(1, "3", "0"))];
        let plan = rebalance(&t, &desired, &now);
        assert!(plan.lowered.is_empty());
        assert_eq!(pods_of(&plan.kept), ["7", "3"]);
        // app holding 6 past its limit of 3 (the stale read): dmz is not raised past 10 - 6.
        let now = [Some(live(0, "4", "4")), Some(live(1, "3", "6"))];
        let desired = resource_quotas(&t, &identity, &usage(&now));
        let plan = rebalance(&t, &desired, &now);
        assert_eq!(pods_of(&plan.kept), ["4", "6"]);
    }

    #[test]
    fn what_a_zone_declares_is_reserved_for_it() {
        let mut t = tenant("acme");
        t.spec.quota = Some(Quota {
            storage: Some("500Gi".into()),
            ..Quota::default()
        });
        t.spec.volumes = vec![
            serde_json::from_value(
                serde_json::json!({"name": "db", "zone": "data", "size": "200Gi"}),
            )
            .expect("volume"),
        ];
        let quotas = resource_quotas(&t, &Identity::of(&t).expect("identity"), &Usage::new());
        let storage: Vec<i128> = quotas
            .iter()
            .map(|q| {
                let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref()).expect("hard");
                crate::units::quantity(&hard["requests.storage"].0).expect("quantity")
            })
            .collect();
        // data holds its 200Gi claim and a third of the rest.
        assert!(storage[2] >= 300 * (1 << 30) * NANO, "{storage:?}");
        assert!(storage.iter().sum::<i128>() <= 500 * (1 << 30) * NANO);
        let mut bad = t.clone();
        bad.spec.quota = Some(Quota {
            cpu: Some("1e40".into()),
            ..Quota::default()
        });
        assert_eq!(totals(&bad).expect_err("unreadable").reason, "InvalidQuota");
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
