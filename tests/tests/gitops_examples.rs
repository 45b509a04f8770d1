//! The GitOps examples of `examples/gitops/`, without a cluster: the Argo CD health check for
//! Tenants run (in Lua 5.1, as Argo CD runs it) against the statuses the operator's own status
//! code writes for every outcome and against hand-made edge cases; the check embedded in
//! `argocd-cm.yaml` byte-identical to `tenant-health.lua`; and the key fields of the Argo CD
//! Applications and Flux objects.

mod argocd;

use anyhow::{Context as _, Result, bail, ensure};
use enclave_crds::Tenant;
use enclave_operator::status::{Outcome, Redundancy, tenant_status, with_redundancy};
use enclave_tests::controlplane::repo_root;
use k8s_openapi::jiff::Timestamp;
use kube::Resource as _;
use serde::Deserialize as _;
use serde_json::{Value, json};

fn at(second: i64) -> Result<Timestamp> {
    Ok(Timestamp::from_second(second)?)
}

/// A Tenant object of `generation` with `status`, as Argo CD hands it to the script.
fn tenant(generation: i64, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "enclave.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "acme", "generation": generation, "uid": "6f1c0a52-3c1e-4a4e-9e0e-1d3c1b2a0f00"},
        "spec": {"zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}]},
    });
    if let (Some(status), Some(map)) = (status, object.as_object_mut()) {
        map.insert("status".into(), status);
    }
    object
}

/// The status the operator writes for `outcome` at generation 4, as JSON.
fn written(outcome: &Outcome, now: Timestamp) -> Result<Value> {
    let status = tenant_status(
        Some(4),
        outcome,
        &["dmz".to_string()],
        vec!["acme-dmz".into()],
        None,
        None,
        now,
    );
    Ok(serde_json::to_value(status)?)
}

fn health(object: &Value) -> Result<(String, String)> {
    argocd::health(&argocd::script()?, object)
}

/// Checks that the script says `expected` of `object`, with a message containing `says`.
fn expect(name: &str, object: &Value, expected: &str, says: &str) -> Result<()> {
    let (status, message) = health(object).with_context(|| format!("sample {name}"))?;
    ensure!(
        status == expected,
        "{name}: health {status} ({message}), expected {expected}"
    );
    ensure!(
        message.contains(says),
        "{name}: message {message:?} does not contain {says:?}"
    );
    Ok(())
}

#[test]
fn the_health_check_reads_what_the_operator_writes_for_every_outcome() -> Result<()> {
    let now = at(1_000_000)?;
    let ready = written(&Outcome::Ready, now)?;
    expect(
        "ready",
        &tenant(4, Some(ready)),
        "Healthy",
        "1 namespace(s) in place",
    )?;
    let pending = written(
        &Outcome::Progressing {
            reason: "NamespaceTerminating",
            message: "waiting for namespace(s) acme-dmz to finish terminating".into(),
        },
        now,
    )?;
    expect(
        "pending",
        &tenant(4, Some(pending)),
        "Progressing",
        "NamespaceTerminating: waiting for namespace(s) acme-dmz",
    )?;
    let blocked = written(
        &Outcome::Blocked {
            reason: "UnknownImage",
            message: "workload web: image default:php names no default image".into(),
        },
        now,
    )?;
    expect(
        "blocked",
        &tenant(4, Some(blocked)),
        "Degraded",
        "Blocked: UnknownImage: workload web",
    )?;
    let suspended = written(&Outcome::Suspended, now)?;
    expect(
        "suspended",
        &tenant(4, Some(suspended)),
        "Suspended",
        "workloads stopped",
    )?;
    let waiting = written(
        &Outcome::Decommissioning {
            purge_after: at(2_000_000)?,
        },
        now,
    )?;
    expect(
        "decommissioning before its deadline",
        &tenant(4, Some(waiting)),
        "Suspended",
        "data retained until 1970-01-24T03:33:20Z, then purged",
    )?;
    let purging = written(
        &Outcome::Decommissioning {
            purge_after: at(500_000)?,
        },
        now,
    )?;
    expect(
        "decommissioning past its deadline",
        &tenant(4, Some(purging)),
        "Progressing",
        "PurgeInProgress",
    )?;
    let purged = written(&Outcome::Purged, now)?;
    expect(
        "purged",
        &tenant(4, Some(purged)),
        "Healthy",
        "destroyed and verified gone",
    )?;
    // Degraded: in place, a workload short of N+1.
    let mut degraded = tenant_status(Some(4), &Outcome::Ready, &[], vec![], None, None, now);
    let short = Redundancy {
        redundant: 0,
        total: 1,
        reason: "RedundancyLost",
        message: "web: 1 available of 2".into(),
    };
    with_redundancy(&mut degraded, &short, None, now);
    ensure!(degraded.phase == Some(enclave_crds::Phase::Degraded));
    expect(
        "degraded",
        &tenant(4, Some(serde_json::to_value(&degraded)?)),
        "Degraded",
        "WorkloadsRedundant RedundancyLost: web: 1 available of 2",
    )
}

