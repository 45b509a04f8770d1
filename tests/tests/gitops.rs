//! What GitOps tools read of a Tenant, on the real control plane: `kubectl wait` for `Ready` and
//! `Stalled`, kstatus (Flux's health checks, Helm 4's `--wait`) computed here exactly as
//! sigs.k8s.io/cli-utils does for a custom resource, `observedGeneration` catching up with a
//! spec change, and the Argo CD health check of `examples/gitops/argocd/` run against the live
//! statuses.

mod argocd;

use anyhow::{Context as _, Result, ensure};
use enclave_crds::Tenant;
use enclave_tests::harness::{env, eventually};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// What kstatus says of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// kstatus's `status.Compute` for a custom resource (no type-specific rules), from the object's
/// JSON, in kstatus's order: a deletion timestamp is `Terminating`; an `observedGeneration`
/// other than `metadata.generation` (when both are set) `InProgress`; then the first condition
/// `Reconciling` True is `InProgress`, or `Stalled` True `Failed`; then `Ready` True is `Current`,
/// False or Unknown `InProgress`; with none of these, `Current`. Returns the status and
/// kstatus's message. A generation that is not an integer is an error, as in kstatus.
fn kstatus(object: &Value) -> Result<(KStatus, String)> {
    let metadata = &object["metadata"];
    if metadata["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Ok((
            KStatus::Terminating,
            "Resource scheduled for deletion".into(),
        ));
    }
    let integer = |value: &Value, field: &str| -> Result<Option<i64>> {
        match value {
            Value::Null => Ok(None),
            value => value
                .as_i64()
                .map(Some)
                .with_context(|| format!("{field} is not an integer: {value}")),
        }
    };
    if let Some(generation) = integer(&metadata["generation"], "metadata.generation")?
        && let Some(observed) = integer(
            &object["status"]["observedGeneration"],
            "status.observedGeneration",
        )?
        && observed != generation
    {
        let kind = object["kind"].as_str().unwrap_or_default();
        return Ok((
            KStatus::InProgress,
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        ));
    }
    let conditions = object["status"]["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let message = |c: &Value| c["message"].as_str().unwrap_or_default().to_string();
    for c in conditions {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return Ok((KStatus::InProgress, message(c))),
            (Some("Stalled"), Some("True")) => return Ok((KStatus::Failed, message(c))),
            _ => {}
        }
    }
    for c in conditions.iter().filter(|c| c["type"] == "Ready") {
        match c["status"].as_str() {
            Some("True") => return Ok((KStatus::Current, "Resource is Ready".into())),
            Some("False" | "Unknown") => return Ok((KStatus::InProgress, message(c))),
            _ => {}
        }
    }
    Ok((KStatus::Current, "Resource is current".into()))
}

/// The tenant as the API server serves it, as JSON (what kstatus and Argo CD read).
async fn live(client: &Client, name: &str) -> Result<Value> {
    let api = Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<Tenant>(&()));
    Ok(serde_json::to_value(api.get(name).await?)?)
}

/// The condition `type_` of a tenant's JSON, if any.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn generations(object: &Value) -> (Option<i64>, Option<i64>) {
    (
        object["metadata"]["generation"].as_i64(),
        object["status"]["observedGeneration"].as_i64(),
    )
}

/// `kubectl wait --for=condition=<condition> tenant/<name> --timeout=<timeout>`: whether it
/// succeeded, and what it printed.
async fn kubectl_wait(name: &str, condition: &str, timeout: &str) -> Result<(bool, String)> {
    let mut command = env().kubectl();
    command.args([
        "wait",
        &format!("--for=condition={condition}"),
        &format!("tenant/{name}"),
        &format!("--timeout={timeout}"),
    ]);
    let output = tokio::process::Command::from(command).output().await?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), printed))
}

async fn create(client: &Client, manifest: Value) -> Result<()> {
    let tenant: Tenant = serde_json::from_value(manifest)?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    Ok(())
}

/// Merges `patch` into the tenant and returns the object the API server answered, whose status
/// is still the one written for the previous generation.
async fn patch(client: &Client, name: &str, patch: &Value) -> Result<Value> {
    let patched = Api::<Tenant>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(serde_json::to_value(patched)?)
}

