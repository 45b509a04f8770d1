//! The only code that writes to the API server. Every write (apply, create, mark, unmark,
//! disown, release, delete, finalizer, status) goes through a [`Writer`], which counts it in
//! the write metric and records an Event naming the object by its real apiVersion and kind.
//!
//! Reads stay with the steps that need them (look-before-write in the [`applier`], the
//! snapshot of the status); writes are here so that "what may the operator change" has one
//! answer.
//!
//! Longer than most files, for a reason: it is the inventory of every kind of write the
//! operator makes; split, it would no longer be one place.

pub mod adjust;
pub mod applier;
pub mod apply;
pub mod data;
pub mod retention;

use crate::error::{Error, Phase, Result, api};
use crate::labels::{self, MANAGER};
use crate::telemetry::Metrics;
use apply::{Change, comparable, is_subset};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::sync::Arc;
use tracing::{info, warn};

/// The client, who records Events, and the write metric, built once.
#[derive(Clone)]
pub struct Gateway {
    client: Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// A gateway over `client`, its Events reported as `reporter`.
    #[must_use]
    pub fn new(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            reporter,
            metrics,
        }
    }

    /// The client, for reads.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A writer for the work of `phase` about `regarding` (the Tenant or request that Events
    /// go to; none for the operator's own shared objects).
    #[must_use]
    pub fn writer(&self, phase: Phase, regarding: Option<ObjectReference>) -> Writer<'_> {
        Writer {
            gateway: self,
            phase,
            regarding,
            // One recorder per writer (a reconcile, a request): kube-runtime's keeps every
            // Event it published for six minutes and scans them all at each publish, which
            // at a thousand tenants starting is tens of megabytes and quadratic time.
            recorder: Recorder::new(self.client.clone(), self.reporter.clone()),
        }
    }

    /// Asks the API server to review a token: a create that changes nothing stored, here so
    /// that every `create` the operator makes is in this module.
    ///
    /// # Errors
    /// When the API server refuses the review.
    pub async fn review_token(client: &Client, review: &TokenReview) -> Result<TokenReview> {
        Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), review)
            .await
            .map_err(api(Phase::Broker, "create", "TokenReview", ""))
    }
}

/// Writes on behalf of one step about one object (see [`Gateway::writer`]).
#[derive(Clone)]
pub struct Writer<'a> {
    gateway: &'a Gateway,
    phase: Phase,
    regarding: Option<ObjectReference>,
    recorder: Recorder,
}

/// An Event to record about the regarding object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What the operator did (`Apply`, `Delete`, `Retain`, ...).
    pub action: &'static str,
    /// For a person.
    pub text: String,
}

impl Note {
    /// A Normal Event.
    #[must_use]
    pub fn normal(reason: &str, action: &'static str, text: String) -> Self {
        Self {
            warning: false,
            reason: reason.to_string(),
            action,
            text,
        }
    }

    /// A Warning Event.
    #[must_use]
    pub fn warning(reason: &str, action: &'static str, text: String) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, text)
        }
    }
}

/// Names an object in messages: `namespace/name`, or `name` when cluster-scoped.
#[must_use]
pub fn display_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_string(),
    }
}

