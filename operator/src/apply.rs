//! Server-side apply of the desired objects, skipping any whose live state already matches, so
//! a tenant at rest costs no write.

use crate::Result;
use crate::build::{MANAGER, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// What applying one object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object did not exist and was created.
    Created,
    /// The object differed from the desired state and was changed.
    Updated,
    /// The object already matched: no write.
    Unchanged,
}

/// True when every field the operator sets is in `live` with the same value.
///
/// The server adds defaults and other managers' fields, so the live object is compared as a
/// superset of the desired one. Lists must match item by item: a list the operator sets is
/// owned whole.
#[must_use]
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, value)| {
            have.get(key).is_some_and(|h| is_subset(value, h))
                || is_empty(value) && !have.contains_key(key)
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        // The server stores quantities in canonical form (`2048Mi` as `2Gi`).
        (Value::String(want), Value::String(have)) => {
            want == have || quantity(want).is_some_and(|w| quantity(have) == Some(w))
        }
        _ => desired == live,
    }
}

/// The value of a Kubernetes quantity (`500m`, `2Gi`, `1e3`), exactly, as a fraction of
/// 10^9 (nano units), or `None` when the text is not a quantity.
#[must_use]
pub fn quantity(text: &str) -> Option<i128> {
    const BINARY: [(&str, u32); 6] = [
        ("Ki", 10),
        ("Mi", 20),
        ("Gi", 30),
        ("Ti", 40),
        ("Pi", 50),
        ("Ei", 60),
    ];
    const DECIMAL: [(&str, i32); 8] = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
    ];
    let (number, scale) = if let Some((n, shift)) = BINARY
        .iter()
        .find_map(|(s, shift)| text.strip_suffix(s).map(|n| (n, *shift)))
    {
        (n, Scale::Binary(shift))
    } else if let Some((n, exp)) = DECIMAL
        .iter()
        .find_map(|(s, exp)| text.strip_suffix(s).map(|n| (n, *exp)))
    {
        (n, Scale::Decimal(exp))
    } else if let Some((n, exp)) = text.split_once(['e', 'E']) {
        (n, Scale::Decimal(exp.parse().ok()?))
    } else {
        (text, Scale::Decimal(0))
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Digits as an integer, with the decimal point moved into the exponent.
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let point = i32::try_from(fraction.len()).ok()?;
    let (multiplier, exponent) = match scale {
        Scale::Binary(shift) => (1_i128 << shift, 9 - point),
        Scale::Decimal(exp) => (1, exp + 9 - point),
    };
    let value = digits.checked_mul(multiplier)?;
    if exponent >= 0 {
        value.checked_mul(10_i128.checked_pow(u32::try_from(exponent).ok()?)?)
    } else {
        let divisor = 10_i128.checked_pow(u32::try_from(-exponent).ok()?)?;
        (value % divisor == 0).then(|| value / divisor)
    }
}

enum Scale {
    Binary(u32),
    Decimal(i32),
}

/// The server drops empty maps and lists (and maps holding only those), so their absence is a
/// match.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

/// Applies `desired` unless `live` already matches.
///
/// # Errors
/// When the API server refuses the apply.
pub async fn apply<K>(api: &Api<K>, desired: &K, live: Option<&K>) -> Result<Change>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let mut desired_json = serde_json::to_value(desired)?;
    if let Value::Object(map) = &mut desired_json {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    let change = match live {
        None => Change::Created,
        Some(live) if !is_subset(&desired_json, &serde_json::to_value(live)?) => Change::Updated,
        Some(_) => return Ok(Change::Unchanged),
    };
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&desired_json),
    )
    .await?;
    Ok(change)
}

/// What the sweep does to one object the tenant owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Wanted again after a sweep marked it: remove the retention mark.
    Unmark(String),
    /// No longer wanted and holding data: keep it, marked with its purge deadline.
    Mark {
        /// Object name.
        name: String,
        /// When it may be deleted.
        purge_after: Timestamp,
    },
    /// Its retention window has passed: delete it.
    Purge(String),
    /// Retained until this deadline.
    Wait(Timestamp),
}

/// The retention deadline marked on an object, if any.
#[must_use]
pub fn purge_after(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.annotations
        .as_ref()?
        .get(labels::PURGE_AFTER)?
        .parse()
        .ok()
}