/// Checks that a spec change is seen as in progress at once, then caught up with.
async fn catches_up(client: &Client, name: &str, change: &Value) -> Result<Value> {
    let patched = patch(client, name, change).await?;
    let (generation, observed) = generations(&patched);
    let generation = generation.context("generation")?;
    ensure!(
        observed < Some(generation),
        "{name}: the new generation cannot be observed yet"
    );
    let (status, message) = kstatus(&patched)?;
    ensure!(
        status == KStatus::InProgress && message.contains("latest observed generation"),
        "{name}: kstatus right after the change: {status:?} ({message})"
    );
    let (health, _) = argocd::health(&argocd::script()?, &patched)?;
    ensure!(health == "Progressing", "{name}: Argo CD health {health}");
    eventually(
        &format!("{name}: generation {generation} observed"),
        WAIT,
        || async {
            let object = live(client, name).await?;
            Ok((generations(&object).1 == Some(generation)).then_some(object))
        },
    )
    .await
}

#[tokio::test]
async fn a_ready_tenant_is_ready_for_kubectl_wait_current_for_kstatus_and_healthy_for_argocd()
-> Result<()> {
    let client = env().client().await?;
    let name = "gitops-ready";
    create(
        &client,
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
               "spec": {"displayName": "GitOps"}}),
    )
    .await?;
    let (met, printed) = kubectl_wait(name, "Ready", "60s").await?;
    ensure!(met, "kubectl wait --for=condition=Ready: {printed}");
    ensure!(printed.contains("condition met"), "{printed}");

    let object = live(&client, name).await?;
    let (generation, observed) = generations(&object);
    ensure!(generation.is_some() && observed == generation, "{object}");
    let ready = condition(&object, "Ready").context("Ready")?;
    ensure!(ready["status"] == "True" && ready["observedGeneration"].as_i64() == generation);
    ensure!(
        condition(&object, "Reconciling").is_none() && condition(&object, "Stalled").is_none(),
        "abnormal-true conditions are absent when false: {}",
        object["status"]["conditions"]
    );
    let (status, message) = kstatus(&object)?;
    ensure!(
        status == KStatus::Current,
        "kstatus: {status:?} ({message})"
    );
    let (health, message) = argocd::health(&argocd::script()?, &object)?;
    ensure!(health == "Healthy", "Argo CD: {health} ({message})");

    // A spec change: in progress at once, then observed and current again.
    let caught_up = catches_up(
        &client,
        name,
        &json!({"spec": {"displayName": "GitOps, renamed"}}),
    )
    .await?;
    let (met, printed) = kubectl_wait(name, "Ready", "60s").await?;
    ensure!(met, "kubectl wait after the change: {printed}");
    ensure!(kstatus(&caught_up)?.0 == KStatus::Current, "{caught_up}");
    ensure!(
        condition(&caught_up, "Ready").context("Ready")?["observedGeneration"]
            == caught_up["metadata"]["generation"]
    );

    // Suspended on purpose: neither Reconciling nor Stalled, Ready False; kstatus therefore
    // falls back on Ready (InProgress, as the README says), Argo CD shows Suspended.
    catches_up(
        &client,
        name,
        &json!({"spec": {"lifecycle": {"state": "Suspended"}}}),
    )
    .await?;
    let suspended = eventually("suspended", WAIT, || async {
        let object = live(&client, name).await?;
        Ok((object["status"]["phase"] == "Suspended").then_some(object))
    })
    .await?;
    ensure!(suspended["status"]["phase"] == "Suspended", "{suspended}");
    ensure!(
        condition(&suspended, "Reconciling").is_none()
            && condition(&suspended, "Stalled").is_none()
    );
    ensure!(condition(&suspended, "Ready").context("Ready")?["status"] == "False");
    ensure!(kstatus(&suspended)?.0 == KStatus::InProgress);
    let (health, message) = argocd::health(&argocd::script()?, &suspended)?;
    ensure!(health == "Suspended", "Argo CD: {health} ({message})");
    Ok(())
}

