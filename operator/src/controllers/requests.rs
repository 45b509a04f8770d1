//! The controllers of on-demand requests (R12): `TenantRestore` and `TenantExport` each run
//! Jobs (see `desired::requests`) and report them in their own status.

use crate::cluster::{Gateway, Note, Writer};
use crate::config::Config;
use crate::desired::requests::{
    REQUEST, export_job, export_location, export_objects_name, export_password_name, restore_jobs,
};
use crate::desired::{Identity, storage::KeySecret};
use crate::error::{Error, Phase, Result, api};
use enclave_crds::{RequestPhase, RequestStatus, Tenant, TenantExport, TenantRestore};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

struct Context {
    client: Client,
    gateway: Gateway,
    config: tokio::sync::watch::Receiver<Config>,
}

/// Runs both request controllers until `shutdown` resolves.
pub async fn run(
    gateway: Gateway,
    config: tokio::sync::watch::Receiver<Config>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = gateway.client().clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        gateway,
        config,
    });
    let managed = crate::labels::managed_selector();
    let jobs = || Api::<Job>::all(client.clone());
    let restores = Controller::new(
        Api::<TenantRestore>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        jobs(),
        watcher::Config::default().labels(&managed),
        by_request::<TenantRestore>("enclave-restore-"),
    )
    .trigger_backoff(super::TriggerBackoff)
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_restore, retry, ctx.clone())
    .for_each(|r| async move {
        if let Err(error) = r {
            warn!(%error, "restore reconcile failed");
        }
    });
    let exports = Controller::new(
        Api::<TenantExport>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        jobs(),
        watcher::Config::default().labels(&managed),
        by_request::<TenantExport>("enclave-export-"),
    )
    .trigger_backoff(super::TriggerBackoff)
    .graceful_shutdown_on(shutdown)
    .run(reconcile_export, retry, ctx)
    .for_each(|r| async move {
        if let Err(error) = r {
            warn!(%error, "export reconcile failed");
        }
    });
    futures::join!(restores, exports);
}

/// Maps a request's Job (named `<prefix><request>`, labelled with it) to the request.
fn by_request<K>(prefix: &'static str) -> impl Fn(Job) -> Option<ObjectRef<K>> + Clone
where
    K: Resource<DynamicType = ()>,
{
    move |job: Job| {
        let name = job.labels().get(REQUEST)?.clone();
        job.name_any()
            .starts_with(prefix)
            .then(|| ObjectRef::new(&name))
    }
}

#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime asks for
fn retry<K>(_: Arc<K>, _: &Error, _: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5))
}

fn done(status: Option<&RequestStatus>) -> bool {
    matches!(
        status.and_then(|s| s.phase),
        Some(RequestPhase::Succeeded | RequestPhase::Failed)
    )
}

/// The status a set of Jobs gives: Succeeded when all completed, Failed when one failed,
/// else Running.
fn from_jobs(jobs: &[Job]) -> RequestStatus {
    let finished = |job: &Job, type_: &str| {
        crate::status::job_ended(job, type_)
            .map(|c| (c.last_transition_time.clone(), c.message.clone()))
    };
    let names = jobs
        .iter()
        .map(|j| format!("{}/{}", j.namespace().unwrap_or_default(), j.name_any()))
        .collect();
    let start_time = jobs
        .iter()
        .filter_map(|j| j.metadata.creation_timestamp.clone())
        .min_by_key(|t| t.0);
    if let Some((job, (at, message))) = jobs
        .iter()
        .find_map(|j| finished(j, "Failed").map(|f| (j, f)))
    {
        return RequestStatus {
            phase: Some(RequestPhase::Failed),
            message: Some(format!(
                "Job {} failed: {}",
                job.name_any(),
                message.unwrap_or_default()
            )),
            jobs: names,
            start_time,
            completion_time: at,
            ..RequestStatus::default()
        };
    }
    let completed: Vec<_> = jobs
        .iter()
        .filter_map(|j| finished(j, "Complete"))
        .collect();
    if !jobs.is_empty() && completed.len() == jobs.len() {
        return RequestStatus {
            phase: Some(RequestPhase::Succeeded),
            message: Some(format!("{} Job(s) completed", jobs.len())),
            jobs: names,
            start_time,
            completion_time: completed
                .into_iter()
                .filter_map(|c| c.0)
                .max_by_key(|t| t.0),
            ..RequestStatus::default()
        };
    }
    RequestStatus {
        phase: Some(RequestPhase::Running),
        message: Some(format!("{} of {} Job(s) done", completed.len(), jobs.len())),
        jobs: names,
        start_time,
        ..RequestStatus::default()
    }
}

