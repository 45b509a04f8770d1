//! The Helm chart on the real control plane: lint and server-side validation of what it
//! renders, its webhook configuration equal to the operator's, and the operator binary run out
//! of the cluster with the chart's service account and RBAC only: two replicas, one leader, a
//! failover, `helm uninstall` and `install` again losing nothing, and `helm upgrade` upgrading
//! the CRDs.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result, bail, ensure};
use enclave_crds::{Phase, RequestPhase, Tenant, TenantExport, TenantRestore};
use enclave_operator::admission::{
    Guard, mutating_configuration, operator_service_account, webhook_configuration,
};
use enclave_tests::chart::{self, RELEASE, SERVICE_ACCOUNT, WEBHOOK_CONFIGURATION};
use enclave_tests::controlplane::{ControlPlane, built, kubectl_output, repo_root};
use enclave_tests::harness::eventually;
use enclave_tests::replica::{self, Launch, Replica, credential_id, free_addr, http_get};
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "enclave-system";
const WAIT: Duration = Duration::from_secs(120);

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| ControlPlane::start().expect("the control plane starts"))
}

fn helm(args: &[&str]) -> Result<String> {
    let cp = control_plane();
    let out = Command::new(chart::helm()?)
        .args(args)
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .output()?;
    if !out.status.success() {
        bail!(
            "helm {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kubectl(args: &[&str]) -> Result<String> {
    let cp = control_plane();
    kubectl_output(&cp.bin_dir.join("kubectl"), &cp.kubeconfig, args)
}

async fn admin() -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(&control_plane().kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn chart_path() -> String {
    chart::chart_dir().display().to_string()
}

// ---------------------------------------------------------------------------------------------
// What the chart renders
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_chart_lints_strictly_and_every_rendering_is_valid_on_the_api_server() -> Result<()> {
    let cp = control_plane();
    let kubectl_bin = cp.bin_dir.join("kubectl");
    // The CRDs the optional objects need: prometheus-operator's and cert-manager's.
    let monitoring = built(
        "ENCLAVE_PROMETHEUS_OPERATOR_CRDS",
        "hack/fetch-prometheus-operator-crds.sh",
    )?;
    let cert_manager = built("ENCLAVE_CERT_MANAGER_DIR", "hack/build-cert-manager.sh")?;
    for dir in [monitoring, cert_manager.join("crds")] {
        let dir = dir.display().to_string();
        kubectl(&["apply", "--server-side", "-f", &dir])?;
        // A CRD just created may have no conditions yet: kubectl wait then fails at once.
        eventually("the CRDs established", WAIT, || async {
            Ok(kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "-f",
                &dir,
            ])
            .ok())
        })
        .await?;
    }
    kubectl(&["create", "namespace", "render"])?;
    let values = repo_root().join("charts/enclave/ci");
    let files = [
        None,
        Some(values.join("ha-monitoring-values.yaml")),
        Some(values.join("cert-manager-values.yaml")),
    ];
    for file in &files {
        let mut lint = vec!["lint", "--strict", "--kube-version", "1.37.2"];
        let file_arg;
        if let Some(file) = file {
            file_arg = file.display().to_string();
            lint.extend(["-f", &file_arg]);
        }
        let chart = chart_path();
        lint.push(&chart);
        let out = helm(&lint)?;
        ensure!(out.contains("0 chart(s) failed"), "{out}");

        let mut template = vec!["template", "rendered", "--namespace", "render"];
        template.extend(["--kube-version", "1.37.2"]);
        let file_arg;
        if let Some(file) = file {
            file_arg = file.display().to_string();
            template.extend(["-f", &file_arg]);
        }
        template.push(&chart);
        let rendered = helm(&template)?;
        let kinds: BTreeSet<String> = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .map(str::to_string)
            .collect();
        // Server-side: the API server (and every CRD's schema) judges each object.
        let out = chart::apply_with(
            &kubectl_bin,
            &cp.kubeconfig,
            &rendered,
            &["--dry-run=server"],
        )?;
        println!(
            "{file:?}: {} objects valid ({kinds:?})",
            out.lines().count()
        );
        ensure!(out.lines().count() >= 14, "{out}");
        if file
            .as_ref()
            .is_some_and(|f| f.ends_with("ha-monitoring-values.yaml"))
        {
            for kind in [
                "ServiceMonitor",
                "PrometheusRule",
                "NetworkPolicy",
                "PodDisruptionBudget",
            ] {
                ensure!(kinds.contains(kind), "{kind} missing from {kinds:?}");
            }
            ensure!(rendered.contains("replicas: 3"), "replicaCount");
            ensure!(rendered.contains("@sha256:"), "the image by digest");
        }
        if file
            .as_ref()
            .is_some_and(|f| f.ends_with("cert-manager-values.yaml"))
        {
            ensure!(kinds.contains("Certificate") && kinds.contains("Issuer"));
            ensure!(
                rendered
                    .contains("cert-manager.io/inject-ca-from: render/rendered-enclave-webhook")
            );
            ensure!(rendered.contains("--guard-certificate-issuer=cert-manager"));
        }
    }
    // The schema, and the chart's own checks for what a schema cannot judge, refuse unsafe
    // values, naming them.
    let chart = chart_path();
    for (value, named) in [
        ("webhook.timeoutSeconds=30", "/webhook/timeoutSeconds"),
        (
            "replicaCount=2,leaderElection.enabled=false",
            "leaderElection.enabled",
        ),
        (
            "leaderElection.renewGraceSeconds=10",
            "leaderElection.renewGraceSeconds",
        ),
        ("serviceAccount.create=false", "serviceAccount.name"),
        (
            "webhook.exemptGroups={system:authenticated}",
            "webhook.exemptGroups",
        ),
    ] {
        let refused = helm(&[
            "template",
            "x",
            &chart,
            "--kube-version",
            "1.37.2",
            "--set",
            value,
        ]);
        ensure!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains(named)),
            "{value}: {refused:?}"
        );
    }
    Ok(())
}

