//! The purge of a tenant past its deadline, and its verification: volumes switched to
//! `Delete` and their namespaces deleted, the backup repository emptied by a Job, then keys,
//! CA and password deleted; nothing labelled with the tenant's uid may be left, and no volume
//! bound to one of its namespaces. Repeated until that holds; an Event says what was destroyed.

use super::reconcile::Reconcile;
use crate::cluster::data::{delete_keys, release_volumes};
use crate::cluster::{Note, Writer};
use crate::desired;
use crate::error::{Phase, Result, api};
use crate::status::job_ended;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::api::{Api, ApiResource, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// How long a terminating namespace of a purged tenant may wait on finalizers nobody removes
/// before the purge removes them.
const FINALIZER_GRACE: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_secs(60);

/// Where a purge stands.
pub(super) enum Purge {
    /// Something of the tenant remains (named): look again.
    Remaining(String),
    /// Nothing remains.
    Done,
}

impl Reconcile<'_> {
    async fn purge_list<K>(&self, api_: Api<K>, selector: &str) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        Ok(api_
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api(Phase::Purge, "list", K::kind(&()), selector))?
            .items)
    }

    /// The volumes bound to a claim in one of `namespaces`.
    async fn bound_into(&self, namespaces: &BTreeSet<String>) -> Result<Vec<PersistentVolume>> {
        Ok(self
            .purge_list(Api::<PersistentVolume>::all(self.ctx.client.clone()), "")
            .await?
            .into_iter()
            .filter(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref()?.namespace.clone())
                    .is_some_and(|n| namespaces.contains(&n))
            })
            .collect())
    }

    /// Destroys the tenant's data and checks that nothing of it remains.
    pub(super) async fn purge(&self) -> Result<Purge> {
        let writer = self.writer.during(Phase::Purge);
        let client = &self.ctx.client;
        let selector = self.identity.selector();
        let namespaces = self
            .purge_list(Api::<Namespace>::all(client.clone()), &selector)
            .await?;
        let claims = self
            .purge_list(Api::<PersistentVolumeClaim>::all(client.clone()), &selector)
            .await?;
        let volumes = claims
            .iter()
            .filter(|c| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_ref())
                    .is_some()
            })
            .count();
        release_volumes(&writer, client, &selector, None).await?;
        // Every volume bound into the tenant's namespaces is its data, whoever made the claim
        // (a claim of its own on a class that retains, a StatefulSet's template claim).
        // The namespaces labelled as the tenant's, and those its status named (already gone):
        // never one its zones' names would give but another tenant holds.
        let tenant_namespaces: BTreeSet<String> = namespaces
            .iter()
            .map(ResourceExt::name_any)
            .chain(
                self.tenant
                    .status
                    .iter()
                    .flat_map(|s| s.namespaces.iter().cloned()),
            )
            .collect();
        let bound_volumes = self.bound_into(&tenant_namespaces).await?;
        for volume in &bound_volumes {
            let retained = volume
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                != Some("Delete");
            if retained && volume.metadata.deletion_timestamp.is_none() {
                writer.release_volume(&volume.name_any()).await?;
            }
        }
        // Objects a namespace cannot be deleted without, held by finalizers nobody removes:
        // after a grace period, the purge removes them, and says so.
        let mut unblocked = Vec::new();
        for namespace in namespaces.iter().filter(|n| {
            n.metadata
                .deletion_timestamp
                .as_ref()
                .is_some_and(|t| self.now.duration_since(t.0) > FINALIZER_GRACE)
        }) {
            unblocked.extend(
                self.remove_finalizers(&writer, &namespace.name_any())
                    .await?,
            );
        }
        if !unblocked.is_empty() {
            writer
                .publish(Note::warning(
                    "FinalizersRemoved",
                    "Delete",
                    format!(
                        "removed the finalizers holding {} object(s) in the tenant's terminating namespaces past the grace period: {}",
                        unblocked.len(),
                        unblocked.join(", ")
                    ),
                ))
                .await;
        }
        for namespace in namespaces
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
        {
            let name = namespace.name_any();
            writer
                .remove(
                    &ApiResource::erase::<Namespace>(&()),
                    None,
                    &name,
                    namespace.metadata.uid.as_deref(),
                    Note::normal(
                        "Purged",
                        "Delete",
                        format!(
                            "deleted namespace {name}: the tenant's retention window has passed"
                        ),
                    ),
                )
                .await?;
        }
        // The backups go before the keys: the purge Job needs the repository's password.
        let mut remaining = Vec::new();
        let repository = self.purge_repository(&writer).await?;
        if let Some(state) = &repository {
            remaining.push(state.clone());
        }
        let keys = if repository.is_none() {
            delete_keys(&writer, client, &self.config.namespace, &selector).await?
        } else {
            0
        };
        // Verify.
        let left = self
            .purge_list(Api::<Namespace>::all(client.clone()), &selector)
            .await?;
        if !left.is_empty() {
            let names: Vec<String> = left.iter().map(ResourceExt::name_any).collect();
            remaining.push(format!("namespace(s) {}", names.join(", ")));
        }
        let left = self
            .purge_list(Api::<PersistentVolumeClaim>::all(client.clone()), &selector)
            .await?;
        if !left.is_empty() {
            remaining.push(format!("{} volume claim(s)", left.len()));
        }
        let left = self
            .purge_list(
                Api::<Secret>::namespaced(client.clone(), &self.config.namespace),
                &selector,
            )
            .await?;
        if !left.is_empty() {
            remaining.push(format!("{} key(s)", left.len()));
        }
        let bound: Vec<String> = self
            .bound_into(&tenant_namespaces)
            .await?
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        if !bound.is_empty() {
            remaining.push(format!(
                "volume(s) {} still to be destroyed by their storage driver",
                bound.join(", ")
            ));
        }
        if !remaining.is_empty() {
            let what = remaining.join("; ");
            writer
                .publish(Note::normal(
                    "PurgeInProgress",
                    "Delete",
                    format!("purge not complete yet, retrying: {what}"),
                ))
                .await;
            return Ok(Purge::Remaining(what));
        }
        writer
            .publish(Note::normal(
                "PurgeVerified",
                "Delete",
                format!(
                    "purge verified: nothing labelled {selector} remains and no volume is bound to the tenant's namespaces (each deletion has its own Event); destroyed in this last pass: {} namespace(s), {} volume claim(s), {volumes} volume(s), {keys} key Secret(s)",
                    namespaces.len(),
                    claims.len(),
                ),
            ))
            .await;
        self.ctx
            .metrics
            .certificate_expiry
            .remove(&crate::telemetry::TenantLabels {
                tenant: self.identity.name.clone(),
            });
        Ok(Purge::Done)
    }

    /// Removes every finalizer of the objects in `namespace` that hold its deletion; returns
    /// what it freed. The kinds a tenant can make and put a finalizer on.
    async fn remove_finalizers(&self, writer: &Writer<'_>, namespace: &str) -> Result<Vec<String>> {
        use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
        use k8s_openapi::api::batch::v1::CronJob;
        use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
        use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
        let resources = [
            ApiResource::erase::<ConfigMap>(&()),
            ApiResource::erase::<Secret>(&()),
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<ServiceAccount>(&()),
            ApiResource::erase::<Pod>(&()),
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            ApiResource::erase::<Deployment>(&()),
            ApiResource::erase::<StatefulSet>(&()),
            ApiResource::erase::<Job>(&()),
            ApiResource::erase::<CronJob>(&()),
            ApiResource::erase::<NetworkPolicy>(&()),
            ApiResource::erase::<Ingress>(&()),
        ];
        let mut freed = Vec::new();
        for resource in &resources {
            let listed = Api::<kube::api::DynamicObject>::namespaced_with(
                self.ctx.client.clone(),
                namespace,
                resource,
            )
            .list_metadata(&ListParams::default())
            .await
            .map_err(api(Phase::Purge, "list", &resource.kind, namespace))?;
            for object in listed.items.iter().filter(|o| {
                o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| !f.is_empty())
            }) {
                let name = object.name_any();
                writer.clear_finalizers(resource, namespace, &name).await?;
                freed.push(format!(
                    "{} {namespace}/{name} ({})",
                    resource.kind,
                    object
                        .metadata
                        .finalizers
                        .clone()
                        .unwrap_or_default()
                        .join(", ")
                ));
            }
        }
        Ok(freed)
    }

    /// Runs, once, the Job that forgets and prunes every snapshot of the tenant's repository
    /// and fails while one remains. `None` once that is done (or there are no backups);
    /// otherwise where it stands.
    async fn purge_repository(&self, writer: &Writer<'_>) -> Result<Option<String>> {
        let Ok(job) = desired::requests::purge_job(
            self.tenant,
            &self.identity,
            &self.config.backup,
            &self.config.namespace,
        ) else {
            return Ok(None);
        };
        let namespace = &self.config.namespace;
        let password = desired::backup::password_secret_name(&self.identity.name);
        // Without the password there is nothing left to purge (it goes last).
        if Api::<Secret>::namespaced(self.ctx.client.clone(), namespace)
            .get_metadata_opt(&password)
            .await
            .map_err(api(
                Phase::Purge,
                "get",
                "Secret",
                format!("{namespace}/{password}"),
            ))?
            .is_none()
        {
            return Ok(None);
        }
        let name = job.name_any();
        let live = Api::<Job>::namespaced(self.ctx.client.clone(), namespace)
            .get_opt(&name)
            .await
            .map_err(api(
                Phase::Purge,
                "get",
                "Job",
                format!("{namespace}/{name}"),
            ))?;
        let Some(live) = live else {
            writer
                .create_absent(
                    &job,
                    Note::normal(
                        "PurgeStarted",
                        "Delete",
                        format!("purging the backup repository with Job {namespace}/{name}"),
                    ),
                )
                .await?;
            return Ok(Some("backup repository purge started".into()));
        };
        let ended =
            |type_: &str| job_ended(&live, type_).map(|c| c.message.clone().unwrap_or_default());
        let jobs = ApiResource::erase::<Job>(&());
        if ended("Complete").is_some() {
            writer
                .remove(
                    &jobs,
                    Some(namespace),
                    &name,
                    live.metadata.uid.as_deref(),
                    Note::normal(
                        "RepositoryPurged",
                        "Delete",
                        "every backup snapshot of the tenant forgotten and pruned; none remains"
                            .into(),
                    ),
                )
                .await?;
            return Ok(None);
        }
        if let Some(message) = ended("Failed") {
            // Retried with a new Job on the next look; never skipped.
            writer
                .remove(
                    &jobs,
                    Some(namespace),
                    &name,
                    live.metadata.uid.as_deref(),
                    Note::warning(
                        "PurgeFailed",
                        "Delete",
                        format!("the backup repository purge failed, retrying: {message}"),
                    ),
                )
                .await?;
            return Ok(Some("backup repository purge failed, retrying".into()));
        }
        Ok(Some("backup repository purge running".into()))
    }
}
