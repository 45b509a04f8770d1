//! Applies a tenant's whole desired set, in order, then sweeps what it did not apply: one list
//! for both, so nothing is ever applied that is never swept.
//!
//! Each kind the applier is handed is registered for the sweep even when the list is empty
//! (a tenant whose `spec.tls` was removed hands no Certificate, and its Certificate must go).
//! Data kinds go through retention instead of deletion ([`super::retention`]): a namespace or
//! claim that leaves the spec is marked, kept until its deadline, then destroyed.
//!
//! Longer than most files, for a reason: the order things are applied in, what is registered
//! for the sweep, and what the sweep keeps through retention are one list read together.

use super::adjust::{claim_to_apply, keep_claim_templates};
use super::data::{create_key, delete_keys, purge_claim, release_volumes};
use super::retention::{Sweep, plan_sweep, purge_after};
use super::{Note, Writer, display_name};
use crate::cache::{Caches, Lookup};
use crate::desired::backup::BackupObjects;
use crate::desired::storage::{KeySecret, RETAINED, StorageObjects};
use crate::desired::tls::{PART, PART_TLS, TlsObjects};
use crate::desired::workloads::WorkloadObjects;
use crate::desired::{Desired, Identity};
use crate::error::{Phase, Result, api};
use crate::labels;
use crate::units::{shortest, until};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

/// A kind handed to the applier, with what of it was applied: the rest, carrying the tenant's
/// labels (and `selector`), is swept.
struct Registration {
    resource: ApiResource,
    /// What of the kind the caches hold, by selector; `None` for a kind they do not hold.
    cached: fn(&Caches, &str) -> Option<Vec<ObjectMeta>>,
    /// Labels besides the tenant's uid that select what may be swept.
    selector: String,
    wanted: BTreeSet<(String, String)>,
}

/// One tenant's apply and sweep.
pub struct Applier<'a> {
    writer: Writer<'a>,
    client: Client,
    caches: &'a Caches,
    identity: &'a Identity,
    /// The operator's namespace, where key Secrets live.
    operator_namespace: &'a str,
    retention: Duration,
    now: Timestamp,
    registered: Vec<Registration>,
    /// Objects read or written by this reconcile before the apply, by `(kind, namespace,
    /// name)`: fresher than the caches, which may not have seen the write yet.
    known: BTreeMap<(String, String, String), Option<Value>>,
    /// Whether cert-manager's `Certificate` is served: none can exist to sweep otherwise.
    certificates_served: bool,
    /// Namespaces and claims wanted, `(namespace, name)` (namespace empty for a Namespace).
    wanted_namespaces: BTreeSet<String>,
    wanted_claims: BTreeSet<(String, String)>,
    /// Zone namespaces this apply created: until access is granted (last), nobody but the
    /// operator and cluster admins can have made anything in them, so what the caches do not
    /// hold there is absent, not read.
    created_namespaces: BTreeSet<String>,
}

impl<'a> Applier<'a> {
    /// An applier writing through `writer`, keeping data out of the spec for `retention`.
    #[must_use]
    pub fn new(
        writer: &Writer<'a>,
        client: Client,
        caches: &'a Caches,
        identity: &'a Identity,
        operator_namespace: &'a str,
        retention: Duration,
    ) -> Self {
        Self {
            writer: writer.during(Phase::Apply),
            client,
            caches,
            identity,
            operator_namespace,
            retention,
            now: Timestamp::now(),
            registered: Vec::new(),
            known: BTreeMap::new(),
            certificates_served: true,
            wanted_namespaces: BTreeSet::new(),
            wanted_claims: BTreeSet::new(),
            created_namespaces: BTreeSet::new(),
        }
    }

