//! Who has access besides `spec.access`: the RoleBindings a tenant's admins made. A subject
//! removed from `spec.access` loses every access it had, those bindings included; the rest are
//! reported in `status.tenantBindings`.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::error::{Phase, Result};
use crate::labels;
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use kube::ResourceExt;
use kube::api::ApiResource;
use std::collections::BTreeSet;

/// How many times a revocation reads the bindings again and deletes what still grants a
/// removed subject.
const REVOCATION_ROUNDS: usize = 3;

/// A subject as one comparable key.
fn key(subject: &Subject) -> (String, String, String) {
    (
        subject.kind.clone(),
        subject.name.clone(),
        subject.namespace.clone().unwrap_or_default(),
    )
}

fn managed(binding: &RoleBinding) -> bool {
    binding.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER)
}

/// The tenant-made bindings that grant any of `removed`. Pure.
#[must_use]
pub fn granting<'a>(
    bindings: &'a [RoleBinding],
    removed: &BTreeSet<(String, String, String)>,
) -> Vec<&'a RoleBinding> {
    bindings
        .iter()
        .filter(|b| !managed(b))
        .filter(|b| {
            b.subjects
                .iter()
                .flatten()
                .any(|s| removed.contains(&key(s)))
        })
        .collect()
}

/// The subjects the live managed bindings grant and the desired ones no longer do. Pure.
#[must_use]
pub fn removed_subjects(
    live: &[RoleBinding],
    desired: &[RoleBinding],
) -> BTreeSet<(String, String, String)> {
    let subjects = |bindings: &mut dyn Iterator<Item = &RoleBinding>| -> BTreeSet<_> {
        bindings
            .flat_map(|b| b.subjects.iter().flatten().map(key))
            .collect()
    };
    let before = subjects(&mut live.iter().filter(|b| managed(b)));
    let after = subjects(&mut desired.iter());
    before.difference(&after).cloned().collect()
}

/// `namespace/name: role -> subjects` of a binding.
#[must_use]
pub fn describe(binding: &RoleBinding) -> String {
    let subjects: Vec<String> = binding
        .subjects
        .iter()
        .flatten()
        .map(|s| format!("{} {}", s.kind, s.name))
        .collect();
    format!(
        "{}/{}: {} {} -> {}",
        binding.namespace().unwrap_or_default(),
        binding.name_any(),
        binding.role_ref.kind,
        binding.role_ref.name,
        subjects.join(", ")
    )
}

impl Reconcile<'_> {
    /// Every RoleBinding in these namespaces.
    pub(super) async fn bindings(&self, namespaces: &[String]) -> Result<Vec<RoleBinding>> {
        let mut all = Vec::new();
        for namespace in namespaces {
            all.extend(self.in_namespace::<RoleBinding>(namespace).await?);
        }
        Ok(all)
    }

    /// Before the apply: deletes the tenant-made bindings granting a subject that `desired`
    /// no longer grants (its admin, member or viewer rights are gone; so are those it was
    /// given by a colleague).
    pub(super) async fn revoke_removed(
        &self,
        namespaces: &[String],
        desired: &[RoleBinding],
    ) -> Result<()> {
        let live = self.bindings(namespaces).await?;
        let removed = removed_subjects(&live, desired);
        if removed.is_empty() {
            return Ok(());
        }
        let writer = self.writer.during(Phase::Apply);
        let resource = ApiResource::erase::<RoleBinding>(&());
        // Read from the API server, not the cache, which can lag a binding made a moment ago;
        // and again after the deletes, for one made meanwhile (or under a deleted one's name,
        // which the uid precondition spared) by the subject still holding its rights.
        for _ in 0..REVOCATION_ROUNDS {
            let mut fresh = Vec::new();
            for namespace in namespaces {
                fresh.extend(
                    kube::Api::<RoleBinding>::namespaced(self.ctx.client.clone(), namespace)
                        .list(&kube::api::ListParams::default())
                        .await
                        .map_err(crate::error::api(
                            Phase::Apply,
                            "list",
                            "RoleBinding",
                            namespace,
                        ))?
                        .items,
                );
            }
            let granting = granting(&fresh, &removed);
            if granting.is_empty() {
                break;
            }
            self.revoke(&writer, &resource, &granting).await?;
        }
        Ok(())
    }

    /// Deletes these tenant-made bindings, each only if it is still the one read.
    async fn revoke(
        &self,
        writer: &crate::cluster::Writer<'_>,
        resource: &ApiResource,
        granting: &[&RoleBinding],
    ) -> Result<()> {
        for binding in granting {
            let namespace = binding.namespace().unwrap_or_default();
            let name = binding.name_any();
            writer
                .remove(
                    resource,
                    Some(&namespace),
                    &name,
                    binding.metadata.uid.as_deref(),
                    Note::normal(
                        "AccessRevoked",
                        "Delete",
                        format!(
                            "deleted RoleBinding {namespace}/{name}: it grants a subject removed from spec.access"
                        ),
                    ),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, managed_by_enclave: bool, subjects: &[(&str, &str)]) -> RoleBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "acme-app",
                "labels": if managed_by_enclave { serde_json::json!({"app.kubernetes.io/managed-by": "enclave-operator"}) } else { serde_json::json!({}) }},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "enclave-tenant-member"},
            "subjects": subjects.iter().map(|(kind, name)| serde_json::json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"})).collect::<Vec<_>>(),
        }))
        .expect("binding")
    }

    #[test]
    fn a_subject_removed_from_the_spec_loses_what_colleagues_granted_it() {
        let live = [
            binding(
                "enclave-admins",
                true,
                &[("User", "alice"), ("User", "carol")],
            ),
            binding("alice-as-member", false, &[("User", "alice")]),
            binding("bob-as-viewer", false, &[("User", "bob")]),
        ];
        let desired = [binding("enclave-admins", true, &[("User", "carol")])];
        let removed = removed_subjects(&live, &desired);
        assert_eq!(
            removed.into_iter().map(|k| k.1).collect::<Vec<_>>(),
            ["alice"]
        );
        let removed = removed_subjects(&live, &desired);
        let revoked: Vec<String> = granting(&live, &removed)
            .iter()
            .map(|b| b.name_any())
            .collect();
        assert_eq!(
            revoked,
            ["alice-as-member"],
            "never a managed binding, never bob's"
        );
        assert_eq!(
            describe(&live[2]),
            "acme-app/bob-as-viewer: ClusterRole enclave-tenant-member -> User bob"
        );
    }
}
