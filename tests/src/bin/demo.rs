//! The demo: start (or use, through `KUBECONFIG`) a cluster, install the CRDs, run the operator,
//! apply the example Tenants, wait until they are Ready and show what was made, with the
//! compliance report of the full one (initech) as `kubectl enclave report` prints it.
//!
//! Interactive, it leaves everything running until Ctrl-C; otherwise it stops when done.

use anyhow::{Context as _, bail};
use enclave_crds::{Phase, Tenant};
use enclave_operator::telemetry::Health;
use enclave_tests::controlplane::{ControlPlane, binaries, kubectl_output, repo_root};
use enclave_tests::harness::{install_crds, local_guard, operator_config_file, spawn_operator};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (control_plane, kubeconfig, kubectl) = if let Some(path) = std::env::var_os("KUBECONFIG") {
        step(&format!(
            "using the cluster of KUBECONFIG={}",
            PathBuf::from(&path).display()
        ));
        (None, PathBuf::from(path), binaries()?.join("kubectl"))
    } else {
        step(
            "starting the local control plane (the first run builds it from source: several minutes)",
        );
        let cp = tokio::task::spawn_blocking(ControlPlane::start).await??;
        let (k, b) = (cp.kubeconfig.clone(), cp.bin_dir.join("kubectl"));
        (Some(cp), k, b)
    };
    let kubectl_cmd = |args: &[&str]| kubectl_output(&kubectl, &kubeconfig, args);

    step("installing the CRDs");
    install_crds(&kubectl, &kubeconfig)?;

    step("starting the operator");
    let health = Health::default();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    // Warnings only, so the demo's output stays readable; RUST_LOG=info shows every line.
    let guard = match &control_plane {
        Some(cp) => Some(local_guard(&[], Some(&cp.webhook_client_ca))?),
        None => None,
    };
    // On the local control plane the operator runs as the chart's service account, with the
    // chart's RBAC and webhook configuration, the identity the guard trusts.
    let operator_kubeconfig = match &guard {
        Some(guard) => enclave_tests::chart::operator_identity(
            &kubectl,
            &kubeconfig,
            enclave_tests::harness::OPERATOR_NAMESPACE,
            guard.client_config.url.as_deref().unwrap_or_default(),
        )?,
        None => kubeconfig.clone(),
    };
    let operator = spawn_operator(
        operator_kubeconfig,
        health.clone(),
        admin,
        guard,
        "warn",
        operator_config_file()?,
    );
    println!("        /metrics, /livez and /readyz on http://{admin}");

    let client = client(&kubeconfig).await?;
    step(
        "the object store credentials of initech's backups (placeholders: the demo runs no backup)",
    );
    let store: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "initech-s3", "namespace": enclave_tests::harness::OPERATOR_NAMESPACE},
        "stringData": {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}
    }))?;
    let secrets =
        Api::<Secret>::namespaced(client.clone(), enclave_tests::harness::OPERATOR_NAMESPACE);
    if secrets.get_opt("initech-s3").await?.is_none() {
        secrets.create(&PostParams::default(), &store).await?;
    }
    // The local control plane has no storage driver: the demo binds each claim of an Enclave
    // class to a volume of that class's driver, as the driver's provisioner would.
    let provisioner = tokio::spawn(enclave_tests::harness::provision(client.clone()));

    let examples = repo_root().join("examples/tenants");
    step(&format!("applying {}", examples.display()));
    print!(
        "{}",
        kubectl_cmd(&["apply", "-f", &examples.display().to_string()])?
    );

    let names = tenant_names(&examples)?;
    step(&format!("waiting for {} to be Ready", names.join(", ")));
    wait_ready(&client, &names).await?;

    step("kubectl get tenants");
    print!("{}", kubectl_cmd(&["get", "tenants"])?);
    step("the namespaces Enclave made");
    print!(
        "{}",
        kubectl_cmd(&[
            "get",
            "namespaces",
            "-l",
            "app.kubernetes.io/managed-by=enclave-operator",
            "-L",
            "enclave.dev/tenant,enclave.dev/zone,pod-security.kubernetes.io/enforce",
        ])?
    );
    step("what isolates acme: its NetworkPolicies, bindings and quotas");
    print!(
        "{}",
        kubectl_cmd(&[
            "get",
            "networkpolicies,rolebindings,resourcequotas,limitranges",
            "-A",
            "-l",
            "enclave.dev/tenant=acme",
        ])?
    );
    step("the exposure report: every port reachable from outside its zone");
    for name in &names {
        let tenant = Api::<Tenant>::all(client.clone()).get(name).await?;
        let status = tenant.status.unwrap_or_default();
        let isolated = status.conditions.iter().find(|c| c.type_ == "Isolated");
        println!(
            "        {name}: Isolated={} ({})",
            isolated.map_or("?", |c| c.status.as_str()),
            isolated.map_or("", |c| c.message.as_str())
        );
        for entry in &status.exposure {
            println!(
                "          {}:{}/{:?} from {}",
                entry.zone, entry.port, entry.protocol, entry.from
            );
        }
        for (resource, usage) in &status.usage {
            println!("          usage {resource}: {usage}");
        }
    }
    step("initech's workloads (N+1: capacity 2, one spare) and replicated encrypted volumes");
    print!(
        "{}",
        kubectl_cmd(&[
            "get",
            "deployments,statefulsets,persistentvolumeclaims",
            "-n",
            "initech-app",
        ])?
    );
    print!(
        "{}",
        kubectl_cmd(&["get", "deployments", "-n", "initech-dmz"])?
    );
    step("kubectl enclave report initech: each promise of the policy and its evidence");
    let plugin = std::env::current_exe()?
        .parent()
        .context("the demo's directory")?
        .join("kubectl-enclave");
    let report = std::process::Command::new(&plugin)
        .args(["report", "initech"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .with_context(|| format!("{} (hack/demo.sh builds it)", plugin.display()))?;
    print!("{}", String::from_utf8_lossy(&report.stdout));
    eprint!("{}", String::from_utf8_lossy(&report.stderr));
    step("Events the operator recorded");
    print!(
        "{}",
        kubectl_cmd(&[
            "get",
            "events.events.k8s.io",
            "-n",
            "default",
            "--field-selector",
            "regarding.kind=Tenant",
            "-o",
            "custom-columns=TENANT:.regarding.name,TYPE:.type,REASON:.reason,NOTE:.note",
            "--sort-by=.metadata.creationTimestamp"
        ])?
    );

    if std::io::stdin().is_terminal() && std::env::var_os("CI").is_none() {
        step("the demo cluster is up; in another terminal:");
        println!("        export KUBECONFIG={}", kubeconfig.display());
        println!("        {} get tenants", kubectl.display());
        println!("        Ctrl-C stops the operator and the control plane.");
        tokio::signal::ctrl_c().await?;
        step("stopping");
    }
    provisioner.abort();
    operator.stop();
    drop(control_plane);
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// The names of the Tenants in the example manifests.
fn tenant_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let tenant: Tenant = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
                .with_context(|| path.display().to_string())?;
            names.extend(tenant.metadata.name);
        }
    }
    names.sort();
    Ok(names)
}

/// Waits until every tenant is Ready, printing each change of phase.
async fn wait_ready(client: &kube::Client, names: &[String]) -> anyhow::Result<()> {
    let api = Api::<Tenant>::all(client.clone());
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut ready = 0;
        for name in names {
            let tenant = api.get(name).await?;
            let phase = tenant.status.as_ref().and_then(|s| s.phase);
            let reason = tenant
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            let line = match phase {
                Some(phase) => format!("{phase:?} ({reason})"),
                None => "waiting for the operator".to_string(),
            };
            if seen.get(name) != Some(&line) {
                println!(
                    "        [{:>5.1}s] {name}: {}",
                    started.elapsed().as_secs_f64(),
                    line
                );
                seen.insert(name.clone(), line);
            }
            if phase == Some(Phase::Ready) {
                ready += 1;
            }
        }
        if ready == names.len() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("tenants not Ready after 120s: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