impl Writer<'_> {
    /// The same writer for another phase.
    #[must_use]
    pub fn during(&self, phase: Phase) -> Self {
        Self {
            phase,
            ..self.clone()
        }
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) if !namespace.is_empty() => {
                Api::namespaced_with(self.gateway.client.clone(), namespace, resource)
            }
            _ => Api::all_with(self.gateway.client.clone(), resource),
        }
    }

    fn failed(
        &self,
        verb: &'static str,
        kind: &str,
        object: &str,
    ) -> impl FnOnce(kube::Error) -> Error {
        api(self.phase, verb, kind, object)
    }

    /// Applies `desired` (server-side apply, the operator's field manager, forced) unless
    /// `live` already holds every field of it: a tenant at rest costs no write.
    ///
    /// # Errors
    /// When the object cannot be serialised or the API server refuses the apply.
    pub async fn apply<K>(&self, desired: &K, live: Option<&K>) -> Result<Change>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
    {
        let resource = ApiResource::erase::<K>(&());
        let serialization = |source| Error::Serialization {
            kind: resource.kind.clone(),
            source,
        };
        let desired = serde_json::to_value(desired).map_err(serialization)?;
        let live = live
            .map(serde_json::to_value)
            .transpose()
            .map_err(serialization)?;
        self.apply_json(&resource, desired, live.as_ref()).await
    }

    /// [`Self::apply`] for an object known only by its [`ApiResource`] (a cert-manager
    /// `Certificate`).
    ///
    /// # Errors
    /// When the API server refuses the apply.
    pub async fn apply_json(
        &self,
        resource: &ApiResource,
        mut desired: Value,
        live: Option<&Value>,
    ) -> Result<Change> {
        if let Value::Object(map) = &mut desired {
            map.insert("apiVersion".into(), resource.api_version.clone().into());
            map.insert("kind".into(), resource.kind.clone().into());
        }
        let namespace = desired["metadata"]["namespace"]
            .as_str()
            .map(str::to_string);
        let name = desired["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let object = display_name(namespace.as_deref(), &name);
        // Look before write, and before anything: an object someone else made first (a
        // CronJob with a container of theirs, a claim with an owner of theirs) is never
        // adopted: a forced apply would keep what they put in it, under Enclave's name.
        if let Some(live) = live
            && live["metadata"]["labels"][labels::MANAGED_BY].as_str() != Some(MANAGER)
        {
            return Err(Error::Foreign {
                phase: self.phase,
                kind: resource.kind.clone(),
                object,
            });
        }
        let change = match live {
            None => Change::Created,
            Some(live) if !is_subset(&comparable(&desired, live), live) => Change::Updated,
            Some(_) => return Ok(Change::Unchanged),
        };
        // The object compared against, and no other: one deleted since it was read (from a
        // cache that lags, say) and made again under the same name by someone else is not
        // written to (409, left for the next reconcile, which reads it afresh).
        if let Some(uid) = live.and_then(|live| live["metadata"]["uid"].as_str())
            && let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("uid".into(), uid.into());
        }
        self.api(resource, namespace.as_deref())
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(crate::error::replaced_since_read)
            .map_err(self.failed("apply", &resource.kind, &object))?;
        let (reason, verb) = match change {
            Change::Created => ("Created", "created"),
            _ => ("Updated", "restored or changed"),
        };
        self.recorded(
            resource,
            namespace.as_deref(),
            &name,
            if change == Change::Created {
                "create"
            } else {
                "update"
            },
            Note::normal(
                reason,
                "Apply",
                format!("{verb} {} {object}", resource.kind),
            ),
        )
        .await;
        Ok(change)
    }

    /// Creates `object` unless it exists. True when it was created now; an object created
    /// meanwhile by someone else (409) stands.
    ///
    /// # Errors
    /// When the API server refuses the create for another reason.
    pub async fn create_absent<K>(&self, object: &K, note: Note) -> Result<bool>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
    {
        let resource = ApiResource::erase::<K>(&());
        let namespace = object.meta().namespace.clone();
        let name = object.meta().name.clone().unwrap_or_default();
        let object_name = display_name(namespace.as_deref(), &name);
        let dynamic: DynamicObject = serde_json::to_value(object)
            .and_then(serde_json::from_value)
            .map_err(|source| Error::Serialization {
                kind: resource.kind.clone(),
                source,
            })?;
        let mut dynamic = dynamic;
        dynamic.types = Some(kube::core::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        match self
            .api(&resource, namespace.as_deref())
            .create(&PostParams::default(), &dynamic)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(false),
            Err(error) => return Err(self.failed("create", &resource.kind, &object_name)(error)),
        }
        self.recorded(
            &ApiResource::erase::<K>(&()),
            namespace.as_deref(),
            &name,
            "create",
            note,
        )
        .await;
        Ok(true)
    }

    /// Merge-patches an object (`metadata` marks, a reclaim policy, owner references) and
    /// records `note`.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn patch<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        note: Option<Note>,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let resource = ApiResource::erase::<K>(&());
        self.api(&resource, namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(self.failed("patch", &resource.kind, &display_name(namespace, name)))?;
        match note {
            Some(note) => {
                self.recorded(&resource, namespace, name, "update", note)
                    .await;
            }
            None => self.gateway.metrics.write(&resource.kind, "update"),
        }
        Ok(())
    }

    /// Applies only `fields` of an object someone else made and owns (the `caBundle`s of the
    /// chart's webhook configuration), under the operator's field manager: the owner's fields
    /// stay the owner's, and neither side undoes the other's.
    ///
    /// # Errors
    /// When the API server refuses the apply.
    pub async fn apply_fields<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        fields: &Value,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let resource = ApiResource::erase::<K>(&());
        self.api(&resource, namespace)
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(fields),
            )
            .await
            .map_err(self.failed("apply", &resource.kind, &display_name(namespace, name)))?;
        self.gateway.metrics.write(&resource.kind, "update");
        info!(kind = %resource.kind, name = %display_name(namespace, name), "fields applied");
        Ok(())
    }

    /// Deletes an object (in the background: what it owns goes after it). A 404 is no error:
    /// the object is gone, as asked.
    ///
    /// With the `uid` of the object the decision was made on, only that very object is
    /// deleted: one deleted and made again under its name since (by a tenant, from a cache
    /// that lags) is left alone (a 409 the API server answers to the precondition), for the
    /// next reconcile to judge.
    ///
    /// # Errors
    /// When the API server refuses the delete.
    pub async fn remove(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        uid: Option<&str>,
        note: Note,
    ) -> Result<()> {
        let mut params = DeleteParams::background();
        if let Some(uid) = uid {
            params = params.preconditions(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            });
        }
        match self.api(resource, namespace).delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 && uid.is_some() => {
                info!(kind = %resource.kind, name = %display_name(namespace, name),
                    "not deleted: another object has taken its name since it was read");
                return Ok(());
            }
            Err(error) => {
                return Err(self.failed(
                    "delete",
                    &resource.kind,
                    &display_name(namespace, name),
                )(error));
            }
        }
        self.recorded(resource, namespace, name, "delete", note)
            .await;
        Ok(())
    }

    /// Marks a data object (a namespace or claim out of the spec) as retained until
    /// `purge_after`; `extra_labels` are set beside the mark.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn mark_retained<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        extra_labels: &[&str],
        purge_after: k8s_openapi::jiff::Timestamp,
        note: Note,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let labels: serde_json::Map<String, Value> = extra_labels
            .iter()
            .map(|l| ((*l).to_string(), Value::from("true")))
            .collect();
        let patch = json!({"metadata": {
            "labels": labels,
            "annotations": {labels::PURGE_AFTER: purge_after.to_string()}}});
        self.patch::<K>(namespace, name, &patch, Some(note)).await
    }

    /// Removes the retention mark (and `extra_labels`) of an object wanted again.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn unmark<K>(
        &self,
        namespace: Option<&str>,
        name: &str,
        extra_labels: &[&str],
        note: Note,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let labels: serde_json::Map<String, Value> = extra_labels
            .iter()
            .map(|l| ((*l).to_string(), Value::Null))
            .collect();
        let patch = json!({"metadata": {
            "labels": labels,
            "annotations": {labels::PURGE_AFTER: null}}});
        self.patch::<K>(namespace, name, &patch, Some(note)).await
    }

    /// Removes an object's owner references, so that no deletion of its owner lets the
    /// garbage collector take it.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn disown<K>(&self, namespace: Option<&str>, name: &str) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        self.patch::<K>(
            namespace,
            name,
            &json!({"metadata": {"ownerReferences": null}}),
            None,
        )
        .await
    }

    /// Removes every finalizer of an object (a purge past its grace period: what holds a
    /// namespace's deletion).
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn clear_finalizers(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<()> {
        let object = display_name(Some(namespace), name);
        self.api(resource, Some(namespace))
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
            )
            .await
            .map_err(self.failed("patch", &resource.kind, &object))?;
        self.gateway.metrics.write(&resource.kind, "update");
        Ok(())
    }

    /// Switches a volume to `Delete`, so that deleting its claim destroys the data.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn release_volume(&self, volume: &str) -> Result<()> {
        let patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}});
        self.patch::<PersistentVolume>(None, volume, &patch, None)
            .await
    }

    /// Sets the finalizers of a cluster-scoped object, as a compare-and-swap on
    /// `resource_version`: a concurrent change gives 409 and a retry.
    ///
    /// # Errors
    /// When the API server refuses the patch (409 included).
    pub async fn set_finalizers<K>(
        &self,
        name: &str,
        finalizers: &[String],
        resource_version: Option<String>,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let patch =
            json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
        self.patch::<K>(None, name, &patch, None).await
    }

    /// Writes the `status` of `name` by server-side apply: a field the new status leaves out
    /// is removed, unlike with a merge patch. Returns the resourceVersion it gave the object.
    ///
    /// # Errors
    /// When the API server refuses the patch.
    pub async fn write_status<K, S>(&self, name: &str, status: &S) -> Result<Option<String>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>,
        S: Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let patch =
            json!({"apiVersion": resource.api_version, "kind": resource.kind, "status": status});
        let written = Api::<DynamicObject>::all_with(self.gateway.client.clone(), &resource)
            .patch_status(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(self.failed("apply status of", &resource.kind, name))?;
        self.gateway.metrics.write(&resource.kind, "status");
        Ok(written.metadata.resource_version)
    }

    /// Counts a write and records its Event about the object.
    async fn recorded(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        action: &str,
        note: Note,
    ) {
        self.gateway.metrics.write(&resource.kind, action);
        info!(kind = %resource.kind, name = %display_name(namespace, name), action, "written");
        let object = ObjectReference {
            api_version: Some(resource.api_version.clone()),
            kind: Some(resource.kind.clone()),
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
            name: Some(name.to_string()),
            ..ObjectReference::default()
        };
        self.publish_about(note, Some(object)).await;
    }

    /// Records an Event about the regarding object; a failure is logged, never fatal.
    pub async fn publish(&self, note: Note) {
        self.publish_about(note, None).await;
    }

    /// Records an Event about the regarding object and one of its objects (`related`), so
    /// that changes to different objects stay separate Events rather than one series.
    async fn publish_about(&self, note: Note, related: Option<ObjectReference>) {
        let Some(regarding) = &self.regarding else {
            return;
        };
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason,
            note: Some(note.text),
            action: note.action.to_string(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            warn!(%error, "could not publish event");
        }
    }
}