/// The tenant a request is about; or, as `Err`, what to do instead: nothing more for a request
/// already done, look again later (status `Pending`) while the tenant does not exist.
async fn subject<K>(
    client: &Client,
    writer: &Writer<'_>,
    request: &K,
    status: Option<&RequestStatus>,
    tenant: &str,
) -> Result<std::result::Result<(Tenant, Identity), Action>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>,
{
    if done(status) {
        return Ok(Err(Action::await_change()));
    }
    let Some(found) = Api::<Tenant>::all(client.clone())
        .get_opt(tenant)
        .await
        .map_err(api(Phase::Request, "get", "Tenant", tenant))?
    else {
        writer
            .write_status::<K, _>(
                &request.name_any(),
                &pending(format!("tenant {tenant} not found")),
            )
            .await?;
        return Ok(Err(Action::requeue(Duration::from_secs(10))));
    };
    match Identity::of(&found) {
        Ok(identity) => Ok(Ok((found, identity))),
        Err(_) => Ok(Err(Action::await_change())),
    }
}

fn pending(message: String) -> RequestStatus {
    RequestStatus {
        phase: Some(RequestPhase::Pending),
        message: Some(message),
        ..RequestStatus::default()
    }
}

fn failed(message: String) -> RequestStatus {
    RequestStatus {
        phase: Some(RequestPhase::Failed),
        message: Some(message),
        completion_time: Some(Time(crate::status::seconds(Timestamp::now()))),
        ..RequestStatus::default()
    }
}

/// Creates each Job unless it exists, and returns them as the API server holds them.
async fn ensure_jobs(client: &Client, writer: &Writer<'_>, desired: &[Job]) -> Result<Vec<Job>> {
    let mut live = Vec::new();
    for job in desired {
        let namespace = job.namespace().unwrap_or_default();
        let name = job.name_any();
        let api_ = Api::<Job>::namespaced(client.clone(), &namespace);
        let failed = |verb| api(Phase::Request, verb, "Job", format!("{namespace}/{name}"));
        if api_.get_opt(&name).await.map_err(failed("get"))?.is_none() {
            writer
                .create_absent(
                    job,
                    Note::normal(
                        "JobCreated",
                        "Create",
                        format!("created Job {namespace}/{name}"),
                    ),
                )
                .await?;
        }
        live.push(api_.get(&name).await.map_err(failed("get"))?);
    }
    Ok(live)
}

async fn reconcile_restore(request: Arc<TenantRestore>, ctx: Arc<Context>) -> Result<Action> {
    let writer = ctx
        .gateway
        .writer(Phase::Request, Some(request.object_ref(&())));
    let (tenant, identity) = match subject(
        &ctx.client,
        &writer,
        &*request,
        request.status.as_ref(),
        &request.spec.tenant,
    )
    .await?
    {
        Ok(subject) => subject,
        Err(action) => return Ok(action),
    };
    let config = ctx.config.borrow().clone();
    let status = match restore_jobs(
        &request,
        &tenant,
        &identity,
        &config.backup,
        config.broker_url.as_deref(),
    ) {
        Err(invalid) => failed(format!("{}: {}", invalid.reason, invalid.message)),
        Ok(desired) => {
            let mut desired = desired;
            for job in &mut desired {
                job.metadata.owner_references = request.controller_owner_ref(&()).map(|o| vec![o]);
            }
            from_jobs(&ensure_jobs(&ctx.client, &writer, &desired).await?)
        }
    };
    if request.status.as_ref() != Some(&status) {
        writer
            .write_status::<TenantRestore, _>(&request.name_any(), &status)
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn reconcile_export(request: Arc<TenantExport>, ctx: Arc<Context>) -> Result<Action> {
    let writer = ctx
        .gateway
        .writer(Phase::Request, Some(request.object_ref(&())));
    let (tenant, identity) = match subject(
        &ctx.client,
        &writer,
        &*request,
        request.status.as_ref(),
        &request.spec.tenant,
    )
    .await?
    {
        Ok(subject) => subject,
        Err(action) => return Ok(action),
    };
    let config = ctx.config.borrow().clone();
    let name = request.name_any();
    let job = match export_job(
        &request,
        &tenant,
        &identity,
        &config.backup,
        &config.namespace,
    ) {
        Err(invalid) => {
            let status = failed(format!("{}: {}", invalid.reason, invalid.message));
            writer
                .write_status::<TenantExport, _>(&request.name_any(), &status)
                .await?;
            return Ok(Action::await_change());
        }
        Ok(mut job) => {
            job.metadata.owner_references = request.controller_owner_ref(&()).map(|o| vec![o]);
            job
        }
    };
    // The export's own password, and the tenant's objects, before the Job that reads them.
    let mut labels = identity.labels();
    labels.insert(REQUEST.into(), name.clone());
    let password = KeySecret {
        secret: Secret {
            metadata: ObjectMeta {
                name: Some(export_password_name(&name)),
                namespace: Some(config.namespace.clone()),
                labels: Some(labels.clone()),
                owner_references: request.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            ..Secret::default()
        },
        key_fields: ["password".to_string()].into(),
    };
    crate::cluster::data::create_key(&writer, &ctx.client, &password).await?;
    let objects_name = export_objects_name(&name);
    if Api::<Secret>::namespaced(ctx.client.clone(), &config.namespace)
        .get_metadata_opt(&objects_name)
        .await
        .map_err(api(
            Phase::Request,
            "get",
            "Secret",
            format!("{}/{objects_name}", config.namespace),
        ))?
        .is_none()
    {
        let yaml = tenant_objects(&ctx.client, &tenant).await?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(export_objects_name(&name)),
                namespace: Some(config.namespace.clone()),
                labels: Some(labels),
                owner_references: request.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            string_data: Some([("objects.yaml".to_string(), yaml)].into()),
            ..Secret::default()
        };
        writer
            .create_absent(
                &secret,
                Note::normal(
                    "Created",
                    "Create",
                    format!(
                        "created Secret {}/{objects_name}: the tenant's objects",
                        config.namespace
                    ),
                ),
            )
            .await?;
    }
    let live = ensure_jobs(&ctx.client, &writer, std::slice::from_ref(&job)).await?;
    let mut status = from_jobs(&live);
    if status.phase == Some(RequestPhase::Succeeded) {
        status.location = export_location(&tenant, &identity.uid, &name).ok();
        status.sha256 = reported_sha256(&ctx.client, &job).await?;
        if status.sha256.is_none() {
            status.message = Some(
                "the Job completed but its pod reported no SHA-256 (termination message)".into(),
            );
        }
    }
    if request.status.as_ref() != Some(&status) {
        writer
            .write_status::<TenantExport, _>(&request.name_any(), &status)
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// The `sha256=<hex>` the export pod wrote to its termination message.
async fn reported_sha256(client: &Client, job: &Job) -> Result<Option<String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), &job.namespace().unwrap_or_default())
        .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
        .await
        .map_err(api(
            Phase::Request,
            "list",
            "Pod",
            format!("job-name={}", job.name_any()),
        ))?;
    Ok(pods
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .find_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("sha256="))
                .map(|s| s.trim().to_string())
        }))
}

