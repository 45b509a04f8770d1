//! Look before write: whether the live object already holds every field the operator sets, so
//! that a tenant at rest costs no write.

use crate::units::quantity;
use serde_json::Value;
use std::borrow::Cow;

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

/// `desired` as the cache holds `live`: a ConfigMap's long values digested when `live`'s are
/// ([`crate::cache::DIGESTED`]).
pub fn comparable<'d>(desired: &'d Value, live: &Value) -> Cow<'d, Value> {
    if !live["metadata"]["annotations"][crate::cache::DIGESTED].is_string() {
        return Cow::Borrowed(desired);
    }
    let mut desired = desired.clone();
    if let Some(data) = desired.get_mut("data").and_then(Value::as_object_mut) {
        for value in data.values_mut() {
            if let Some(digest) = value.as_str().and_then(crate::cache::digest_value) {
                *value = Value::String(digest);
            }
        }
    }
    Cow::Owned(desired)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cached_config_map_is_compared_by_the_digests_of_its_long_values() {
        use crate::cache::{DIGESTED, strip_cached};
        use k8s_openapi::api::core::v1::ConfigMap;
        let report = "r".repeat(5000);
        let desired = json!({"metadata": {"name": "enclave-report", "namespace": "a"},
            "data": {"report.md": report, "short": "s"}});
        let mut live: ConfigMap = serde_json::from_value(desired.clone()).expect("config map");
        strip_cached(&mut live);
        let data = live.data.clone().expect("data");
        assert!(data["report.md"].starts_with("sha256:") && data["report.md"].len() < 100);
        assert_eq!(data["short"], "s", "a short value is kept as it is");
        let live = serde_json::to_value(&live).expect("json");
        assert_eq!(live["metadata"]["annotations"][DIGESTED], "true");
        assert!(is_subset(&comparable(&desired, &live), &live));
        // A report changed by one character, or a short value changed, is told apart.
        let mut changed = desired.clone();
        changed["data"]["report.md"] = json!(format!("{}x", "r".repeat(4999)));
        assert!(!is_subset(&comparable(&changed, &live), &live));
        changed = desired.clone();
        changed["data"]["short"] = json!("t");
        assert!(!is_subset(&comparable(&changed, &live), &live));
        // A live value made to look like the digest is digested again when cached.
        let mut forged: ConfigMap = serde_json::from_value(desired.clone()).expect("config map");
        forged
            .data
            .as_mut()
            .expect("data")
            .insert("report.md".into(), data["report.md"].clone());
        strip_cached(&mut forged);
        let forged = serde_json::to_value(&forged).expect("json");
        assert!(!is_subset(&comparable(&desired, &forged), &forged));
        // A live object read whole (not marked) is compared whole.
        assert!(is_subset(&comparable(&desired, &desired), &desired));
    }

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
    fn lists_compare_item_by_item() {
        let desired = json!({"l": [{"a": 1}, {"b": 2}]});
        assert!(is_subset(
            &desired,
            &json!({"l": [{"a": 1, "z": 0}, {"b": 2}]})
        ));
        assert!(!is_subset(&desired, &json!({"l": [{"a": 1}]})));
        assert!(!is_subset(&desired, &json!({"l": [{"b": 2}, {"a": 1}]})));
    }
}
