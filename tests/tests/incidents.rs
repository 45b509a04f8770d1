//! Every promise visible (R14 and the report), on a real control plane: an incident opens when
//! a promise breaks, reaches the operator's webhook (a local receiver here), the register
//! and the tenant's alert routing (prometheus-operator's `AlertmanagerConfig`, accepted by the
//! API server with its CRD), and resolves on recovery; the compliance report is published in
//! every zone, read by the tenant's own admins and by no one else's, and `kubectl enclave`
//! reports on and acts on tenants.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result, ensure};
use enclave_crds::{Phase, Tenant, TenantExport};
use enclave_operator::report::{Report, Verdict};
use enclave_tests::controlplane::built;
use enclave_tests::harness::{OPERATOR_NAMESPACE, create_tenant, env, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

async fn ready_tenant(client: &Client, name: &str, spec: Value) -> Result<Tenant> {
    create_tenant(client, name, spec).await?;
    phase(client, name, Phase::Ready).await
}

async fn phase(client: &Client, name: &str, phase: Phase) -> Result<Tenant> {
    let api = Api::<Tenant>::all(client.clone());
    eventually(&format!("tenant {name} {phase:?}"), WAIT, || async {
        let t = api.get(name).await?;
        let there = t.status.as_ref().is_some_and(|s| {
            s.phase == Some(phase) && s.observed_generation == t.metadata.generation
        });
        Ok(there.then_some(t))
    })
    .await
}

/// An HTTP receiver of the operator's incident webhook on a free loopback port: it refuses
/// the first `refuse` notifications (503) and keeps the others' JSON bodies.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<usize>>,
}

async fn receiver(refuse: usize) -> Result<Receiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/incidents", listener.local_addr()?);
    let received = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0));
    let (kept, count) = (received.clone(), refused.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = socket.read(&mut buf).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break Some(request[end + 4..end + 4 + length].to_vec());
                    }
                }
            };
            let Some(body) = body else { continue };
            let refuse_this = {
                let mut c = count.lock().unwrap();
                *c += 1;
                *c <= refuse
            };
            let answer = if refuse_this {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                    kept.lock().unwrap().push(json);
                }
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    Ok(Receiver {
        url,
        received,
        refused,
    })
}

/// The operator's configuration file with `notifications` set; the operator reloads it.
fn set_notifications(notifications: Value) -> Result<()> {
    let path = &env().config_file;
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
    config["notifications"] = notifications;
    std::fs::write(path, serde_yaml::to_string(&config)?)?;
    Ok(())
}

fn kubectl(args: &[&str]) -> Result<String> {
    let output = env().kubectl().args(args).output()?;
    ensure!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The plugin binary Cargo built beside this test.
fn plugin() -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .context("target dir")?
        .join("debug/kubectl-enclave");
    ensure!(
        path.exists(),
        "{} is missing: cargo build -p enclave-operator --bins (hack/test.sh does)",
        path.display()
    );
    Ok(path)
}

