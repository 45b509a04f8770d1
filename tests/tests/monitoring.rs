//! The chart's monitoring: promtool checks the alerts (charts/enclave/files/alerts.yaml) and runs
//! their unit tests; every metric the alerts and the Grafana dashboard read is in the operator's
//! real `/metrics`, with the per-tenant series of real tenants (ready, backed up,
//! decommissioned, deleted and gone); and the dashboard has its panels.

use anyhow::{Context as _, Result, ensure};
use enclave_crds::{Phase, Tenant};
use enclave_tests::controlplane::{built, repo_root};
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(120);

/// The panels the dashboard must have.
const PANELS: [&str; 9] = [
    "Tenants by phase",
    "Reconcile rate",
    "Reconcile errors",
    "Reconcile latency",
    "Writes by resource",
    "Admission denials",
    "Certificate expiries",
    "Backup age",
    "Leader",
];

/// The alerts the issue asks for.
const ALERTS: [&str; 10] = [
    "EnclaveTenantNotReady",
    "EnclaveTenantIncident",
    "EnclaveTenantRedundancyLost",
    "EnclaveBackupOverdue",
    "EnclaveCertificateExpiringSoon",
    "EnclaveCertificateExpired",
    "EnclavePurgeOverdue",
    "EnclaveAdmissionDenialsBurst",
    "EnclaveOperatorDown",
    "EnclaveNoLeader",
];

fn files() -> PathBuf {
    repo_root().join("charts/enclave/files")
}

fn alerts() -> Result<serde_yaml::Value> {
    let path = files().join("alerts.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_yaml::from_str(&text)?)
}

fn dashboard() -> Result<Value> {
    let path = files().join("dashboard.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

/// Every rule of the alerts file.
fn rules(alerts: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    alerts["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect()
}

/// Every panel of the dashboard, those in rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    let mut todo: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = todo.pop() {
        todo.extend(panel["panels"].as_array().into_iter().flatten());
        all.push(panel);
    }
    all
}

/// The PromQL expressions of the dashboard: its panels' queries and its variables'.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let targets = panels(dashboard)
        .into_iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["definition"].as_str());
    targets.chain(variables).map(str::to_string).collect()
}

/// The metric names an expression reads: the identifiers starting with `enclave_`, outside
/// quoted strings (label values).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut token = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut flush = |token: &mut String| {
        if token.starts_with("enclave_") {
            names.insert(token.clone());
        }
        token.clear();
    };
    for c in expr.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
            continue;
        }
        flush(&mut token);
        if matches!(c, '"' | '\'' | '`') {
            quote = Some(c);
        }
    }
    flush(&mut token);
    names
}

/// Whether `/metrics` has a sample of `name`.
fn exported(metrics: &str, name: &str) -> bool {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.split(['{', ' ']).next() == Some(name))
}

/// The operator's `/metrics`, as Prometheus scrapes it.
async fn scrape() -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(env().admin_addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Ok(body.to_string())
}

fn tenant(name: &str, spec: &Value) -> Result<Tenant> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec
    }))?)
}

fn seconds(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Result<i64> {
    Ok(time.context("a time in status")?.0.as_second())
}

/// The tenant's status once `ok` holds of it.
async fn status_when(
    tenants: &Api<Tenant>,
    name: &str,
    what: &str,
    ok: impl Fn(&Tenant) -> bool,
) -> Result<enclave_crds::TenantStatus> {
    eventually(&format!("{name}: {what}"), WAIT, || async {
        let t = tenants.get(name).await?;
        Ok(ok(&t).then(|| t.status.clone().unwrap_or_default()))
    })
    .await
}

fn phase_is(phase: Phase) -> impl Fn(&Tenant) -> bool {
    move |t: &Tenant| {
        t.status.as_ref().is_some_and(|s| {
            s.phase == Some(phase) && s.observed_generation == t.metadata.generation
        })
    }
}

fn condition_true(status: &enclave_crds::TenantStatus, condition: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == condition && c.status == "True")
}

/// Waits until `/metrics` has every line of `lines`; returns the text.
async fn metrics_with(lines: &[String]) -> Result<String> {
    let last = std::sync::Mutex::new(String::new());
    let found = eventually("the per-tenant series", WAIT, || async {
        let text = scrape().await?;
        let all = lines.iter().all(|l| text.lines().any(|m| m == l));
        if let Ok(mut last) = last.lock() {
            last.clone_from(&text);
        }
        Ok(all.then_some(text))
    })
    .await;
    found.with_context(|| {
        let text = last.lock().map(|l| l.clone()).unwrap_or_default();
        let missing: Vec<&String> = lines
            .iter()
            .filter(|l| !text.lines().any(|m| m == l.as_str()))
            .collect();
        format!("missing from /metrics: {missing:#?}\n{text}")
    })
}