/// Plans the sweep of the objects the tenant owns (`owned`) against those the build wants.
///
/// Data is never deleted early: an object that leaves the spec is marked with a deadline of
/// `now + retention` and deleted only once that has passed.
#[must_use]
pub fn plan_sweep(
    owned: &[ObjectMeta],
    wanted: &BTreeSet<String>,
    now: Timestamp,
    retention: std::time::Duration,
) -> Vec<Sweep> {
    owned
        .iter()
        .filter(|meta| meta.deletion_timestamp.is_none())
        .filter_map(|meta| {
            let name = meta.name.clone()?;
            let deadline = purge_after(meta);
            Some(match (wanted.contains(&name), deadline) {
                (true, None) => return None,
                (true, Some(_)) => Sweep::Unmark(name),
                (false, None) => Sweep::Mark {
                    name,
                    purge_after: crate::status::seconds(now)
                        .checked_add(retention)
                        .unwrap_or(now),
                },
                (false, Some(deadline)) if deadline <= now => Sweep::Purge(name),
                (false, Some(deadline)) => Sweep::Wait(deadline),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_superset_matches() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "other": "2"}}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn removed_or_changed_label_needs_apply() {
        let desired = json!({"metadata": {"labels": {"x": "1", "y": "2"}}});
        assert!(!is_subset(
            &desired,
            &json!({"metadata": {"labels": {"x": "1"}}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"metadata": {"labels": {"x": "1", "y": "3"}}})
        ));
    }

    #[test]
    fn empty_list_the_server_dropped_still_matches() {
        let desired = json!({"subjects": [], "metadata": {"annotations": {}}});
        assert!(is_subset(&desired, &json!({})));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(quantity("2Gi"), quantity("2048Mi"));
        assert_eq!(quantity("1"), quantity("1000m"));
        assert_eq!(quantity("1.5"), quantity("1500m"));
        assert_eq!(quantity("1e3"), quantity("1k"));
        assert_ne!(quantity("1G"), quantity("1Gi"));
        assert_eq!(quantity("abc"), None);
        assert_eq!(quantity(""), None);
        assert!(is_subset(
            &json!({"hard": {"memory": "2048Mi"}}),
            &json!({"hard": {"memory": "2Gi"}})
        ));
        assert!(!is_subset(
            &json!({"hard": {"memory": "2049Mi"}}),
            &json!({"hard": {"memory": "2Gi"}})
        ));
    }

    #[test]
    fn lists_compare_item_by_item() {
        let desired = json!({"l": [{"a": 1}, {"b": 2}]});
        assert!(is_subset(
            &desired,
            &json!({"l": [{"a": 1, "z": 0}, {"b": 2}]})
        ));
        assert!(!is_subset(&desired, &json!({"l": [{"a": 1}]})));
        assert!(!is_subset(&desired, &json!({"l": [{"b": 2}, {"a": 1}]})));
    }

    fn meta(name: &str, purge_after: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            annotations: purge_after
                .map(|p| [(labels::PURGE_AFTER.to_string(), p.to_string())].into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn sweep_keeps_data_until_the_deadline() {
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().expect("time");
        let week = std::time::Duration::from_secs(7 * 86_400);
        let wanted: BTreeSet<String> = ["a-app".to_string(), "a-back".to_string()].into();
        let owned = [
            meta("a-app", None),
            meta("a-gone", None),
            meta("a-old", Some("2026-11-27T00:00:00Z")),
            meta("a-later", Some("2026-12-01T00:00:00Z")),
            meta("a-back", Some("2026-12-01T00:00:00Z")),
        ];
        let plan = plan_sweep(&owned, &wanted, now, week);
        assert_eq!(
            plan,
            [
                Sweep::Mark {
                    name: "a-gone".into(),
                    purge_after: "2026-12-05T00:00:00Z".parse().expect("time")
                },
                Sweep::Purge("a-old".into()),
                Sweep::Wait("2026-12-01T00:00:00Z".parse().expect("time")),
                Sweep::Unmark("a-back".into()),
            ]
        );
    }

    #[test]
    fn sweep_ignores_objects_already_terminating() {
        let mut m = meta("a-gone", Some("2026-01-01T00:00:00Z"));
        m.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::UNIX_EPOCH,
        ));
        assert!(
            plan_sweep(
                &[m],
                &BTreeSet::new(),
                Timestamp::now(),
                std::time::Duration::ZERO
            )
            .is_empty()
        );
    }
}