#[test]
fn the_chart_webhook_configuration_is_the_operators() -> Result<()> {
    let rendered = chart::render(NAMESPACE, &[], &["webhook.yaml"])?;
    let chart: Value = serde_yaml::from_str(&rendered)?;
    let guard = Guard {
        operator_users: vec![operator_service_account(NAMESPACE, SERVICE_ACCOUNT)],
        ..Guard::default()
    };
    let operator = serde_json::to_value(webhook_configuration(
        WebhookClientConfig::default(),
        "CA",
        &guard,
        NAMESPACE,
    ))?;
    let without_client = |hooks: &Value| -> Vec<Value> {
        hooks
            .as_array()
            .into_iter()
            .flatten()
            .map(|hook| {
                let mut hook = hook.clone();
                hook.as_object_mut().map(|h| h.remove("clientConfig"));
                hook
            })
            .collect()
    };
    let (ours, theirs) = (
        without_client(&operator["webhooks"]),
        without_client(&chart["webhooks"]),
    );
    ensure!(ours.len() == theirs.len() && ours.len() == 4);
    for (ours, theirs) in ours.iter().zip(&theirs) {
        ensure!(
            ours == theirs,
            "the chart's webhook differs from the operator's:\noperator: {ours:#}\nchart:    {theirs:#}"
        );
    }
    // No caBundle in the template: the operator keeps it, and Helm never fights over it.
    ensure!(!rendered.contains("caBundle"));
    for hook in chart["webhooks"].as_array().context("webhooks")? {
        ensure!(hook["clientConfig"]["service"]["name"] == "enclave-webhook");
        ensure!(hook["timeoutSeconds"].as_i64().is_some_and(|t| t <= 10));
    }
    // The mutation (the firewall on tenants' Ingresses), likewise.
    let rendered = chart::render(NAMESPACE, &[], &["mutatingwebhook.yaml"])?;
    let chart: Value = serde_yaml::from_str(&rendered)?;
    let operator = serde_json::to_value(mutating_configuration(
        WebhookClientConfig::default(),
        "CA",
        &guard,
        NAMESPACE,
    ))?;
    let (ours, theirs) = (
        without_client(&operator["webhooks"]),
        without_client(&chart["webhooks"]),
    );
    ensure!(
        ours.len() == 1 && ours == theirs,
        "operator: {ours:#?}\nchart: {theirs:#?}"
    );
    ensure!(!rendered.contains("caBundle"));
    ensure!(chart["webhooks"][0]["clientConfig"]["service"]["path"] == "/mutate");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Installed, run with the chart's identity, failed over, reinstalled, upgraded
// ---------------------------------------------------------------------------------------------

/// An operator process, killed when dropped.
fn start_replica(
    name: &str,
    kubeconfig: &Path,
    guard: std::net::SocketAddr,
    url: &str,
) -> Result<Replica> {
    Replica::start(
        name,
        &Launch {
            namespace: NAMESPACE,
            kubeconfig,
            guard,
            url,
            webhook_client_ca: &control_plane().webhook_client_ca,
            extra: &[],
        },
    )
}

/// What a tenant is made of, by uid: tenants, namespaces, claims and Secrets.
async fn inventory(client: &kube::Client) -> Result<BTreeSet<String>> {
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=enclave-operator");
    let mut uids = BTreeSet::new();
    let mut add = |kind: &str, meta: &kube::api::ObjectMeta| {
        uids.insert(format!(
            "{kind} {}/{} {}",
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
            meta.uid.clone().unwrap_or_default()
        ));
    };
    for t in Api::<Tenant>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        add("Tenant", &t.metadata);
    }
    for n in Api::<Namespace>::all(client.clone()).list(&managed).await? {
        add("Namespace", &n.metadata);
    }
    for c in Api::<PersistentVolumeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        add("PersistentVolumeClaim", &c.metadata);
    }
    for s in Api::<Secret>::all(client.clone()).list(&managed).await? {
        add("Secret", &s.metadata);
    }
    Ok(uids)
}

