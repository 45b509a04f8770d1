//! The tenant's lifecycle: the finalizer that holds a deleted Tenant while its data is kept,
//! the deadline (computed here, once), and stopping a tenant that is deleted or decommissioned.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::cluster::applier::Applier;
use crate::desired::{self, FINALIZER};
use crate::error::{Phase, Result, api};
use crate::labels;
use crate::status::Outcome;
use enclave_crds::{LifecycleState, Tenant, TenantStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use std::time::Duration;

/// Where the tenant's lifecycle puts this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Deleted and already released (no finalizer of ours): nothing to do.
    Released,
    /// Deleted: stopped and kept until `purge_after`, then purged and released.
    Deleted {
        /// When its data is destroyed.
        purge_after: Timestamp,
    },
    /// Decommissioned and past its deadline: purge.
    Purge {
        /// The deadline that passed.
        purge_after: Timestamp,
    },
    /// Decommissioned, purged and verified: nothing to do.
    Purged,
    /// Apply the spec; `deadline` is set for a decommissioned tenant.
    Run {
        /// When a decommissioned tenant's data is destroyed.
        deadline: Option<Timestamp>,
    },
}

/// The deadline of a deleted or decommissioned tenant, and what this reconcile must do. Pure:
/// the deadline is computed here only. A decommissioned tenant's window starts when it was
/// first seen so (`status.decommissionedAt`), a deleted one's at its deletion; the deadline
/// already promised in `status.purgeAfter` never moves earlier.
#[must_use]
pub fn gate(
    tenant: &Tenant,
    previous: Option<&TenantStatus>,
    retention: Duration,
    now: Timestamp,
) -> Gate {
    // Fixed when first computed: a retention shortened afterwards never brings it earlier.
    let promised = previous.and_then(|s| s.purge_after.as_ref()).map(|t| t.0);
    let deadline = |since: Timestamp| {
        let computed = since.checked_add(retention).unwrap_or(since);
        promised.map_or(computed, |p| p.max(computed))
    };
    if let Some(deleted) = &tenant.metadata.deletion_timestamp {
        if !tenant.finalizers().iter().any(|f| f == FINALIZER) {
            return Gate::Released;
        }
        return Gate::Deleted {
            purge_after: deadline(deleted.0),
        };
    }
    if tenant.spec.lifecycle.state != LifecycleState::Decommissioned {
        return Gate::Run { deadline: None };
    }
    let status = previous.cloned().unwrap_or_default();
    if status.purged_at.is_some() {
        return Gate::Purged;
    }
    let since = status
        .decommissioned_at
        .map_or_else(|| crate::units::seconds(now), |t| t.0);
    let purge_after = deadline(since);
    if now >= purge_after {
        Gate::Purge { purge_after }
    } else {
        Gate::Run {
            deadline: Some(purge_after),
        }
    }
}

/// Where a tenant that was applied stands: decommissioning until its deadline, suspended, or
/// ready.
#[must_use]
pub fn outcome(tenant: &Tenant, deadline: Option<Timestamp>) -> Outcome {
    match (tenant.spec.lifecycle.state, deadline) {
        (LifecycleState::Decommissioned, Some(purge_after)) => {
            Outcome::Decommissioning { purge_after }
        }
        (LifecycleState::Suspended, _) => Outcome::Suspended,
        _ => Outcome::Ready,
    }
}