#[test]
fn promtool_checks_the_alerts_and_their_unit_tests_pass() -> Result<()> {
    let promtool = built("ENCLAVE_PROMTOOL_DIR", "hack/build-promtool.sh")?.join("bin/promtool");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts-test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(files())
            .output()
            .with_context(|| format!("running {}", promtool.display()))?;
        ensure!(
            out.status.success(),
            "promtool {}:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every alert asked for, each with its severity and runbook, each tested firing and not.
    let alerts = alerts()?;
    let rules = rules(&alerts);
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    ensure!(
        names == ALERTS.into_iter().collect(),
        "alerts: {names:?}, asked for {ALERTS:?}"
    );
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap_or_default();
        ensure!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: severity"
        );
        for annotation in ["summary", "description", "runbook", "runbook_url"] {
            ensure!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|a| !a.trim().is_empty()),
                "{name}: no {annotation} annotation"
            );
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
        ensure!(anchor == name.to_lowercase(), "{name}: runbook_url {url}");
    }
    let runbooks = std::fs::read_to_string(repo_root().join("docs/runbooks.md"))?;
    let test: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(files().join("alerts-test.yaml"))?)?;
    let cases: Vec<&serde_yaml::Value> = test["tests"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    for name in ALERTS {
        ensure!(
            runbooks.lines().any(|l| l == format!("## {name}")),
            "docs/runbooks.md has no section {name}"
        );
        let tested = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"].as_str() == Some(name)
                    && c["exp_alerts"]
                        .as_sequence()
                        .is_some_and(|a| a.is_empty() != firing)
            })
        };
        ensure!(tested(true), "{name} is never tested firing");
        ensure!(tested(false), "{name} is never tested not firing");
    }
    Ok(())
}

#[test]
fn the_dashboard_has_its_panels() -> Result<()> {
    let dashboard = dashboard()?;
    ensure!(
        dashboard["schemaVersion"].as_i64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    let panels = panels(&dashboard);
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for title in PANELS {
        ensure!(titles.contains(title), "no panel {title:?} in {titles:?}");
    }
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        ensure!(ids.insert(panel["id"].as_i64()), "{title}: duplicate id");
        let grid = &panel["gridPos"];
        ensure!(
            ["x", "y", "w", "h"].iter().all(|k| grid[k].is_u64()),
            "{title}: gridPos {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().context("targets")?;
        ensure!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            ensure!(
                !metric_names(expr).is_empty(),
                "{title}: {expr:?} reads no Enclave metric"
            );
            ensure!(
                target["datasource"]["uid"] == "${datasource}",
                "{title}: not on the dashboard's data source"
            );
        }
    }
    Ok(())
}

