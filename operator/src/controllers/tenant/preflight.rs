//! May the tenant be applied? Pure, over the live namespaces its zones would use: Enclave
//! never takes over a namespace that is not the tenant's, and waits for one still terminating
//! rather than write into it. A tenant is applied whole or not at all.

use crate::desired::{Identity, labels};
use crate::status::Outcome;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

/// Why the tenant must not be applied now, if so: `Blocked` for a namespace of someone else's
/// (it stays so until that changes), `Progressing` for one still terminating.
#[must_use]
pub fn check(identity: &Identity, live: &[(String, Option<Namespace>)]) -> Option<Outcome> {
    let names = |keep: &dyn Fn(&Namespace) -> bool| -> Vec<&str> {
        live.iter()
            .filter(|(_, ns)| ns.as_ref().is_some_and(keep))
            .map(|(name, _)| name.as_str())
            .collect()
    };
    let foreign = names(&|ns| ns.labels().get(labels::TENANT_UID) != Some(&identity.uid));
    if !foreign.is_empty() {
        return Some(Outcome::Blocked {
            reason: crate::status::reasons::NAMESPACE_CONFLICT,
            message: format!(
                "namespace(s) {} already exist and do not belong to this tenant; Enclave never takes over a namespace",
                foreign.join(", ")
            ),
        });
    }
    let terminating = names(&|ns| ns.metadata.deletion_timestamp.is_some());
    if !terminating.is_empty() {
        return Some(Outcome::Progressing {
            reason: crate::status::reasons::NAMESPACE_TERMINATING,
            message: format!(
                "waiting for namespace(s) {} to finish terminating, to recreate them",
                terminating.join(", ")
            ),
        });
    }
    None
}

#[cfg(test)]
#[allow(clippy::panic)] // a test fails by panicking
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn identity() -> Identity {
        Identity {
            name: "acme".into(),
            uid: "uid-1".into(),
            owner: None,
        }
    }

    fn namespace(uid: Option<&str>, terminating: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                labels: uid.map(|u| [(labels::TENANT_UID.to_string(), u.to_string())].into()),
                deletion_timestamp: terminating.then_some(Time(Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn absent_or_own_namespaces_may_be_applied() {
        let live = [
            ("acme-dmz".to_string(), None),
            (
                "acme-app".to_string(),
                Some(namespace(Some("uid-1"), false)),
            ),
        ];
        assert_eq!(check(&identity(), &live), None);
    }

    #[test]
    fn a_namespace_of_someone_else_blocks_the_whole_tenant() {
        let live = [
            ("acme-dmz".to_string(), None),
            ("acme-app".to_string(), Some(namespace(None, false))),
            (
                "acme-data".to_string(),
                Some(namespace(Some("uid-2"), true)),
            ),
        ];
        match check(&identity(), &live) {
            Some(Outcome::Blocked { reason, message }) => {
                assert_eq!(reason, "NamespaceConflict");
                assert!(
                    message.starts_with("namespace(s) acme-app, acme-data already exist"),
                    "{message}"
                );
            }
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[test]
    fn a_terminating_namespace_of_the_tenant_is_waited_for() {
        let live = [("acme-dmz".to_string(), Some(namespace(Some("uid-1"), true)))];
        match check(&identity(), &live) {
            Some(Outcome::Progressing { reason, message }) => {
                assert_eq!(reason, "NamespaceTerminating");
                assert!(message.contains("acme-dmz"), "{message}");
            }
            other => panic!("expected Progressing, got {other:?}"),
        }
    }
}
