//! Access (R2): Enclave's own ClusterRoles for tenant admins, members and viewers, bound in
//! every zone namespace to the subjects of `spec.access`.
//!
//! What isolates a tenant (NetworkPolicies, ResourceQuotas, LimitRanges, the namespaces and their
//! Pod Security labels) is readable at most, never writable, by any tenant role. The only role
//! grant an admin can make is member or viewer: binding any other role is refused by the API
//! server's escalation check, since the admin holds no `bind` on it.

use super::{Identity, labels};
use enclave_crds::{LifecycleState, Subject, SubjectKind, Tenant};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject as RbacSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// ClusterRole of tenant admins.
pub const ADMIN_ROLE: &str = "enclave-tenant-admin";
/// ClusterRole of tenant members.
pub const MEMBER_ROLE: &str = "enclave-tenant-member";
/// ClusterRole of tenant viewers.
pub const VIEWER_ROLE: &str = "enclave-tenant-viewer";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_string()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_string()).collect(),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// What members may run and change: the tenant's workloads and their configuration.
fn workload_rules(verbs: &[&str]) -> Vec<PolicyRule> {
    vec![
        // Pods and what configures or exposes them: the tenant's own application.
        rule(
            &[""],
            &[
                "pods",
                "services",
                "configmaps",
                "persistentvolumeclaims",
                "serviceaccounts",
            ],
            verbs,
        ),
        // Logs for everyone; exec and port-forward (a shell in the tenant's pods) for those who
        // may change workloads anyway.
        if verbs == READ {
            rule(&[""], &["pods/log"], &["get"])
        } else {
            rule(
                &[""],
                &["pods/log", "pods/exec", "pods/portforward"],
                &["get", "create"],
            )
        },
        // Controllers of pods.
        rule(
            &["apps"],
            &["deployments", "statefulsets", "replicasets"],
            verbs,
        ),
        rule(
            &["apps"],
            &["deployments/scale", "statefulsets/scale"],
            if verbs == READ {
                &["get"]
            } else {
                &["get", "update", "patch"]
            },
        ),
        rule(&["batch"], &["jobs", "cronjobs"], verbs),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], verbs),
        rule(&["policy"], &["poddisruptionbudgets"], verbs),
        // Ingresses route the internet to the tenant's DMZ; NetworkPolicies still decide.
        rule(&["networking.k8s.io"], &["ingresses"], verbs),
    ]
}

/// Read-only view of what keeps the tenant isolated, so people can see their limits.
fn isolation_read_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[""],
            &["resourcequotas", "limitranges", "events", "endpoints"],
            READ,
        ),
        rule(&["networking.k8s.io"], &["networkpolicies"], READ),
        rule(&["events.k8s.io"], &["events"], READ),
    ]
}

/// The three tenant ClusterRoles, shared by every tenant and bound per namespace.
#[must_use]
pub fn cluster_roles() -> Vec<ClusterRole> {
    let role = |name: &str, rules: Vec<PolicyRule>| ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into()),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
        ..ClusterRole::default()
    };

    let mut admin = workload_rules(WRITE);
    // Secrets: admins run the application's credentials.
    admin.push(rule(&[""], &["secrets"], WRITE));
    // Admins grant access to colleagues within their namespaces...
    admin.push(rule(&[RBAC_GROUP], &["rolebindings"], WRITE));
    // ...but may bind only the member and viewer roles: `bind` on nothing else means the API
    // server refuses a binding to admin, cluster-admin or any other role.
    admin.push(PolicyRule {
        api_groups: Some(vec![RBAC_GROUP.into()]),
        resources: Some(vec!["clusterroles".into()]),
        verbs: vec!["bind".into()],
        resource_names: Some(vec![MEMBER_ROLE.into(), VIEWER_ROLE.into()]),
        ..PolicyRule::default()
    });
    admin.extend(isolation_read_rules());

    let mut member = workload_rules(WRITE);
    // Members deploy with the application's secrets, so they read and write them too.
    member.push(rule(&[""], &["secrets"], WRITE));
    member.push(rule(&[RBAC_GROUP], &["rolebindings"], READ));
    member.extend(isolation_read_rules());

    // Viewers read everything but Secrets.
    let mut viewer = workload_rules(READ);
    viewer.push(rule(&[RBAC_GROUP], &["rolebindings"], READ));
    viewer.extend(isolation_read_rules());

    vec![
        role(ADMIN_ROLE, admin),
        role(MEMBER_ROLE, member),
        role(VIEWER_ROLE, viewer),
    ]
}