#[tokio::test]
async fn a_blocked_tenant_is_stalled_failed_for_kstatus_and_degraded_for_argocd() -> Result<()> {
    let client = env().client().await?;
    let name = "gitops-blocked";
    // A default image the operator's configuration does not name: Blocked (UnknownImage).
    create(
        &client,
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
               "spec": {"zones": [{"name": "app"}],
                        "workloads": [{"name": "web", "zone": "app", "image": "default:missing", "capacity": 1}]}}),
    )
    .await?;
    let (met, printed) = kubectl_wait(name, "Stalled", "60s").await?;
    ensure!(met, "kubectl wait --for=condition=Stalled: {printed}");

    let object = live(&client, name).await?;
    ensure!(object["status"]["phase"] == "Blocked", "{object}");
    let (generation, observed) = generations(&object);
    ensure!(generation.is_some() && observed == generation);
    let stalled = condition(&object, "Stalled").context("Stalled")?;
    let ready = condition(&object, "Ready").context("Ready")?;
    ensure!(stalled["reason"] == "UnknownImage", "{stalled}");
    ensure!(ready["status"] == "False" && ready["reason"] == "UnknownImage");
    ensure!(stalled["message"] == ready["message"]);
    ensure!(condition(&object, "Reconciling").is_none());
    let (status, message) = kstatus(&object)?;
    ensure!(
        status == KStatus::Failed && message.contains("default:missing"),
        "kstatus: {status:?} ({message})"
    );
    let (health, message) = argocd::health(&argocd::script()?, &object)?;
    ensure!(
        health == "Degraded" && message.contains("UnknownImage"),
        "Argo CD: {health} ({message})"
    );
    let (met, printed) = kubectl_wait(name, "Ready", "2s").await?;
    ensure!(!met, "a blocked tenant is not Ready: {printed}");

    // Fixed in the spec: observed, Stalled gone, Ready, and healthy once its workload runs.
    let fixed = catches_up(
        &client,
        name,
        &json!({"spec": {"workloads": [{"name": "web", "zone": "app", "image": "default:nginx", "capacity": 1}]}}),
    )
    .await?;
    ensure!(condition(&fixed, "Stalled").is_none(), "{fixed}");
    let (met, printed) = kubectl_wait(name, "Ready", "60s").await?;
    ensure!(met, "kubectl wait after the fix: {printed}");
    let ready = eventually("the workload at N+1", WAIT, || async {
        let object = live(&client, name).await?;
        let phase = object["status"]["phase"].as_str().map(str::to_string);
        Ok((phase.as_deref() == Some("Ready")).then_some(object))
    })
    .await?;
    ensure!(kstatus(&ready)?.0 == KStatus::Current);
    let (health, message) = argocd::health(&argocd::script()?, &ready)?;
    ensure!(health == "Healthy", "Argo CD: {health} ({message})");
    Ok(())
}

#[test]
fn kstatus_is_computed_as_cli_utils_does() -> Result<()> {
    let object = |generation: i64, status: Value| json!({"kind": "Tenant", "metadata": {"name": "t", "generation": generation}, "status": status});
    let cond =
        |type_: &str, status: &str| json!({"type": type_, "status": status, "message": type_});
    let cases = [
        (object(1, json!({})), KStatus::Current),
        (
            object(
                2,
                json!({"observedGeneration": 1, "conditions": [cond("Ready", "True")]}),
            ),
            KStatus::InProgress,
        ),
        (
            object(
                1,
                json!({"observedGeneration": 1, "conditions": [cond("Ready", "True")]}),
            ),
            KStatus::Current,
        ),
        (
            object(
                1,
                json!({"observedGeneration": 1, "conditions": [cond("Ready", "False")]}),
            ),
            KStatus::InProgress,
        ),
        (
            object(1, json!({"conditions": [cond("Ready", "Unknown")]})),
            KStatus::InProgress,
        ),
        // Reconciling and Stalled win over Ready, in the order they come.
        (
            object(
                1,
                json!({"conditions": [cond("Ready", "True"), cond("Reconciling", "True")]}),
            ),
            KStatus::InProgress,
        ),
        (
            object(
                1,
                json!({"conditions": [cond("Ready", "False"), cond("Stalled", "True")]}),
            ),
            KStatus::Failed,
        ),
        (
            object(
                1,
                json!({"conditions": [cond("Stalled", "True"), cond("Reconciling", "True")]}),
            ),
            KStatus::Failed,
        ),
        (
            object(
                1,
                json!({"conditions": [cond("Stalled", "False"), cond("Reconciling", "False"), cond("Ready", "True")]}),
            ),
            KStatus::Current,
        ),
        (
            json!({"metadata": {"generation": 1, "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            KStatus::Terminating,
        ),
    ];
    for (object, expected) in &cases {
        let (status, message) = kstatus(object)?;
        ensure!(
            status == *expected,
            "{object}: {status:?} ({message}), expected {expected:?}"
        );
    }
    ensure!(
        kstatus(&object(1, json!({"observedGeneration": "1"}))).is_err(),
        "kstatus fails on a generation that is not an integer"
    );
    Ok(())
}