/// Every operator write in the audit log, as (credential id, resource, name).
fn operator_writes(audit_log: &Path) -> Result<Vec<(String, String, String)>> {
    Ok(replica::operator_writes(audit_log, NAMESPACE)?
        .into_iter()
        .map(|w| (w.credential, w.resource, w.name))
        .collect())
}

fn forbidden(audit_log: &Path) -> Result<Vec<String>> {
    let user = chart::operator_user(NAMESPACE);
    Ok(std::fs::read_to_string(audit_log)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == user.as_str() && e["responseStatus"]["code"] == 403)
        // The test's own attempts with the operator's token, refused on purpose.
        .filter(|e| e["objectRef"]["name"] != "planted")
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e["verb"].as_str().unwrap_or_default(),
                e["objectRef"]["resource"].as_str().unwrap_or_default(),
                e["objectRef"]["namespace"].as_str().unwrap_or_default(),
                e["objectRef"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

async fn create_full_tenant(client: &kube::Client, name: &str) -> Result<()> {
    let store: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-s3"), "namespace": NAMESPACE},
        "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &store)
        .await?;
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "data", "allowFrom": ["dmz"]}],
            "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "tls": {"dnsNames": [format!("{name}.example")]},
            "backup": {"schedule": "0 2 * * *",
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": format!("{name}-s3")}},
            "lifecycle": {"retention": "1h"}
        }
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    // A volume for the claim, so the restore's and export's pods can be scheduled.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("pv-{name}")},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "enclave-default-r3-encrypted",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": name},
                 "claimRef": {"namespace": format!("{name}-data"), "name": "db"}}
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(())
}