/// RoleBindings of `spec.access` in every zone namespace: one per role with subjects.
#[must_use]
pub fn role_bindings(tenant: &Tenant, identity: &Identity) -> Vec<RoleBinding> {
    let access = &tenant.spec.access;
    let none = Vec::new();
    // A tenant that is not running keeps no one's rights to change it: suspended, its viewers
    // still read (data and access are kept, the people who look at it may go on looking);
    // decommissioned or deleted, nobody has access any more.
    let (admins, members, viewers) = match (
        tenant.spec.lifecycle.state,
        tenant.metadata.deletion_timestamp.is_some(),
    ) {
        (LifecycleState::Active, false) => (&access.admins, &access.members, &access.viewers),
        (LifecycleState::Suspended, false) => (&none, &none, &access.viewers),
        _ => (&none, &none, &none),
    };
    let roles = [
        ("enclave-admins", ADMIN_ROLE, admins),
        ("enclave-members", MEMBER_ROLE, members),
        ("enclave-viewers", VIEWER_ROLE, viewers),
    ];
    let mut bindings = Vec::new();
    for zone in &tenant.spec.zones {
        for (name, role, subjects) in roles.iter().filter(|(_, _, subjects)| !subjects.is_empty()) {
            bindings.push(RoleBinding {
                metadata: identity.zone_object(tenant, &zone.name, name),
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.into(),
                    kind: "ClusterRole".into(),
                    name: (*role).to_string(),
                },
                subjects: Some(subjects.iter().map(rbac_subject).collect()),
            });
        }
    }
    bindings
}