impl Reconcile<'_> {
    /// Adds the finalizer that holds the Tenant while its data is kept.
    pub(super) async fn ensure_finalizer(&self) -> Result<()> {
        if self.tenant.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let mut finalizers = self.tenant.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        self.writer
            .during(Phase::Lifecycle)
            .set_finalizers::<Tenant>(
                &self.identity.name,
                &finalizers,
                self.tenant.resource_version(),
            )
            .await
    }

    /// Releases a purged Tenant: its finalizer removed, the API server deletes it.
    pub(super) async fn release(&self) -> Result<()> {
        let finalizers: Vec<String> = self
            .tenant
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.writer
            .during(Phase::Lifecycle)
            .set_finalizers::<Tenant>(
                &self.identity.name,
                &finalizers,
                self.tenant.resource_version(),
            )
            .await
    }

    /// At once on deletion: workloads to zero and internet exposure closed (the tenant is not
    /// running, so the builders say so); nothing holding data is touched. The objects lose
    /// their owner references: a foreground deletion of the Tenant has the garbage collector
    /// delete its dependents, and these must stand until the purge.
    pub(super) async fn stop(&self, namespaces: &[String]) -> Result<()> {
        let Ok(mut desired) = desired::desired(self.tenant, self.config) else {
            return Ok(());
        };
        let present =
            |namespace: Option<String>| namespace.is_some_and(|n| namespaces.contains(&n));
        let mut policies = std::mem::take(&mut desired.network_policies);
        policies.append(&mut desired.backup.network_policies);
        policies.retain(|p| present(p.namespace()));
        let mut deployments = std::mem::take(&mut desired.workloads.deployments);
        deployments.retain(|d| present(d.namespace()));
        let mut sets = std::mem::take(&mut desired.workloads.stateful_sets);
        sets.retain(|s| present(s.namespace()));
        for object in &mut policies {
            object.metadata.owner_references = None;
        }
        for object in &mut deployments {
            object.metadata.owner_references = None;
        }
        for object in &mut sets {
            object.metadata.owner_references = None;
        }
        let writer = self.writer.during(Phase::Lifecycle);
        let mut applier = Applier::new(
            &writer,
            self.ctx.client.clone(),
            &self.ctx.caches,
            &self.identity,
            &self.config.namespace,
            self.retention,
        );
        applier.apply_kind(&policies, "").await?;
        self.close_ingress(namespaces, &policies).await?;
        applier.apply_kind(&deployments, "").await?;
        applier.stateful_sets(&sets).await?;
        self.revoke_bindings(namespaces, &[]).await?;
        self.disown(&policies).await?;
        self.disown(&deployments).await?;
        self.disown(&sets).await
    }

    /// Deletes the ingress policy of each zone that no longer wants one: a stopped zone
    /// serving no other zone has none, and what it had let in (the internet) must not stay
    /// open until the purge (the stop does not sweep; a deleted Tenant's owner references are
    /// acted on by the garbage collector only when it goes).
    async fn close_ingress(&self, namespaces: &[String], wanted: &[NetworkPolicy]) -> Result<()> {
        use crate::desired::network::INGRESS;
        let writer = self.writer.during(Phase::Lifecycle);
        let resource = ApiResource::erase::<NetworkPolicy>(&());
        for namespace in namespaces {
            let kept = wanted
                .iter()
                .any(|p| p.namespace().as_ref() == Some(namespace) && p.name_any() == INGRESS);
            if kept {
                continue;
            }
            let live = self
                .ctx
                .caches
                .get_or_read::<NetworkPolicy>(&self.ctx.client, Some(namespace), INGRESS)
                .await
                .map_err(api(Phase::Lifecycle, "get", "NetworkPolicy", namespace))?;
            let Some(live) = live.filter(|p| {
                p.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER)
                    && p.metadata.deletion_timestamp.is_none()
            }) else {
                continue;
            };
            writer
                .remove(
                    &resource,
                    Some(namespace),
                    INGRESS,
                    live.metadata.uid.as_deref(),
                    Note::normal(
                        "Closed",
                        "Delete",
                        format!("deleted NetworkPolicy {namespace}/{INGRESS}: the zone is stopped"),
                    ),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every RoleBinding in these namespaces but `keep` (the tenant's own, or those
    /// its admins made): a tenant that is not running keeps nobody's rights but those its spec
    /// still grants while so (a suspended tenant's viewers).
    pub(super) async fn revoke_bindings(
        &self,
        namespaces: &[String],
        keep: &[RoleBinding],
    ) -> Result<()> {
        let writer = self.writer.during(Phase::Lifecycle);
        let resource = ApiResource::erase::<RoleBinding>(&());
        for namespace in namespaces {
            let bindings = Api::<RoleBinding>::namespaced(self.ctx.client.clone(), namespace)
                .list_metadata(&kube::api::ListParams::default())
                .await
                .map_err(api(Phase::Lifecycle, "list", "RoleBinding", namespace))?;
            for binding in bindings
                .items
                .iter()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
            {
                let name = binding.name_any();
                let kept = keep.iter().any(|k| {
                    k.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && k.metadata.name.as_deref() == Some(name.as_str())
                });
                if kept {
                    continue;
                }
                writer
                    .remove(
                        &resource,
                        Some(namespace),
                        &name,
                        binding.metadata.uid.as_deref(),
                        Note::normal(
                            "AccessRevoked",
                            "Delete",
                            format!("deleted RoleBinding {namespace}/{name}: the tenant is not running, and keeps no one's rights but its viewers' while suspended"),
                        ),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes the owner references of these objects, where the live ones have any.
    async fn disown<K>(&self, objects: &[K]) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let resource = ApiResource::erase::<K>(&());
        let writer = self.writer.during(Phase::Lifecycle);
        for object in objects {
            let namespace = object.meta().namespace.clone().unwrap_or_default();
            let name = object.meta().name.clone().unwrap_or_default();
            let live = Api::<DynamicObject>::namespaced_with(
                self.ctx.client.clone(),
                &namespace,
                &resource,
            )
            .get_metadata_opt(&name)
            .await
            .map_err(api(
                Phase::Lifecycle,
                "get",
                &resource.kind,
                format!("{namespace}/{name}"),
            ))?;
            if live.is_some_and(|l| l.metadata.owner_references.is_some_and(|o| !o.is_empty())) {
                writer.disown::<K>(Some(&namespace), &name).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn an_active_tenant_runs_without_deadline() {
        let t = tenant("acme");
        assert_eq!(
            gate(&t, None, WEEK, at("2026-12-01T00:00:00Z")),
            Gate::Run { deadline: None }
        );
        assert_eq!(outcome(&t, None), Outcome::Ready);
    }

    #[test]
    fn a_decommissioned_tenant_keeps_its_first_deadline_then_is_purged() {
        let mut t = tenant("acme");
        t.spec.lifecycle.state = LifecycleState::Decommissioned;
        let now = at("2026-12-01T00:00:00.700Z");
        // First seen decommissioned: the window starts now, to the second.
        assert_eq!(
            gate(&t, None, WEEK, now),
            Gate::Run {
                deadline: Some(at("2026-12-08T00:00:00Z"))
            }
        );
        let seen = TenantStatus {
            decommissioned_at: Some(Time(at("2026-11-20T00:00:00Z"))),
            ..TenantStatus::default()
        };
        assert_eq!(
            gate(&t, Some(&seen), WEEK, now),
            Gate::Purge {
                purge_after: at("2026-11-27T00:00:00Z")
            }
        );
        let purged = TenantStatus {
            purged_at: Some(Time(now)),
            ..seen
        };
        assert_eq!(gate(&t, Some(&purged), WEEK, now), Gate::Purged);
        assert_eq!(
            outcome(&t, Some(at("2026-12-08T00:00:00Z"))),
            Outcome::Decommissioning {
                purge_after: at("2026-12-08T00:00:00Z")
            }
        );
    }

    #[test]
    fn a_deleted_tenant_is_kept_from_its_deletion_until_released() {
        let mut t = tenant("acme");
        t.metadata.deletion_timestamp = Some(Time(at("2026-12-01T00:00:00Z")));
        assert_eq!(
            gate(&t, None, WEEK, at("2026-12-02T00:00:00Z")),
            Gate::Released
        );
        t.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_eq!(
            gate(&t, None, WEEK, at("2026-12-02T00:00:00Z")),
            Gate::Deleted {
                purge_after: at("2026-12-08T00:00:00Z")
            }
        );
    }

    #[test]
    fn a_shortened_retention_never_brings_the_deadline_earlier() {
        let mut t = tenant("acme");
        t.metadata.deletion_timestamp = Some(Time(at("2026-12-01T00:00:00Z")));
        t.metadata.finalizers = Some(vec![FINALIZER.into()]);
        let promised = TenantStatus {
            purge_after: Some(Time(at("2026-12-08T00:00:00Z"))),
            ..TenantStatus::default()
        };
        let now = at("2026-12-02T00:00:00Z");
        assert_eq!(
            gate(&t, Some(&promised), Duration::from_secs(1), now),
            Gate::Deleted {
                purge_after: at("2026-12-08T00:00:00Z")
            }
        );
        // Lengthened, it moves later.
        assert_eq!(
            gate(&t, Some(&promised), 2 * WEEK, now),
            Gate::Deleted {
                purge_after: at("2026-12-15T00:00:00Z")
            }
        );
        let mut d = tenant("acme");
        d.spec.lifecycle.state = LifecycleState::Decommissioned;
        let seen = TenantStatus {
            decommissioned_at: Some(Time(at("2026-12-01T00:00:00Z"))),
            ..promised
        };
        assert_eq!(
            gate(&d, Some(&seen), Duration::from_secs(1), now),
            Gate::Run {
                deadline: Some(at("2026-12-08T00:00:00Z"))
            }
        );
    }

    #[test]
    fn a_suspended_tenant_is_applied_stopped() {
        let mut t = tenant("acme");
        t.spec.lifecycle.state = LifecycleState::Suspended;
        assert_eq!(outcome(&t, None), Outcome::Suspended);
    }
}