    /// Applies every object of `desired`, isolation first (a zone's default-deny stands before
    /// anything runs in it), certificates before the workloads that mount them, the backup
    /// password before the CronJobs that need it, the tenant's access last (see
    /// `created_namespaces`). Destructured whole: a new field does not
    /// compile until it is applied here, and so swept.
    ///
    /// # Errors
    /// The first write the API server refuses.
    pub async fn apply(&mut self, desired: Desired) -> Result<()> {
        let Desired {
            namespaces,
            network_policies,
            role_bindings,
            resource_quotas,
            limit_ranges,
            workloads:
                WorkloadObjects {
                    deployments,
                    stateful_sets,
                    disruption_budgets,
                    services,
                },
            storage:
                StorageObjects {
                    storage_classes,
                    claims,
                    keys,
                },
            backup:
                BackupObjects {
                    service_accounts,
                    cron_jobs,
                    operator_ca,
                    password,
                    network_policies: backup_policies,
                },
            security,
            report,
            tls:
                TlsObjects {
                    policies,
                    bundles,
                    secrets,
                    certificates,
                    issued_elsewhere,
                },
        } = desired;
        // One refused object must not hold up the rest (a stop, a renewal, the status): every
        // step runs, and the first failure is returned at the end. What failed is still
        // wanted, so the sweep never takes it.
        let mut failures = Vec::new();
        let mut step = |result: Result<()>| {
            if let Err(error) = result {
                tracing::warn!(%error, "apply failed; going on with the rest");
                failures.push(error);
            }
        };
        step(self.namespaces(&namespaces).await);
        step(self.apply_kind(&network_policies, "").await);
        step(self.apply_kind(&backup_policies, "").await);
        step(self.apply_kind(&resource_quotas, "").await);
        step(self.apply_kind(&limit_ranges, "").await);
        // Shared by every tenant asking for the same class: never swept by one of them.
        for class in &storage_classes {
            let live = self.live(class).await;
            step(match live {
                Ok(live) => self.writer.apply(class, live.as_ref()).await.map(|_| ()),
                Err(error) => Err(error),
            });
        }
        for key in keys.iter().chain(&password) {
            step(self.create_key(key).await);
        }
        step(self.claims(&claims).await);
        // TLS Secrets are told from key Secrets by a label: only they are swept.
        let tls_secrets = format!("{PART}={PART_TLS}");
        step(self.apply_kind(&secrets, &tls_secrets).await);
        for (namespace, name) in issued_elsewhere {
            self.register::<Secret>(&tls_secrets)
                .insert((namespace, name));
        }
        step(self.apply_kind(&bundles, "").await);
        step(self.apply_kind(&policies, "").await);
        step(self.apply_kind(&security, "").await);
        step(self.apply_kind(&report, "").await);
        step(self.certificates(certificates).await);
        step(self.apply_kind(&services, "").await);
        step(self.apply_kind(&disruption_budgets, "").await);
        step(self.apply_kind(&deployments, "").await);
        step(self.stateful_sets(&stateful_sets).await);
        step(self.apply_kind(&service_accounts, "").await);
        step(self.apply_kind(&operator_ca, "").await);
        step(self.apply_kind(&cron_jobs, "").await);
        // Access last: a zone namespace created above holds only the operator's objects
        // until its bindings let the tenant's people in. From the first binding on, an
        // admin could make the next one's name first: the bindings are looked up again.
        self.created_namespaces.clear();
        step(self.apply_kind(&role_bindings, "").await);
        failures.into_iter().next().map_or(Ok(()), Err)
    }

    /// Deletes what carries the tenant's labels but was not applied, and puts the data kinds
    /// through retention. Returns how soon the next retention deadline falls.
    ///
    /// # Errors
    /// The first read or delete the API server refuses.
    pub async fn sweep(&self) -> Result<Option<Duration>> {
        let writer = self.writer.during(Phase::Sweep);
        for registration in &self.registered {
            let selector = match registration.selector.as_str() {
                "" => self.identity.selector(),
                // TLS Secrets cert-manager writes carry the uid, not the managed-by label.
                extra => format!("{}={},{extra}", labels::TENANT_UID, self.identity.uid),
            };
            let kind = &registration.resource.kind;
            let owned = match (registration.cached)(self.caches, &selector) {
                Some(cached) => cached,
                None => {
                    let listed =
                        Api::<DynamicObject>::all_with(self.client.clone(), &registration.resource)
                            .list_metadata(&ListParams::default().labels(&selector))
                            .await;
                    match listed {
                        Ok(list) => list.items.into_iter().map(|o| o.metadata).collect(),
                        // A kind whose CRD is not installed (cert-manager's) has nothing to
                        // sweep.
                        Err(kube::Error::Api(status)) if status.code == 404 => continue,
                        Err(error) => {
                            return Err(api(Phase::Sweep, "list", kind, &selector)(error));
                        }
                    }
                }
            };
            for meta in owned {
                let key = (
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                );
                if registration.wanted.contains(&key) || meta.deletion_timestamp.is_some() {
                    continue;
                }
                let object = display_name(Some(&key.0), &key.1);
                writer
                    .remove(
                        &registration.resource,
                        Some(&key.0),
                        &key.1,
                        meta.uid.as_deref(),
                        Note::normal(
                            "Deleted",
                            "Delete",
                            format!("deleted {kind} {object}: no longer in the spec"),
                        ),
                    )
                    .await?;
            }
        }
        let claims = self.sweep_claims(&writer).await?;
        let namespaces = self.sweep_namespaces(&writer).await?;
        Ok([claims, namespaces].into_iter().flatten().min())
    }