/// `kubectl enclave <args>` with `kubeconfig`: its exit status, stdout and stderr.
fn enclave(kubeconfig: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let output = Command::new(plugin()?)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A copy of the admin kubeconfig that acts as `user` (kubeconfig impersonation).
fn kubeconfig_as(user: &str) -> Result<PathBuf> {
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(&env().kubeconfig)?)?;
    for entry in config["users"].as_array_mut().context("users")? {
        entry["user"]["as"] = json!(user);
        entry["user"]["as-groups"] = json!(["system:authenticated"]);
    }
    let path = std::env::temp_dir().join(format!("enclave-as-{user}-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

fn verdict(report: &Report, id: &str) -> Verdict {
    report
        .promises
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.verdict)
        .unwrap()
}

/// The incidents a register ConfigMap holds (none when it holds none or no JSON).
fn registered(register: &ConfigMap) -> Vec<enclave_crds::Incident> {
    register
        .data
        .as_ref()
        .and_then(|d| d.get("incidents.json"))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

fn json_report(stdout: &str) -> Result<Report> {
    serde_json::from_str(stdout).with_context(|| format!("not a report: {stdout}"))
}

#[tokio::test]
async fn incidents_reach_the_webhook_the_register_and_the_contacts_routing() -> Result<()> {
    let client = env().client().await?;
    // prometheus-operator's CRDs, then the webhook: the reload finds both.
    let crds = built(
        "ENCLAVE_PROMETHEUS_OPERATOR_CRDS",
        "hack/fetch-prometheus-operator-crds.sh",
    )?;
    let crd = crds.join("monitoring.coreos.com_alertmanagerconfigs.yaml");
    let crd = crd.display().to_string();
    kubectl(&["apply", "--server-side", "-f", &crd])?;
    eventually("the CRD established", WAIT, || async {
        Ok(kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "-f",
            &crd,
        ])
        .ok())
    })
    .await?;
    let receiver = receiver(1).await?;
    // A grace of 2 s (3 minutes by default) for what is not at once an incident.
    set_notifications(json!({"webhookUrl": receiver.url, "incidentGrace": "2s"}))?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let name = "inc-shop";
    ready_tenant(
        &client,
        name,
        json!({
            "displayName": "Shop",
            "contacts": [{"email": "sec@shop.example"}, {"email": "ops@shop.example", "role": "Operations"},
                         {"email": "bill@shop.example", "role": "Billing"}],
            "zones": [{"name": "web", "ports": [{"port": 8080}]}]
        }),
    )
    .await?;

    // The routing to the contacts, accepted by the API server under the CRD's schema.
    let routing = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1alpha1", "AlertmanagerConfig"),
        "alertmanagerconfigs",
    );
    let routes =
        Api::<DynamicObject>::namespaced_with(client.clone(), OPERATOR_NAMESPACE, &routing);
    env().reconcile_again(&client, name).await?;
    let route = eventually("the tenant's AlertmanagerConfig", WAIT, || async {
        Ok(routes.get_opt(&format!("enclave-tenant-{name}")).await?)
    })
    .await?;
    let route = serde_json::to_value(&route)?;
    let emails: Vec<&str> = route["spec"]["receivers"][0]["emailConfigs"]
        .as_array()
        .context("emailConfigs")?
        .iter()
        .filter_map(|e| e["to"].as_str())
        .collect();
    assert_eq!(emails, ["sec@shop.example", "ops@shop.example"]);
    assert_eq!(route["spec"]["route"]["matchers"][0]["value"], name);

    // A promise breaks: an opening nobody declared.
    let namespace = format!("{name}-web");
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &namespace);
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "allow-all"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}))?,
        )
        .await?;
    env().reconcile_again(&client, name).await?;
    let tenants = Api::<Tenant>::all(client.clone());
    // The receiver refuses the first notification: the incident stays un-notified until the
    // operator tries again.
    let incident = eventually("the incident notified", WAIT, || async {
        let t = tenants.get(name).await?;
        Ok(t.status
            .unwrap_or_default()
            .incidents
            .into_iter()
            .find(|i| {
                i.type_ == "IsolationBroken" && i.resolved_at.is_none() && i.notified_at.is_some()
            }))
    })
    .await?;
    assert_eq!(incident.severity, "critical");
    assert_eq!(incident.contacts, ["sec@shop.example", "ops@shop.example"]);
    assert!(incident.notified_at.as_ref().unwrap().0 >= incident.opened_at.0);
    assert!(
        *receiver.refused.lock().unwrap() >= 2,
        "refused once, then accepted"
    );
    let opened: Vec<Value> = receiver.received.lock().unwrap().clone();
    let sent = opened
        .iter()
        .find(|n| n["event"] == "opened" && n["incident"]["id"] == incident.id.as_str())
        .context("the receiver got the incident")?;
    assert_eq!(sent["tenant"], name);
    assert_eq!(sent["displayName"], "Shop");
    assert_eq!(sent["incident"]["type"], "IsolationBroken");
    // The refusal is on record.
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("NotificationFailed")),
        "a NotificationFailed Event"
    );
    // The register, in the operator's namespace, without the tenant's labels.
    // It is written after the status, so it may trail the status by a moment.
    let registers = Api::<ConfigMap>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let by_label = ListParams::default().labels(&format!("enclave.dev/incident-register={name}"));
    let register = eventually("the register with the notified incident", WAIT, || async {
        let found = registers.list(&by_label).await?.items;
        ensure!(found.len() <= 1, "one register, not {}", found.len());
        Ok(found.into_iter().next().filter(|register| {
            registered(register)
                .iter()
                .any(|i| i.id == incident.id && i.notified_at.is_some())
        }))
    })
    .await?;
    let register_name = register.name_any();
    assert!(
        register_name.starts_with(&format!("enclave-incidents-{name}-")),
        "{register_name}"
    );
    assert!(!register.labels().contains_key("enclave.dev/tenant-uid"));
    // The report says which promises it breaks.
    let (ok, stdout, stderr) = enclave(&env().kubeconfig, &["report", name, "-o", "json"])?;
    ensure!(ok, "{stderr}");
    let report = json_report(&stdout)?;
    assert_eq!(verdict(&report, "R6"), Verdict::Broken);
    assert_eq!(verdict(&report, "R14"), Verdict::Kept);

    // Recovery: resolved, the receiver told, the register updated.
    policies
        .delete("allow-all", &DeleteParams::default())
        .await?;
    env().reconcile_again(&client, name).await?;
    let resolved = eventually("the incident resolved", WAIT, || async {
        let t = tenants.get(name).await?;
        Ok(t.status
            .unwrap_or_default()
            .incidents
            .into_iter()
            .find(|i| i.id == incident.id && i.resolved_at.is_some()))
    })
    .await?;
    eventually("the recovery notified", WAIT, || async {
        Ok(receiver
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|n| n["event"] == "resolved" && n["incident"]["id"] == resolved.id.as_str())
            .then_some(()))
    })
    .await?;
    eventually("the register with the resolution", WAIT, || async {
        let register = registers.get(&register_name).await?;
        Ok(registered(&register)
            .iter()
            .any(|i| i.id == incident.id && i.resolved_at.is_some())
            .then_some(()))
    })
    .await?;
    let (_, stdout, _) = enclave(&env().kubeconfig, &["report", name, "-o", "json"])?;
    assert_eq!(verdict(&json_report(&stdout)?, "R6"), Verdict::Kept);

    // A certificate its issuer never gives (cert-manager is not installed here): past the
    // grace, a CertificateNotReady incident, notified; the report breaks R1.
    let cert = "inc-cert";
    create_tenant(
        &client,
        cert,
        json!({"contacts": [{"email": "sec@cert.example"}], "zones": [{"name": "web", "ports": [{"port": 8080}]}],
               "tls": {"dnsNames": ["cert.example"], "issuer": {"name": "nowhere"}}}),
    )
    .await?;
    let incident = eventually("the certificate incident notified", WAIT, || async {
        let t = tenants.get(cert).await?;
        Ok(t.status
            .unwrap_or_default()
            .incidents
            .into_iter()
            .find(|i| {
                i.type_ == "CertificateNotReady"
                    && i.resolved_at.is_none()
                    && i.notified_at.is_some()
            }))
    })
    .await?;
    assert_eq!(incident.contacts, ["sec@cert.example"]);
    assert!(
        receiver
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|n| n["tenant"] == cert && n["incident"]["type"] == "CertificateNotReady")
    );
    let (_, stdout, _) = enclave(&env().kubeconfig, &["report", cert, "-o", "json"])?;
    assert_eq!(verdict(&json_report(&stdout)?, "R1"), Verdict::Broken);
    Ok(())
}