async fn wait_ready(client: &kube::Client, name: &str) -> Result<()> {
    let tenants = Api::<Tenant>::all(client.clone());
    eventually(&format!("{name} Ready"), WAIT, || async {
        let tenant = tenants.get(name).await?;
        let status = tenant.status.unwrap_or_default();
        Ok((status.phase == Some(Phase::Ready)
            && status.observed_generation == tenant.metadata.generation)
            .then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_by_helm_the_operator_runs_with_the_charts_rights_fails_over_and_loses_nothing()
-> Result<()> {
    let cp = control_plane();
    let client = admin().await?;
    let kubectl_bin = cp.bin_dir.join("kubectl");
    let guard = free_addr()?;
    let url = format!("https://{guard}/validate");
    let chart = chart_path();
    let set_url = format!("webhook.url={url}");
    let install = [
        "install",
        RELEASE,
        &chart,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        &set_url,
    ];
    helm(&install)?;
    // Two replicas, each with a token of its own (the audit log tells them apart).
    let first_kubeconfig =
        chart::token_kubeconfig(&kubectl_bin, &cp.kubeconfig, NAMESPACE, SERVICE_ACCOUNT)?;
    let a_kubeconfig = first_kubeconfig.with_file_name("replica-a.kubeconfig");
    std::fs::rename(&first_kubeconfig, &a_kubeconfig)?;
    let b_kubeconfig =
        chart::token_kubeconfig(&kubectl_bin, &cp.kubeconfig, NAMESPACE, SERVICE_ACCOUNT)?;
    let (a_id, b_id) = (credential_id(&a_kubeconfig)?, credential_id(&b_kubeconfig)?);
    ensure!(a_id != b_id);
    // The first replica leads; the second, started once the first leads, is the standby, and
    // the one the webhook calls: the guard answers on a replica that does not lead.
    let b = start_replica("replica-b", &b_kubeconfig, free_addr()?, &url)?;
    eventually("replica-b leads", WAIT, || async {
        Ok(b.leads().then_some(()))
    })
    .await?;
    let a = start_replica("replica-a", &a_kubeconfig, guard, &url)?;
    eventually("replica-a serves", WAIT, || async {
        Ok(http_get(a.admin, "/readyz")
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            .then_some(()))
    })
    .await?;
    ensure!(b.leads() && !a.leads(), "one leader: replica-b");
    let (leader, follower, leader_id, follower_id) = (b, a, b_id, a_id);
    println!("leader: {}, standby: {}", leader.name, follower.name);
    // The caBundle of the chart's webhook configuration is the operator's.
    eventually("the caBundle", WAIT, || async {
        let out = kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            WEBHOOK_CONFIGURATION,
            "-o",
            "jsonpath={.webhooks[*].clientConfig.caBundle}",
        ])?;
        Ok((out.split(' ').filter(|b| !b.is_empty()).count() == 4).then_some(()))
    })
    .await?;

    // The example tenants and a full one: TLS, workloads, volumes, backups; then a restore and
    // an export.
    let examples = repo_root().join("examples/tenants").display().to_string();
    kubectl(&["apply", "-f", &examples])?;
    create_full_tenant(&client, "full").await?;
    for name in ["acme", "globex", "full"] {
        wait_ready(&client, name).await?;
    }
    let restore: TenantRestore = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "TenantRestore", "metadata": {"name": "full-all"},
        "spec": {"tenant": "full"}
    }))?;
    let restores = Api::<TenantRestore>::all(client.clone());
    restores.create(&PostParams::default(), &restore).await?;
    let export: TenantExport = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "TenantExport", "metadata": {"name": "full-x"},
        "spec": {"tenant": "full"}
    }))?;
    let exports = Api::<TenantExport>::all(client.clone());
    exports.create(&PostParams::default(), &export).await?;
    eventually("restore and export succeeded", WAIT, || async {
        let r = restores.get("full-all").await?.status.unwrap_or_default();
        let x = exports.get("full-x").await?.status.unwrap_or_default();
        Ok(
            (r.phase == Some(RequestPhase::Succeeded) && x.phase == Some(RequestPhase::Succeeded))
                .then_some(()),
        )
    })
    .await?;

    // The standby's guard refuses what it must, from its caches: a tenant admin (RBAC lets
    // them write Secrets) may not delete the TLS Secret the operator keeps in their zone.
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&cp.kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info.impersonate = Some("alice@acme.example".into());
    config.auth_info.impersonate_groups = Some(vec!["acme-admins".into()]);
    let alice = kube::Client::try_from(config)?;
    let tls = Api::<Secret>::namespaced(client.clone(), "acme-dmz")
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=enclave-operator"))
        .await?;
    let secret = tls
        .items
        .first()
        .and_then(|s| s.metadata.name.clone())
        .context("a managed Secret in acme-dmz")?;
    let refused = Api::<Secret>::namespaced(alice, "acme-dmz")
        .delete(&secret, &kube::api::DeleteParams::default())
        .await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("managed by Enclave")),
        "the standby's guard let a tenant admin delete {secret}: {refused:?}"
    );

    // The operator's own token reaches only what Enclave manages (the chart's admission
    // policy, run by the API server): not another namespace, not another ClusterRole.
    let operator = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&a_kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?,
    )?;
    let foreign: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "planted"}}))?;
    for namespace in ["default", "kube-system"] {
        let refused =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(operator.clone(), namespace)
                .create(&PostParams::default(), &foreign)
                .await;
        ensure!(
            refused.as_ref().is_err_and(|e| e
                .to_string()
                .contains("only in the namespaces Enclave manages")),
            "the operator's token wrote in {namespace}: {refused:?}"
        );
    }
    // A ClusterRole of rights the operator holds (so RBAC's own escalation check lets it
    // through) but not a tenant role: the policy refuses it.
    let planted: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "planted"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    }))?;
    let refused = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(operator.clone())
        .create(&PostParams::default(), &planted)
        .await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("only the tenant ClusterRoles")),
        "the operator's token made ClusterRole planted: {refused:?}"
    );

    // Only the leader wrote, tenants' objects included.
    let writes = operator_writes(&cp.audit_log)?;
    let by_follower: Vec<_> = writes.iter().filter(|w| w.0 == follower_id).collect();
    let by_leader = writes.iter().filter(|w| w.0 == leader_id).count();
    println!(
        "writes before the failover: {by_leader} by the leader, {} by the standby",
        by_follower.len()
    );
    ensure!(by_leader > 50, "the leader's writes: {by_leader}");
    // The standby may have made the webhook's certificate (whoever starts first), nothing else.
    ensure!(
        by_follower
            .iter()
            .all(|w| w.1 == "secrets" && w.2 == format!("{RELEASE}-webhook-tls")),
        "the standby wrote: {by_follower:?}"
    );

    // The leader dies (SIGKILL): the standby takes over; a tenant created meanwhile is Ready.
    let writes_before = writes.len();
    let mut leader = leader;
    let killed = Instant::now();
    leader.kill9()?;
    let during: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "failover"},
        "spec": {"displayName": "created during the failover"}
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &during)
        .await?;
    let reconciles_before = follower.metric("enclave_reconciles_total").unwrap_or(0.0);
    let took = eventually("the standby's first reconcile", WAIT, || async {
        Ok((follower.leads()
            && follower.metric("enclave_reconciles_total").unwrap_or(0.0) > reconciles_before)
            .then(|| killed.elapsed()))
    })
    .await?;
    println!(
        "failover: first reconcile by the new leader {:.1}s after the leader was killed (lease 10s, renewed 3s before expiry)",
        took.as_secs_f64()
    );
    ensure!(
        took < Duration::from_secs(15),
        "failover took {took:?}, goal 15s"
    );
    wait_ready(&client, "failover").await?;
    let after: Vec<_> = operator_writes(&cp.audit_log)?
        .split_off(writes_before)
        .into_iter()
        .filter(|w| w.0 == leader_id)
        .collect();
    ensure!(
        after.is_empty(),
        "the killed leader wrote after its death: {after:?}"
    );

    // Nothing was refused to the chart's identity, and nothing panicked.
    let refused = forbidden(&cp.audit_log)?;
    ensure!(
        refused.is_empty(),
        "403s to the chart's service account: {refused:?}"
    );
    for replica in [&leader, &follower] {
        let logs = replica.logs();
        ensure!(
            !logs.contains("forbidden") && !logs.contains("panicked"),
            "{}: {logs}",
            replica.name
        );
    }
    drop(leader);

    // helm uninstall, then install again: no tenant, namespace, claim or Secret lost.
    let before = inventory(&client).await?;
    ensure!(
        before
            .iter()
            .any(|i| i.starts_with("PersistentVolumeClaim full-data/db"))
    );
    let stopped = follower.terminate()?;
    ensure!(stopped.success(), "SIGTERM: {stopped:?}");
    // Released on SIGTERM: the Lease has no holder.
    let holder = kubectl(&[
        "get",
        "lease",
        RELEASE,
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?;
    ensure!(holder.is_empty(), "the lease is still held by {holder}");
    helm(&["uninstall", RELEASE, "--namespace", NAMESPACE])?;
    let crds = kubectl(&["get", "crd", "tenants.enclave.dev", "-o", "name"])?;
    ensure!(crds.contains("tenants.enclave.dev"), "the CRD was kept");
    helm(&install)?;
    let kubeconfig =
        chart::token_kubeconfig(&kubectl_bin, &cp.kubeconfig, NAMESPACE, SERVICE_ACCOUNT)?;
    let again = start_replica("replica-c", &kubeconfig, guard, &url)?;
    for name in ["acme", "globex", "full", "failover"] {
        wait_ready(&client, name).await?;
    }
    let after = inventory(&client).await?;
    let lost: Vec<_> = before.difference(&after).collect();
    ensure!(
        lost.is_empty(),
        "lost across uninstall and install: {lost:?}"
    );
    println!(
        "helm uninstall + install: {} objects kept by uid, none lost",
        before.len()
    );

    // helm upgrade with a changed CRD: the API server serves the new one.
    let changed = std::env::temp_dir().join(format!("enclave-chart-{}", std::process::id()));
    copy_dir(&chart::chart_dir(), &changed)?;
    let crd_file = changed.join("files/crds/tenants.enclave.dev.yaml");
    let text = std::fs::read_to_string(&crd_file)?;
    let marker = "the chart upgraded this CRD";
    let edited = text.replacen(
        "description: The tenant's network zones",
        &format!("description: The tenant's network zones ({marker})"),
        1,
    );
    ensure!(edited != text, "the CRD's description to change");
    std::fs::write(&crd_file, edited)?;
    helm(&[
        "upgrade",
        RELEASE,
        &changed.display().to_string(),
        "--namespace",
        NAMESPACE,
        "--set",
        &set_url,
    ])?;
    let served = kubectl(&["get", "crd", "tenants.enclave.dev", "-o", "yaml"])?;
    ensure!(
        served.contains(marker),
        "helm upgrade did not upgrade the CRD"
    );
    ensure!(served.contains("helm.sh/resource-policy: keep"));
    let refused = forbidden(&cp.audit_log)?;
    ensure!(
        refused.is_empty(),
        "403s to the chart's service account: {refused:?}"
    );
    drop(again);
    let _ = std::fs::remove_dir_all(&changed);
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
