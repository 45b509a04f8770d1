//! What a data kind (a namespace, a claim) does instead of being deleted when it leaves the
//! spec: it is marked with a deadline and kept until then. Pure.

use crate::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;

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
                    purge_after: crate::units::seconds(now)
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