#[tokio::test]
async fn the_report_is_the_tenants_own_and_the_plugin_acts_on_tenants() -> Result<()> {
    let client = env().client().await?;
    for (name, admin) in [
        ("rep-a", "alice@rep-a.example"),
        ("rep-b", "bob@rep-b.example"),
    ] {
        ready_tenant(
            &client,
            name,
            json!({"access": {"admins": [{"kind": "User", "name": admin}]}}),
        )
        .await?;
    }
    // Published in every zone once the status it reports is Ready.
    let published = |ns: &'static str| {
        let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
        async move {
            eventually(&format!("the report in {ns}"), WAIT, || async {
                let report: Option<Report> = api
                    .get_opt("enclave-report")
                    .await?
                    .and_then(|cm| serde_json::from_str(cm.data?.get("report.json")?).ok());
                Ok(report.filter(|r| r.phase == Some(Phase::Ready)))
            })
            .await
        }
    };
    for ns in ["rep-a-dmz", "rep-a-app", "rep-a-data"] {
        published(ns).await?;
    }
    // Alice, rep-a's admin, reads her tenant's report, and not rep-b's.
    let alice = env()
        .client_as("alice@rep-a.example", &["system:authenticated"])
        .await?;
    let mine = Api::<ConfigMap>::namespaced(alice.clone(), "rep-a-app")
        .get("enclave-report")
        .await?;
    let report: Report =
        serde_json::from_str(mine.data.as_ref().unwrap().get("report.json").unwrap())?;
    assert_eq!(report.tenant, "rep-a");
    for (id, expected) in [
        ("R1", Verdict::Broken),
        ("R6", Verdict::Kept),
        ("R8", Verdict::NotApplicable),
        ("R10", Verdict::Broken),
        ("R11", Verdict::Kept),
        ("R14", Verdict::Broken),
        ("R17", Verdict::Kept),
    ] {
        assert_eq!(verdict(&report, id), expected, "{id}");
    }
    let theirs = Api::<ConfigMap>::namespaced(alice.clone(), "rep-b-app")
        .get("enclave-report")
        .await;
    assert!(
        matches!(&theirs, Err(kube::Error::Api(e)) if e.code == 403),
        "{theirs:?}"
    );
    // Nor can she rewrite her own.
    let forged = Api::<ConfigMap>::namespaced(alice.clone(), "rep-a-app")
        .patch(
            "enclave-report",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"report.json": "{}"}})),
        )
        .await;
    assert!(forged.is_err(), "the guard keeps the report: {forged:?}");

    // The plugin, as alice: her report (from the Tenant if she may read it, else the
    // published one), not rep-b's.
    let as_alice = kubeconfig_as("alice@rep-a.example")?;
    let (ok, stdout, stderr) = enclave(
        &as_alice,
        &["report", "rep-a", "-o", "json", "-n", "rep-a-dmz"],
    )?;
    ensure!(ok, "{stderr}");
    assert_eq!(json_report(&stdout)?.tenant, "rep-a");
    let (ok, _, stderr) = enclave(&as_alice, &["report", "rep-b", "-n", "rep-b-dmz"])?;
    assert!(!ok && stderr.contains("forbidden"), "{stderr}");

    // As the platform team: text and Markdown, the summary, and the requests.
    let admin = env().kubeconfig.clone();
    let (ok, text, stderr) = enclave(&admin, &["report", "rep-a"])?;
    ensure!(ok, "{stderr}");
    assert!(
        text.contains("R10  BROKEN") && text.contains("R6   KEPT"),
        "{text}"
    );
    let (_, markdown, _) = enclave(&admin, &["report", "rep-a", "-o", "markdown"])?;
    assert!(
        markdown.starts_with("# Compliance report: rep-a"),
        "{markdown}"
    );
    let (ok, status, stderr) = enclave(&admin, &["status"])?;
    ensure!(ok, "{stderr}");
    let line = status
        .lines()
        .find(|l| l.starts_with("rep-a "))
        .context("rep-a listed")?;
    assert!(line.contains("Ready"), "{line}");
    let (ok, _, stderr) = enclave(&admin, &["backup", "rep-a"])?;
    assert!(
        !ok && stderr.contains("no backups (spec.backup)"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = enclave(&admin, &["export", "rep-a"])?;
    ensure!(ok, "{stderr}");
    let export = stdout
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("tenantexport/");
    let made = Api::<TenantExport>::all(client.clone()).get(export).await?;
    assert_eq!(made.spec.tenant, "rep-a");
    let (ok, _, stderr) = enclave(&admin, &["decommission", "rep-b"])?;
    assert!(!ok && stderr.contains("--yes"), "{stderr}");
    let (ok, _, stderr) = enclave(&admin, &["suspend", "rep-b"])?;
    ensure!(ok, "{stderr}");
    phase(&client, "rep-b", Phase::Suspended).await?;
    let (ok, _, stderr) = enclave(&admin, &["resume", "rep-b"])?;
    ensure!(ok, "{stderr}");
    phase(&client, "rep-b", Phase::Ready).await?;
    Ok(())
}