/// The tenant and its objects, as YAML documents: what a full export carries besides data.
async fn tenant_objects(client: &Client, tenant: &Tenant) -> Result<String> {
    fn clean(mut value: serde_json::Value) -> serde_json::Value {
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for key in ["managedFields", "resourceVersion", "uid", "generation"] {
                meta.remove(key);
            }
        }
        value
    }
    async fn all<K>(
        client: &Client,
        namespace: &str,
        out: &mut Vec<serde_json::Value>,
    ) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        for object in Api::<K>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(api(Phase::Request, "list", K::kind(&()), namespace))?
        {
            let mut value =
                serde_json::to_value(&object).map_err(|source| Error::Serialization {
                    kind: K::kind(&()).to_string(),
                    source,
                })?;
            value["apiVersion"] = json!(K::api_version(&()));
            value["kind"] = json!(K::kind(&()));
            out.push(clean(value));
        }
        Ok(())
    }
    let namespaces: Vec<String> = tenant
        .spec
        .zones
        .iter()
        .map(|zone| tenant.zone_namespace(&zone.name))
        .collect();
    let tenant = serde_json::to_value(tenant).map_err(|source| Error::Serialization {
        kind: "Tenant".into(),
        source,
    })?;
    let mut documents = vec![clean(tenant)];
    for namespace in namespaces {
        all::<Deployment>(client, &namespace, &mut documents).await?;
        all::<StatefulSet>(client, &namespace, &mut documents).await?;
        all::<Service>(client, &namespace, &mut documents).await?;
        all::<ConfigMap>(client, &namespace, &mut documents).await?;
        all::<Secret>(client, &namespace, &mut documents).await?;
        all::<PersistentVolumeClaim>(client, &namespace, &mut documents).await?;
        all::<NetworkPolicy>(client, &namespace, &mut documents).await?;
    }
    let mut yaml = String::new();
    for document in documents {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&document)?);
    }
    Ok(yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, condition: Option<&str>) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "acme-data", "creationTimestamp": "2026-11-28T10:00:00Z"},
            "status": {"conditions": condition.map(|c| vec![json!({"type": c, "status": "True", "lastTransitionTime": "2026-11-28T10:05:00Z", "message": "boom"})])}
        }))
        .expect("job")
    }

    #[test]
    fn requests_follow_their_jobs() {
        let running = from_jobs(&[job("a", Some("Complete")), job("b", None)]);
        assert_eq!(running.phase, Some(RequestPhase::Running));
        assert_eq!(running.jobs, ["acme-data/a", "acme-data/b"]);
        let done = from_jobs(&[job("a", Some("Complete")), job("b", Some("Complete"))]);
        assert_eq!(done.phase, Some(RequestPhase::Succeeded));
        assert!(done.completion_time.is_some());
        let failed = from_jobs(&[job("a", Some("Complete")), job("b", Some("Failed"))]);
        assert_eq!(failed.phase, Some(RequestPhase::Failed));
        assert!(
            failed
                .message
                .as_deref()
                .is_some_and(|m| m.contains("b failed: boom"))
        );
    }
}