fn rbac_subject(subject: &Subject) -> RbacSubject {
    match subject.kind {
        SubjectKind::User | SubjectKind::Group => RbacSubject {
            api_group: Some(RBAC_GROUP.into()),
            kind: if subject.kind == SubjectKind::User {
                "User"
            } else {
                "Group"
            }
            .into(),
            name: subject.name.clone(),
            namespace: None,
        },
        // The core group is written by omission: the server stores no `apiGroup: ""`.
        SubjectKind::ServiceAccount => RbacSubject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: subject.name.clone(),
            namespace: subject.namespace.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;
    use enclave_crds::Access;

    fn allows(role: &ClusterRole, group: &str, resource: &str, verb: &str) -> bool {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    }

    fn roles() -> (ClusterRole, ClusterRole, ClusterRole) {
        let mut r = cluster_roles().into_iter();
        (
            r.next().expect("admin"),
            r.next().expect("member"),
            r.next().expect("viewer"),
        )
    }

    #[test]
    fn a_tenant_that_is_not_running_keeps_no_rights_but_its_viewers_while_suspended() {
        let mut t = tenant("acme");
        let subject = |kind, name: &str| Subject {
            kind,
            name: name.into(),
            ..Subject::default()
        };
        t.spec.access.admins = vec![subject(SubjectKind::Group, "acme-admins")];
        t.spec.access.viewers = vec![subject(SubjectKind::User, "auditor")];
        let id = Identity::of(&t).expect("identity");
        let names = |t: &Tenant| -> Vec<String> {
            role_bindings(t, &id)
                .iter()
                .filter_map(|b| b.metadata.name.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        assert_eq!(names(&t), ["enclave-admins", "enclave-viewers"]);
        t.spec.lifecycle.state = LifecycleState::Suspended;
        assert_eq!(names(&t), ["enclave-viewers"]);
        t.spec.lifecycle.state = LifecycleState::Decommissioned;
        assert!(names(&t).is_empty());
        t.spec.lifecycle.state = LifecycleState::Active;
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(names(&t).is_empty());
    }

    #[test]
    fn no_tenant_role_can_change_what_isolates_it() {
        let (admin, member, viewer) = roles();
        for role in [&admin, &member, &viewer] {
            for (group, resource) in [
                ("networking.k8s.io", "networkpolicies"),
                ("", "resourcequotas"),
                ("", "limitranges"),
                ("", "namespaces"),
                (RBAC_GROUP, "roles"),
                (RBAC_GROUP, "clusterrolebindings"),
            ] {
                for verb in ["create", "update", "patch", "delete"] {
                    assert!(
                        !allows(role, group, resource, verb),
                        "{:?} may {verb} {resource}",
                        role.metadata.name
                    );
                }
            }
            assert!(
                role.rules
                    .iter()
                    .flatten()
                    .all(|r| !r.verbs.contains(&"*".to_string())),
                "no wildcard verbs"
            );
        }
    }

    #[test]
    fn admin_may_bind_only_member_and_viewer() {
        let (admin, ..) = roles();
        let binds: Vec<_> = admin
            .rules
            .iter()
            .flatten()
            .filter(|r| r.verbs.contains(&"bind".to_string()))
            .collect();
        assert_eq!(binds.len(), 1);
        assert_eq!(
            binds[0].resource_names.as_deref(),
            Some(&[MEMBER_ROLE.to_string(), VIEWER_ROLE.to_string()][..])
        );
        assert!(allows(&admin, RBAC_GROUP, "rolebindings", "create"));
    }

    #[test]
    fn viewers_read_but_not_secrets() {
        let (_, _, viewer) = roles();
        assert!(allows(&viewer, "apps", "deployments", "list"));
        assert!(!allows(&viewer, "apps", "deployments", "create"));
        assert!(!allows(&viewer, "", "secrets", "get"));
        assert!(!allows(&viewer, "", "pods/exec", "create"));
    }

    #[test]
    fn admins_run_workloads_and_secrets() {
        let (admin, ..) = roles();
        for (group, resource) in [
            ("apps", "deployments"),
            ("", "services"),
            ("", "secrets"),
            ("", "persistentvolumeclaims"),
        ] {
            assert!(allows(&admin, group, resource, "create"), "{resource}");
        }
    }

    #[test]
    fn bindings_per_zone_for_each_role_with_subjects() {
        let mut t = tenant("acme");
        t.spec.access = Access {
            admins: vec![Subject {
                kind: SubjectKind::Group,
                name: "acme-admins".into(),
                namespace: None,
            }],
            members: vec![],
            viewers: vec![Subject {
                kind: SubjectKind::ServiceAccount,
                name: "ci".into(),
                namespace: Some("tools".into()),
            }],
        };
        let bindings = role_bindings(&t, &Identity::of(&t).expect("identity"));
        let names: Vec<_> = bindings
            .iter()
            .map(|b| {
                format!(
                    "{}/{}",
                    b.metadata.namespace.as_deref().unwrap_or(""),
                    b.metadata.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "acme-dmz/enclave-admins",
                "acme-dmz/enclave-viewers",
                "acme-app/enclave-admins",
                "acme-app/enclave-viewers",
                "acme-data/enclave-admins",
                "acme-data/enclave-viewers"
            ]
        );
        assert_eq!(bindings[0].role_ref.name, ADMIN_ROLE);
        let group = &bindings[0].subjects.as_ref().expect("subjects")[0];
        assert_eq!(
            (group.kind.as_str(), group.api_group.as_deref()),
            ("Group", Some(RBAC_GROUP))
        );
        let sa = &bindings[1].subjects.as_ref().expect("subjects")[0];
        assert_eq!(
            (
                sa.kind.as_str(),
                sa.api_group.as_deref(),
                sa.namespace.as_deref()
            ),
            ("ServiceAccount", None, Some("tools"))
        );
    }
}