    /// Objects this reconcile has just read or written (the quotas the split read and
    /// lowered): what the apply compares them against, rather than the caches.
    pub fn known<K: Resource<DynamicType = ()> + Serialize>(&mut self, objects: &[K]) {
        for object in objects {
            if let Ok(value) = serde_json::to_value(object) {
                let key = (
                    K::kind(&()).to_string(),
                    object.meta().namespace.clone().unwrap_or_default(),
                    object.meta().name.clone().unwrap_or_default(),
                );
                self.known.insert(key, Some(value));
            }
        }
    }

    /// The zone namespaces the preflight has just looked up (`None`: absent).
    pub fn known_namespaces(&mut self, found: &[(String, Option<Namespace>)]) {
        for (name, namespace) in found {
            let key = (
                Namespace::kind(&()).to_string(),
                String::new(),
                name.clone(),
            );
            let value = namespace
                .as_ref()
                .and_then(|n| serde_json::to_value(n).ok());
            self.known.insert(key, value);
        }
    }

    /// Tells whether cert-manager's `Certificate` is served (it is assumed to be): when it is
    /// not, none can exist, and the sweep does not list them.
    pub fn certificates_served(&mut self, served: bool) {
        self.certificates_served = served;
    }

    /// The live object `desired` names, if any: known from this reconcile, from the caches,
    /// or read.
    async fn live<K>(&self, desired: &K) -> Result<Option<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        let namespace = desired.meta().namespace.as_deref();
        let name = desired.meta().name.clone().unwrap_or_default();
        let key = (
            K::kind(&()).to_string(),
            namespace.unwrap_or_default().to_string(),
            name.clone(),
        );
        match self.known.get(&key) {
            Some(None) => return Ok(None),
            Some(Some(known)) => {
                if let Ok(known) = serde_json::from_value(known.clone()) {
                    return Ok(Some(known));
                }
            }
            None => {}
        }
        // Whatever a cache still holds there is from an earlier namespace of that name.
        if namespace.is_some_and(|ns| self.created_namespaces.contains(ns)) {
            return Ok(None);
        }
        self.caches
            .get_or_read::<K>(&self.client, namespace, &name)
            .await
            .map_err(api(
                Phase::Apply,
                "get",
                K::kind(&()),
                display_name(namespace, &name),
            ))
    }

    fn register<K>(&mut self, selector: &str) -> &mut BTreeSet<(String, String)>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        // The caches hold what carries Enclave's managed-by label; a sweep by other labels
        // (the TLS Secrets cert-manager writes carry the tenant's uid, not that label) lists
        // from the API server, where cert-manager can have written any.
        let cached: fn(&Caches, &str) -> Option<Vec<ObjectMeta>> =
            if selector.is_empty() || !self.certificates_served {
                Caches::metadata::<K>
            } else {
                |_, _| None
            };
        self.register_with(&ApiResource::erase::<K>(&()), selector, cached)
    }

    fn register_with(
        &mut self,
        resource: &ApiResource,
        selector: &str,
        cached: fn(&Caches, &str) -> Option<Vec<ObjectMeta>>,
    ) -> &mut BTreeSet<(String, String)> {
        let index = match self
            .registered
            .iter()
            .position(|r| r.resource.kind == resource.kind && r.selector == selector)
        {
            Some(index) => index,
            None => {
                self.registered.push(Registration {
                    resource: resource.clone(),
                    cached,
                    selector: selector.to_string(),
                    wanted: BTreeSet::new(),
                });
                self.registered.len() - 1
            }
        };
        &mut self.registered[index].wanted
    }

    /// Applies objects of a kind that holds no data, each unless it already matches, and
    /// registers the kind for the sweep (`selector`: labels besides the tenant's that what
    /// may be swept carries; empty for the managed-by label).
    ///
    /// # Errors
    /// The first read or write the API server refuses.
    pub async fn apply_kind<K>(&mut self, objects: &[K], selector: &str) -> Result<()>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + 'static,
    {
        self.register::<K>(selector);
        let mut first = None;
        for object in objects {
            // Wanted before it is applied: one that fails to apply is not swept.
            self.register::<K>(selector)
                .insert((object.namespace().unwrap_or_default(), object.name_any()));
            let applied = match self.live(object).await {
                Ok(live) => self.writer.apply(object, live.as_ref()).await.map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = applied {
                first.get_or_insert(error);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Creates a key Secret with fresh random keys, unless it exists: a key is never
    /// rewritten, or the data it encrypts would be lost. Keys are never swept; they go with
    /// the data they protect (a zone's purge, the tenant's purge).
    async fn create_key(&self, key: &KeySecret) -> Result<()> {
        let (namespace, name) = (key.secret.namespace(), key.secret.name_any());
        if let Lookup::Found(_) = self.caches.get::<Secret>(namespace.as_deref(), &name) {
            return Ok(());
        }
        create_key(&self.writer, &self.client, key)
            .await
            .map(|_| ())
    }

    /// Zone namespaces; a retained one wanted again loses its mark.
    async fn namespaces(&mut self, namespaces: &[Namespace]) -> Result<()> {
        for namespace in namespaces {
            let name = namespace.name_any();
            self.wanted_namespaces.insert(name.clone());
            let live = self.live(namespace).await?;
            if live
                .as_ref()
                .and_then(|ns| purge_after(&ns.metadata))
                .is_some()
            {
                self.writer
                    .unmark::<Namespace>(
                        None,
                        &name,
                        &[],
                        Note::normal(
                            "Restored",
                            "Update",
                            format!(
                                "zone namespace {name} is wanted again: retention mark removed"
                            ),
                        ),
                    )
                    .await?;
            }
            self.writer.apply(namespace, live.as_ref()).await?;
            if live.is_none() {
                self.created_namespaces.insert(name);
            }
        }
        Ok(())
    }

    /// Claims: grown when the spec grows (only once bound: Kubernetes refuses to resize an
    /// unbound claim, and the binding, watched, brings the growth); a retained claim wanted
    /// again loses its mark.
    async fn claims(&mut self, claims: &[PersistentVolumeClaim]) -> Result<()> {
        for claim in claims {
            let namespace = claim.namespace().unwrap_or_default();
            let name = claim.name_any();
            self.wanted_claims.insert((namespace.clone(), name.clone()));
            let live = self.live(claim).await?;
            if live
                .as_ref()
                .and_then(|c| purge_after(&c.metadata))
                .is_some()
            {
                self.writer
                    .unmark::<PersistentVolumeClaim>(
                        Some(&namespace),
                        &name,
                        &[RETAINED],
                        Note::normal(
                            "Restored",
                            "Update",
                            format!("volume claim {namespace}/{name} is wanted again: retention mark removed"),
                        ),
                    )
                    .await?;
            }
            let claim = claim_to_apply(claim, live.as_ref());
            self.writer.apply(&claim, live.as_ref()).await?;
        }
        Ok(())
    }

    /// StatefulSets. Their claim templates cannot change once created, and need not: the
    /// claims exist before the StatefulSet and grow on their own, so the live templates stay.
    ///
    /// # Errors
    /// The first read or write the API server refuses.
    pub async fn stateful_sets(&mut self, sets: &[StatefulSet]) -> Result<()> {
        let sets: Vec<StatefulSet> = {
            let mut adjusted = Vec::with_capacity(sets.len());
            for set in sets {
                let live = self.live(set).await?;
                adjusted.push(keep_claim_templates(set, live.as_ref()));
            }
            adjusted
        };
        self.apply_kind(&sets, "").await
    }

    /// cert-manager `Certificate`s, known only as JSON.
    async fn certificates(&mut self, certificates: Vec<Value>) -> Result<()> {
        let resource = crate::desired::tls::certificate_resource();
        if !self.certificates_served {
            self.register_with(&resource, "", |_, _| Some(Vec::new()));
            return Ok(());
        }
        self.register_with(&resource, "", |_, _| None);
        for certificate in certificates {
            let namespace = certificate["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = certificate["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let live =
                Api::<DynamicObject>::namespaced_with(self.client.clone(), &namespace, &resource)
                    .get_opt(&name)
                    .await
                    .map_err(api(
                        Phase::Apply,
                        "get",
                        &resource.kind,
                        display_name(Some(&namespace), &name),
                    ))?
                    .map(|live| serde_json::to_value(live).unwrap_or_default());
            self.writer
                .apply_json(&resource, certificate, live.as_ref())
                .await?;
            self.register_with(&resource, "", |_, _| None)
                .insert((namespace, name));
        }
        Ok(())
    }

    /// The metadata of the objects of `K` carrying `selector`: from the caches, or listed.
    async fn metadata<K>(&self, selector: &str, phase: Phase) -> Result<Vec<ObjectMeta>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        if let Some(cached) = self.caches.metadata::<K>(selector) {
            return Ok(cached);
        }
        Ok(Api::<K>::all(self.client.clone())
            .list_metadata(&ListParams::default().labels(selector))
            .await
            .map_err(api(phase, "list", K::kind(&()), selector))?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect())
    }

    /// Marks, keeps or purges the claims the spec no longer wants.
    async fn sweep_claims(&self, writer: &Writer<'_>) -> Result<Option<Duration>> {
        let selector = self.identity.selector();
        let owned = self
            .metadata::<PersistentVolumeClaim>(&selector, Phase::Sweep)
            .await?;
        let mut by_namespace: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for claim in owned {
            by_namespace
                .entry(claim.namespace.clone().unwrap_or_default())
                .or_default()
                .push(claim);
        }
        let mut next = None;
        for (namespace, metas) in by_namespace {
            let wanted: BTreeSet<String> = self
                .wanted_claims
                .iter()
                .filter(|(n, _)| *n == namespace)
                .map(|(_, name)| name.clone())
                .collect();
            for step in plan_sweep(&metas, &wanted, self.now, self.retention) {
                match step {
                    Sweep::Unmark(_) => {} // done by the apply
                    Sweep::Mark { name, purge_after } => {
                        writer
                            .mark_retained::<PersistentVolumeClaim>(
                                Some(&namespace),
                                &name,
                                &[RETAINED],
                                purge_after,
                                Note::normal("Retained", "Retain", format!("volume claim {namespace}/{name} left the spec; its data is kept until {purge_after}")),
                            )
                            .await?;
                        next = Some(shortest(next, until(self.now, purge_after)));
                    }
                    Sweep::Purge(name) => {
                        purge_claim(writer, &self.client, &namespace, &name).await?;
                    }
                    Sweep::Wait(deadline) => next = Some(shortest(next, until(self.now, deadline))),
                }
            }
        }
        Ok(next)
    }

    /// Marks, keeps or purges the zone namespaces the spec no longer wants; a purged zone's
    /// volumes are released and its keys deleted with it.
    async fn sweep_namespaces(&self, writer: &Writer<'_>) -> Result<Option<Duration>> {
        let selector = self.identity.selector();
        let metas = self.metadata::<Namespace>(&selector, Phase::Sweep).await?;
        let mut next = None;
        for step in plan_sweep(&metas, &self.wanted_namespaces, self.now, self.retention) {
            match step {
                Sweep::Unmark(_) => {} // done before the apply
                Sweep::Mark { name, purge_after } => {
                    writer
                        .mark_retained::<Namespace>(
                            None,
                            &name,
                            &[],
                            purge_after,
                            Note::normal("Retained", "Retain", format!("zone namespace {name} left the spec; its data is kept until {purge_after}")),
                        )
                        .await?;
                    next = Some(shortest(next, until(self.now, purge_after)));
                }
                Sweep::Purge(name) => {
                    release_volumes(writer, &self.client, &selector, Some(&name)).await?;
                    let zone = metas
                        .iter()
                        .find(|m| m.name.as_deref() == Some(name.as_str()))
                        .and_then(|m| m.labels.as_ref()?.get(labels::ZONE).cloned())
                        .unwrap_or_default();
                    delete_keys(
                        writer,
                        &self.client,
                        self.operator_namespace,
                        &format!("{selector},{}={zone}", labels::ZONE),
                    )
                    .await?;
                    writer
                        .remove(
                            &ApiResource::erase::<Namespace>(&()),
                            None,
                            &name,
                            metas
                                .iter()
                                .find(|m| m.name.as_deref() == Some(name.as_str()))
                                .and_then(|m| m.uid.as_deref()),
                            Note::normal(
                                "Purged",
                                "Delete",
                                format!(
                                    "deleted namespace {name}: its retention window has passed"
                                ),
                            ),
                        )
                        .await?;
                }
                Sweep::Wait(deadline) => next = Some(shortest(next, until(self.now, deadline))),
            }
        }
        Ok(next)
    }
}
