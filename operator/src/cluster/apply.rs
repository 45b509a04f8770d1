//! Look before write: whether the live object already holds every field the operator sets, so
//! that a tenant at rest costs no write.

use crate::units::quantity;
use serde_json::Value;

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