#[test]
fn metric_names_are_read_out_of_promql() -> Result<()> {
    let names = metric_names(
        r#"histogram_quantile(0.5, sum by (le) (rate(enclave_reconcile_duration_seconds_bucket{namespace=~"enclave_x|\"enclave_y$ns"}[5m]))) - time() and on(tenant) enclave_leader"#,
    );
    ensure!(
        names.iter().map(String::as_str).eq([
            "enclave_leader",
            "enclave_reconcile_duration_seconds_bucket"
        ]),
        "{names:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_alerts_and_the_dashboard_read_what_the_operator_exports() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let post = PostParams::default();

    // mon-web: internet-facing, with a workload, TLS from Enclave's issuer and an admin.
    let web = json!({
        "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "app", "allowFrom": ["dmz"]}],
        "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
        "tls": {"dnsNames": ["shop.mon-web.example"]},
        "access": {"admins": [{"kind": "User", "name": "mallory@mon.example"}]}
    });
    tenants.create(&post, &tenant("mon-web", &web)?).await?;
    // mon-bk: a volume and nightly backups, one run started now (kwok completes its pod).
    let store: Secret = serde_json::from_value(json!({
        "metadata": {"name": "mon-bk-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": "mon-key-id", "AWS_SECRET_ACCESS_KEY": "mon-secret"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .create(&post, &store)
        .await?;
    let backed_up = json!({
        "zones": [{"name": "data"}],
        "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
        "backup": {"schedule": "0 2 * * *",
                   "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "mon-bk-s3"}}
    });
    tenants
        .create(&post, &tenant("mon-bk", &backed_up)?)
        .await?;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-mon-bk"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "enclave-default-r3-encrypted",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": "mon-bk"},
                 "claimRef": {"namespace": "mon-bk-data", "name": "db"}}
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&post, &pv)
        .await?;
    // mon-gone: decommissioned, its data kept for an hour.
    let gone = json!({"zones": [{"name": "app"}], "lifecycle": {"state": "Decommissioned", "retention": "1h"}});
    tenants.create(&post, &tenant("mon-gone", &gone)?).await?;
    // mon-del: deleted once Ready, purged after 2 seconds, then gone.
    let deleted = json!({"zones": [{"name": "app"}], "lifecycle": {"retention": "2s"}});
    tenants.create(&post, &tenant("mon-del", &deleted)?).await?;

    // Each tenant's series, from what its status says.
    let web = status_when(&tenants, "mon-web", "Ready, certificate issued", |t| {
        phase_is(Phase::Ready)(t)
            && t.status.as_ref().is_some_and(|s| {
                condition_true(s, "CertificateReady") && condition_true(s, "WorkloadsRedundant")
            })
    })
    .await?;
    let certificate = web.certificate.as_ref().context("status.certificate")?;
    let mut expected = vec![
        r#"enclave_tenant_phase{tenant="mon-web",phase="Ready"} 1"#.to_string(),
        r#"enclave_tenant_phase{tenant="mon-web",phase="Pending"} 0"#.to_string(),
        r#"enclave_tenant_phase{tenant="mon-web",phase="Degraded"} 0"#.to_string(),
        r#"enclave_tenant_condition{tenant="mon-web",condition="Ready",status="true"} 1"#
            .to_string(),
        r#"enclave_tenant_condition{tenant="mon-web",condition="Ready",status="false"} 0"#
            .to_string(),
        r#"enclave_tenant_condition{tenant="mon-web",condition="WorkloadsRedundant",status="true"} 1"#
            .to_string(),
        r#"enclave_tenant_condition{tenant="mon-web",condition="CertificateReady",status="true"} 1"#
            .to_string(),
        r#"enclave_tenant_redundancy_lost{tenant="mon-web"} 0"#.to_string(),
        format!(
            r#"enclave_certificate_expiry_timestamp_seconds{{tenant="mon-web"}} {}"#,
            seconds(certificate.not_after.as_ref())?
        ),
        format!(
            r#"enclave_certificate_renewal_timestamp_seconds{{tenant="mon-web"}} {}"#,
            seconds(certificate.renewal_time.as_ref())?
        ),
    ];

    // A tenant admin tries to remove Enclave's binding: the guard refuses and counts it.
    let mallory = env()
        .client_as("mallory@mon.example", &["system:authenticated"])
        .await?;
    let refused = Api::<RoleBinding>::namespaced(mallory, "mon-web-app")
        .delete("enclave-admins", &DeleteParams::default())
        .await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 403),
        "the guard did not refuse: {refused:?}"
    );

    // mon-inc: an opening nobody declared, a critical incident (R14): the series its alert
    // reads.
    tenants
        .create(
            &post,
            &tenant("mon-inc", &json!({"zones": [{"name": "app"}]}))?,
        )
        .await?;
    status_when(&tenants, "mon-inc", "Ready", phase_is(Phase::Ready)).await?;
    let allow_all: NetworkPolicy =
        serde_json::from_value(json!({"metadata": {"name": "allow-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), "mon-inc-app")
        .create(&post, &allow_all)
        .await?;
    env().reconcile_again(&client, "mon-inc").await?;
    status_when(&tenants, "mon-inc", "an IsolationBroken incident", |t| {
        t.status.as_ref().is_some_and(|s| {
            s.incidents
                .iter()
                .any(|i| i.type_ == "IsolationBroken" && i.resolved_at.is_none())
        })
    })
    .await?;
    expected.push(
        r#"enclave_tenant_incident_open{tenant="mon-inc",type="IsolationBroken",severity="critical"} 1"#
            .to_string(),
    );

    run_backup_now(&client, "mon-bk").await?;
    let backup = status_when(&tenants, "mon-bk", "a successful backup", |t| {
        t.status.as_ref().is_some_and(|s| {
            condition_true(s, "BackupHealthy")
                && s.backup
                    .as_ref()
                    .is_some_and(|b| b.last_successful_time.is_some())
        })
    })
    .await?;
    let last_backup = backup
        .backup
        .as_ref()
        .and_then(|b| b.last_successful_time.as_ref());
    expected.extend([
        format!(
            r#"enclave_backup_last_success_timestamp_seconds{{tenant="mon-bk"}} {}"#,
            seconds(last_backup)?
        ),
        r#"enclave_tenant_condition{tenant="mon-bk",condition="BackupHealthy",status="true"} 1"#
            .to_string(),
    ]);

    let gone = status_when(
        &tenants,
        "mon-gone",
        "Decommissioning",
        phase_is(Phase::Decommissioning),
    )
    .await?;
    expected.extend([
        r#"enclave_tenant_phase{tenant="mon-gone",phase="Decommissioning"} 1"#.to_string(),
        r#"enclave_tenant_phase{tenant="mon-gone",phase="Ready"} 0"#.to_string(),
        format!(
            r#"enclave_tenant_purge_after_timestamp_seconds{{tenant="mon-gone"}} {}"#,
            seconds(gone.purge_after.as_ref())?
        ),
    ]);

    // mon-del: Ready, reported, then deleted, purged and released: its series go with it.
    status_when(&tenants, "mon-del", "Ready", phase_is(Phase::Ready)).await?;
    metrics_with(&[r#"enclave_tenant_phase{tenant="mon-del",phase="Ready"} 1"#.to_string()])
        .await?;
    tenants.delete("mon-del", &DeleteParams::default()).await?;
    eventually("mon-del purged and gone", WAIT, || async {
        Ok(tenants.get_opt("mon-del").await?.is_none().then_some(()))
    })
    .await?;

    // A family without series is not rendered at all: the error counter appears with the first
    // failed reconcile. When none failed in this run, count one the way the controller's error
    // policy does, so its name is checked too.
    if !exported(&scrape().await?, "enclave_reconcile_errors_total") {
        env()
            .metrics
            .error(&enclave_operator::Error::MissingMetadata("uid"));
    }
    let metrics = metrics_with(&expected).await?;
    ensure!(
        !metrics.contains(r#"tenant="mon-del""#),
        "a tenant gone keeps series:\n{metrics}"
    );
    ensure!(
        metrics.lines().any(|l| l
            .strip_prefix(
                r#"enclave_admission_denials_total{resource="RoleBinding",action="delete"} "#
            )
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)),
        "no denial counted:\n{metrics}"
    );

    // Every metric the alerts and the dashboard read is exported.
    let alerts = alerts()?;
    let dashboard = dashboard()?;
    let exprs: Vec<(String, String)> = rules(&alerts)
        .into_iter()
        .map(|r| {
            (
                format!("alert {}", r["alert"].as_str().unwrap_or_default()),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .chain(
            dashboard_exprs(&dashboard)
                .into_iter()
                .map(|e| ("dashboard".to_string(), e)),
        )
        .collect();
    let mut read = BTreeSet::new();
    for (whose, expr) in &exprs {
        let names = metric_names(expr);
        ensure!(
            !names.is_empty(),
            "{whose}: {expr:?} reads no Enclave metric"
        );
        for name in names {
            ensure!(
                exported(&metrics, &name),
                "{whose} reads {name}, which the operator does not export:\n{metrics}"
            );
            read.insert(name);
        }
    }
    // The alerts read every per-tenant gauge but the backup timestamp, which the dashboard does.
    for name in [
        "enclave_tenant_phase",
        "enclave_tenant_condition",
        "enclave_tenant_redundancy_lost",
        "enclave_backup_last_success_timestamp_seconds",
        "enclave_tenant_purge_after_timestamp_seconds",
        "enclave_certificate_expiry_timestamp_seconds",
        "enclave_certificate_renewal_timestamp_seconds",
        "enclave_admission_denials_total",
        "enclave_leader",
    ] {
        ensure!(read.contains(name), "nothing reads {name}: {read:?}");
    }
    Ok(())
}

/// Asks the operator for a backup of `tenant` now and waits for the Job it starts.
async fn run_backup_now(client: &kube::Client, tenant: &str) -> Result<()> {
    // As `kubectl enclave backup` asks: the operator starts the Job, with the backup identity
    // nobody else may use.
    let at = k8s_openapi::jiff::Timestamp::now();
    let patch = json!({"metadata": {"annotations": {"enclave.dev/backup-now": at.to_string()}}});
    Api::<Tenant>::all(client.clone())
        .patch(
            tenant,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    let jobs = Api::<Job>::namespaced(client.clone(), &format!("{tenant}-data"));
    let name = format!("enclave-backup-now-{}", at.as_second());
    eventually("the requested backup Job", WAIT, || async {
        Ok(jobs.get_opt(&name).await?)
    })
    .await?;
    Ok(())
}