#[test]
fn the_health_check_waits_for_a_status_of_the_current_generation() -> Result<()> {
    expect(
        "no status",
        &tenant(1, None),
        "Progressing",
        "Waiting for the Enclave operator",
    )?;
    expect(
        "empty status",
        &tenant(1, Some(json!({}))),
        "Progressing",
        "Waiting for the Enclave operator",
    )?;
    // A spec changed since the last status: whatever that status says, not yet.
    let ready = written(&Outcome::Ready, at(100)?)?;
    expect(
        "generation not observed",
        &tenant(5, Some(ready.clone())),
        "Progressing",
        "observe generation 5 (status describes generation 4)",
    )?;
    let blocked = written(
        &Outcome::Blocked {
            reason: "UnknownImage",
            message: "x".into(),
        },
        at(100)?,
    )?;
    expect(
        "blocked, then fixed, not yet observed",
        &tenant(5, Some(blocked)),
        "Progressing",
        "generation 5",
    )?;
    // An object without metadata.generation (as some tools hand it): the status decides.
    let mut no_generation = tenant(4, Some(ready));
    if let Some(metadata) = no_generation
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        metadata.remove("generation");
    }
    expect("no generation", &no_generation, "Healthy", "Reconciled")
}

#[test]
fn the_health_check_handles_statuses_of_an_older_operator() -> Result<()> {
    // Blocked before Stalled existed: the phase says it.
    let blocked = json!({
        "observedGeneration": 2, "phase": "Blocked",
        "conditions": [{"type": "Ready", "status": "False", "reason": "NamespaceConflict",
                        "message": "namespace(s) acme-dmz already exist", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    });
    expect(
        "blocked without Stalled",
        &tenant(2, Some(blocked)),
        "Degraded",
        "Blocked: NamespaceConflict: namespace(s) acme-dmz already exist",
    )?;
    // Pending before Reconciling existed.
    let pending = json!({
        "observedGeneration": 2, "phase": "Pending",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ApplyFailed", "message": "apply Service acme-dmz/web: refused",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    });
    expect(
        "pending without Reconciling",
        &tenant(2, Some(pending)),
        "Progressing",
        "ApplyFailed",
    )?;
    // A phase without conditions, and a Degraded tenant without a false condition.
    expect(
        "ready phase without conditions",
        &tenant(2, Some(json!({"observedGeneration": 2, "phase": "Ready"}))),
        "Progressing",
        "Phase Ready",
    )?;
    expect(
        "degraded without a false condition",
        &tenant(
            2,
            Some(json!({"observedGeneration": 2, "phase": "Degraded"})),
        ),
        "Degraded",
        "see the conditions",
    )
}

#[test]
fn the_health_check_is_lua_5_1_and_keeps_no_state() -> Result<()> {
    let script = argocd::script()?;
    // Lua 5.2+ only: integer division, bitwise operators, goto labels, utf8.
    for construct in ["//", "::", "utf8.", "table.unpack", "goto "] {
        ensure!(
            !script.lines().any(|l| {
                let code = l.split("--").next().unwrap_or_default();
                code.contains(construct)
            }),
            "tenant-health.lua uses {construct}, which Argo CD's Lua 5.1 does not have"
        );
    }
    // Twice on the same input in one state: the same answer (Argo CD reuses its states).
    let object = tenant(1, Some(written(&Outcome::Suspended, at(1)?)?));
    ensure!(health(&object)? == health(&object)?);
    Ok(())
}

/// The YAML documents of `examples/gitops/<path>`.
fn documents(path: &str) -> Result<Vec<Value>> {
    let file = repo_root().join("examples/gitops").join(path);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).with_context(|| format!("parsing {path}")))
        .collect()
}

fn one(path: &str) -> Result<Value> {
    let mut documents = documents(path)?;
    ensure!(documents.len() == 1, "{path}: one document expected");
    documents.pop().context("a document")
}

/// The document of `kind` named `name` among `documents`.
fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn argocd_cm_embeds_the_health_check_byte_for_byte() -> Result<()> {
    let cm = one("argocd/argocd-cm.yaml")?;
    ensure!(cm["apiVersion"] == "v1" && cm["kind"] == "ConfigMap");
    ensure!(cm["metadata"]["name"] == "argocd-cm");
    // Argo CD's key: resource.customizations.health.<group>_<kind>.
    let key = format!(
        "resource.customizations.health.{}_{}",
        Tenant::group(&()),
        Tenant::kind(&())
    );
    ensure!(key == "resource.customizations.health.enclave.dev_Tenant");
    let embedded = cm["data"][key.as_str()]
        .as_str()
        .with_context(|| format!("argocd-cm has no {key}"))?;
    let script = argocd::script()?;
    if embedded != script {
        let line = embedded
            .lines()
            .zip(script.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the ends".to_string(), |i| format!("line {}", i + 1));
        bail!(
            "argocd-cm.yaml's Lua differs from tenant-health.lua at {line}: paste the file again"
        );
    }
    Ok(())
}

#[test]
fn argocd_applications_apply_server_side() -> Result<()> {
    let applications = documents("argocd/application.yaml")?;
    ensure!(applications.len() == 2, "the chart and the tenants");
    for app in &applications {
        ensure!(app["apiVersion"] == "argoproj.io/v1alpha1" && app["kind"] == "Application");
        let name = &app["metadata"]["name"];
        ensure!(
            strings(&app["spec"]["syncPolicy"]["syncOptions"]).contains(&"ServerSideApply=true"),
            "{name}: syncOptions lack ServerSideApply=true"
        );
        ensure!(
            app["spec"]["syncPolicy"]["automated"]["prune"] == false,
            "{name}: pruning would delete Tenants (refused) or the CRDs"
        );
    }
    let chart = named(&applications, "Application", "enclave")?;
    ensure!(chart["spec"]["source"]["path"] == "charts/enclave");
    ensure!(
        repo_root().join("charts/enclave").is_dir(),
        "the chart the Application installs"
    );
    ensure!(chart["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1");
    let tenants = named(&applications, "Application", "tenants")?;
    ensure!(tenants["spec"]["source"]["path"] == "tenants");
    Ok(())
}

#[test]
fn flux_health_checks_tenants_after_the_operator() -> Result<()> {
    let kustomizations = documents("flux/kustomizations.yaml")?;
    for k in &kustomizations {
        ensure!(k["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1");
    }
    let operator = named(&kustomizations, "Kustomization", "enclave-operator")?;
    ensure!(operator["spec"]["wait"] == true);
    let tenants = named(&kustomizations, "Kustomization", "tenants")?;
    ensure!(
        tenants["spec"]["wait"] == true,
        "health checks on every Tenant"
    );
    ensure!(tenants["spec"]["prune"] == false);
    ensure!(tenants["spec"]["dependsOn"][0]["name"] == "enclave-operator");
    let exprs = tenants["spec"]["healthCheckExprs"]
        .as_array()
        .context("healthCheckExprs")?;
    let tenant = exprs
        .iter()
        .find(|e| e["kind"] == *Tenant::kind(&()))
        .context("a health check for Tenant")?;
    ensure!(tenant["apiVersion"] == *Tenant::api_version(&()));
    for (field, condition) in [
        ("inProgress", "'Reconciling'"),
        ("failed", "'Stalled'"),
        ("current", "'Ready'"),
    ] {
        let expr = tenant[field].as_str().context(field)?;
        ensure!(
            expr.contains(condition) && expr.contains("'True'"),
            "{field}: {expr}"
        );
    }
    let current = tenant["current"].as_str().context("current")?;
    for phase in ["Suspended", "Decommissioning", "Purged"] {
        ensure!(current.contains(&format!("'{phase}'")), "current: {phase}");
    }

    let release = one("flux/helmrelease.yaml")?;
    ensure!(
        release["apiVersion"] == "helm.toolkit.fluxcd.io/v2" && release["kind"] == "HelmRelease"
    );
    let chart = &release["spec"]["chart"]["spec"];
    ensure!(chart["chart"] == "./charts/enclave");
    ensure!(chart["sourceRef"]["kind"] == "GitRepository");
    let sources = documents("flux/sources.yaml")?;
    let source = named(
        &sources,
        "GitRepository",
        chart["sourceRef"]["name"].as_str().context("sourceRef")?,
    )?;
    ensure!(source["apiVersion"] == "source.toolkit.fluxcd.io/v1");
    Ok(())
}
