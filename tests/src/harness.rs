//! One control plane and one operator per test binary, shared by its tests; each test uses its
//! own tenant names, so tests run in parallel.

use crate::controlplane::{ControlPlane, kubectl_output, repo_root};
use anyhow::{Context as _, bail};
use enclave_operator::admission::{Certificates, Guard, GuardConfig};
use enclave_operator::app::Options;
use enclave_operator::config::Config;
use enclave_operator::leader::Election;
use enclave_operator::telemetry::{Health, Metrics};
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The operator's namespace in tests and the demo, where it keeps encryption keys.
pub const OPERATOR_NAMESPACE: &str = "enclave-system";

/// The cluster the tests run against, with the operator running on it.
pub struct Env {
    /// The local control plane; `None` when `KUBECONFIG` names an existing cluster.
    pub control_plane: Option<ControlPlane>,
    /// Kubeconfig of a cluster admin.
    pub kubeconfig: PathBuf,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Where the operator's admin server listens.
    pub admin_addr: SocketAddr,
    kubectl: PathBuf,
    /// The operator's configuration file, watched by the operator: a test may rewrite it.
    pub config_file: PathBuf,
    /// The operator, running for the life of the test process.
    pub operator: Operator,
}

static ENV: OnceLock<Env> = OnceLock::new();

/// Every log line the operator wrote in this process, for tests that look for what must never
/// be logged (private keys).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Writes log lines to stderr and keeps a copy in [`LOGS`].
struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = LOGS.lock() {
            logs.extend_from_slice(buf);
        }
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The operator's log so far.
#[must_use]
pub fn logs() -> String {
    LOGS.lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default()
}

/// JSON logs like the operator's own, teed into [`logs`]; the first subscriber of the process
/// wins, so this runs before the operator starts.
fn init_captured_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(|| Tee)
        .with_env_filter(filter)
        .try_init();
}

/// The shared environment, started on first use.
///
/// # Panics
/// When the control plane or the operator cannot start: no test can run then.
#[allow(clippy::panic)]
pub fn env() -> &'static Env {
    ENV.get_or_init(|| {
        Env::start().unwrap_or_else(|e| panic!("test environment failed to start: {e:#}"))
    })
}

impl Env {
    fn start() -> anyhow::Result<Self> {
        let (control_plane, kubeconfig, kubectl) =
            if let Some(path) = std::env::var_os("KUBECONFIG") {
                let path = PathBuf::from(path);
                let kubectl = crate::controlplane::binaries()?.join("kubectl");
                (None, path, kubectl)
            } else {
                let cp = ControlPlane::start()?;
                let (k, b) = (cp.kubeconfig.clone(), cp.bin_dir.join("kubectl"));
                (Some(cp), k, b)
            };
        install_crds(&kubectl, &kubeconfig)?;
        init_captured_logging("info");
        let config_file = operator_config_file()?;
        let health = Health::default();
        let admin_addr = free_addr()?;
        let guard = local_guard(
            &[String::from("system:masters")],
            control_plane
                .as_ref()
                .map(|cp| cp.webhook_client_ca.as_path()),
        )?;
        // The operator acts as the chart's service account, with the chart's RBAC only.
        let operator_kubeconfig = crate::chart::operator_identity(
            &kubectl,
            &kubeconfig,
            OPERATOR_NAMESPACE,
            guard.client_config.url.as_deref().unwrap_or_default(),
        )?;
        let operator = spawn_operator(
            operator_kubeconfig,
            health.clone(),
            admin_addr,
            Some(guard),
            "info",
            config_file.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !health.ready.load(Ordering::Relaxed) {
            if Instant::now() > deadline {
                bail!("the operator's caches did not sync within 60s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            control_plane,
            kubeconfig,
            metrics: health.metrics,
            admin_addr,
            kubectl,
            config_file,
            operator,
        })
    }

    /// A client acting as cluster admin. Each test makes its own: a client belongs to the
    /// runtime it was made on.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig, KubeConfigOptions::default()).await
    }

    /// A client acting as `user` (in `groups`) through impersonation.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_string()).collect());
        Ok(Client::try_from(config)?)
    }

    /// A `kubectl` command as admin.
    #[must_use]
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Makes the operator reconcile `tenant` once more, with a metadata change that leaves its
    /// spec as is, and waits until it has.
    ///
    /// # Errors
    /// When the patch fails or no reconcile comes within a minute.
    pub async fn reconcile_again(&self, client: &Client, tenant: &str) -> anyhow::Result<()> {
        let reconciles = self.metrics.reconciles.get();
        let poke = serde_json::json!({"metadata": {"annotations": {"test.enclave.dev/poke": chrono::Utc::now().to_rfc3339()}}});
        kube::Api::<enclave_crds::Tenant>::all(client.clone())
            .patch(
                tenant,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&poke),
            )
            .await?;
        eventually("another reconcile", Duration::from_secs(60), || async {
            Ok((self.metrics.reconciles.get() > reconciles).then_some(()))
        })
        .await
    }

    /// The operator's writes to the objects `ours` names while it reconciles the unchanged
    /// `tenant` again, once its earlier writes have settled (none for 3 s): empty at rest. Also
    /// how many writes came before, for tests to check they saw any.
    ///
    /// # Errors
    /// When the audit log cannot be read or the tenant not reconciled.
    pub async fn writes_at_rest(
        &self,
        client: &Client,
        tenant: &str,
        ours: impl Fn(&Value) -> bool + Copy,
    ) -> anyhow::Result<(usize, Vec<Value>)> {
        let before = eventually("writes settle", Duration::from_secs(90), || async {
            let before = self.operator_writes(ours)?.len();
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok((self.operator_writes(ours)?.len() == before).then_some(before))
        })
        .await?;
        self.reconcile_again(client, tenant).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut after = self.operator_writes(ours)?;
        Ok((before, after.split_off(before.min(after.len()))))
    }

    /// The operator's writes recorded in the API server's audit log whose object is named
    /// by `matches` (`objectRef` of each audit event).
    ///
    /// # Errors
    /// On a cluster of your own, whose audit log this process cannot read.
    pub fn operator_writes(&self, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .operator_requests()?
            .into_iter()
            .filter(|event| {
                matches!(
                    event["verb"].as_str(),
                    Some("create" | "update" | "patch" | "delete" | "deletecollection")
                )
            })
            .filter(|event| matches(&event["objectRef"]))
            .collect())
    }

    /// Every request of the operator that the API server refused with 403 (its RBAC, the
    /// chart's, lacks a permission), from the audit log: `verb resource namespace/name`.
    ///
    /// # Errors
    /// On a cluster of your own, whose audit log this process cannot read.
    pub fn operator_forbidden(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .operator_requests()?
            .into_iter()
            .filter(|event| event["responseStatus"]["code"] == 403)
            .map(|event| {
                let object = &event["objectRef"];
                format!(
                    "{} {}.{} {}/{}",
                    event["verb"].as_str().unwrap_or_default(),
                    object["resource"].as_str().unwrap_or_default(),
                    object["apiGroup"].as_str().unwrap_or_default(),
                    object["namespace"].as_str().unwrap_or_default(),
                    object["name"].as_str().unwrap_or_default()
                )
            })
            .collect())
    }

    /// The operator's requests in the local control plane's audit log (its writes, and its
    /// reads: the audit policy records the chart's service account's).
    fn operator_requests(&self) -> anyhow::Result<Vec<Value>> {
        let cp = self
            .control_plane
            .as_ref()
            .context("reading the operator's requests needs the local control plane's audit log")?;
        let text = std::fs::read_to_string(&cp.audit_log)?;
        let operator_user = crate::chart::operator_user(OPERATOR_NAMESPACE);
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["user"]["username"] == operator_user.as_str())
            .collect())
    }
}

async fn client_from(path: &Path, options: KubeConfigOptions) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(Client::try_from(config)?)
}

/// A private copy of `examples/operator-config.yaml` for one operator, which its tests may
/// rewrite (the operator reloads it).
///
/// # Errors
/// When the example cannot be copied.
pub fn operator_config_file() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "enclave-operator-config-{}.yaml",
        std::process::id()
    ));
    std::fs::copy(repo_root().join("examples/operator-config.yaml"), &path)
        .context("copying examples/operator-config.yaml")?;
    Ok(path)
}

/// Applies the committed CRDs and the operator's namespace, and waits until the API server
/// serves the CRDs.
///
/// # Errors
/// When kubectl fails.
pub fn install_crds(kubectl: &Path, kubeconfig: &Path) -> anyhow::Result<()> {
    let crds = repo_root().join("charts/enclave/files/crds");
    let run = |args: &[&str]| kubectl_output(kubectl, kubeconfig, args).map(drop);
    if run(&["get", "namespace", OPERATOR_NAMESPACE]).is_err() {
        run(&["create", "namespace", OPERATOR_NAMESPACE])?;
    }
    let dir = crds.display().to_string();
    run(&["apply", "--server-side", "--force-conflicts", "-f", &dir])?;
    run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        &dir,
    ])
}

/// The operator running on a thread of its own; [`Operator::stop`] ends it.
pub struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    stop_guard: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    /// Stops the admission guard's server only, as if it had crashed; the controller goes on.
    pub fn stop_guard(&self) {
        let _ = self.stop_guard.send(true);
    }

    /// Stops the operator gracefully and waits for its thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the operator on a thread of its own, with its own runtime, logging at `log_level`
/// unless `RUST_LOG` says otherwise, as `enclave-operator run` does: the guard, then the
/// controllers once it holds the leader Lease (at once: it is alone).
#[must_use]
pub fn spawn_operator(
    kubeconfig: PathBuf,
    health: Health,
    admin_addr: SocketAddr,
    guard: Option<GuardConfig>,
    log_level: &'static str,
    config_file: PathBuf,
) -> Operator {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (stop_guard, guard_stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return eprintln!("operator runtime: {error}"),
        };
        runtime.block_on(async move {
            enclave_operator::telemetry::init_logging(log_level);
            let client = match client_from(&kubeconfig, KubeConfigOptions::default()).await {
                Ok(client) => client,
                Err(error) => return eprintln!("operator client: {error:#}"),
            };
            let stop_rx = stopped.clone();
            let admin = tokio::spawn(enclave_operator::telemetry::serve(
                admin_addr,
                health.clone(),
                async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ));
            let options = Options {
                base: Config {
                    poll: Duration::from_millis(500),
                    namespace: OPERATOR_NAMESPACE.into(),
                    ..Config::default()
                },
                config_file: Some(config_file),
                config_poll: Duration::from_millis(500),
                guard,
                election: Some(Election {
                    lease: crate::chart::RELEASE.into(),
                    namespace: OPERATOR_NAMESPACE.into(),
                    identity: format!("test-operator-{}", std::process::id()),
                    duration: Duration::from_secs(15),
                    grace: Duration::from_secs(5),
                }),
                instance: None,
            };
            if let Err(error) =
                enclave_operator::app::run(client, options, health, stop_rx, Some(guard_stopped))
                    .await
            {
                eprintln!("operator stopped: {error}");
            }
            let _ = admin.await;
        });
    });
    Operator {
        stop,
        stop_guard,
        thread: Some(thread),
    }
}

/// The admission guard on a free loopback port, called by URL. The tests' cluster admin
/// (`system:masters`) is exempted so tests can make drift; tenant users never are.
///
/// # Errors
/// When no port is free.
pub fn local_guard(
    exempt_groups: &[String],
    client_ca: Option<&Path>,
) -> anyhow::Result<GuardConfig> {
    let listen = free_addr()?;
    Ok(GuardConfig {
        // On the local control plane the API server presents a client certificate: the guard
        // answers only it.
        client_ca: client_ca.map(std::fs::read_to_string).transpose()?,
        listen,
        namespace: OPERATOR_NAMESPACE.into(),
        client_config: WebhookClientConfig {
            url: Some(format!(
                "https://{listen}{}",
                enclave_operator::admission::PATH
            )),
            ..WebhookClientConfig::default()
        },
        names: vec![listen.ip().to_string()],
        // Kept in the chart's Secret, its caBundle in the chart's webhook configuration, as
        // the chart installs the operator.
        certificates: Certificates::Secret {
            secret: crate::chart::CERTIFICATE_SECRET.into(),
            webhook_configuration: crate::chart::WEBHOOK_CONFIGURATION.into(),
            issued_by_operator: true,
        },
        guard: Guard {
            exempt_groups: exempt_groups.to_vec(),
            // The operator runs as the chart's service account.
            operator_users: vec![crate::chart::operator_user(OPERATOR_NAMESPACE)],
            // Tests wait out retention windows of seconds.
            min_retention: Duration::from_secs(1),
            ..Guard::default()
        },
    })
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
///
/// # Errors
/// When `check` fails or the time runs out.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Binds every pending claim of an Enclave StorageClass to a new volume of the class's driver
/// (what its provisioner does on a real cluster), until aborted: the local control plane has
/// no storage driver.
///
/// # Errors
/// When the API server cannot be read.
pub async fn provision(client: kube::Client) -> anyhow::Result<()> {
    let claims =
        kube::Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::all(client.clone());
    let classes = kube::Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone());
    let volumes = kube::Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone());
    loop {
        for claim in claims.list(&kube::api::ListParams::default()).await?.items {
            let spec = claim.spec.clone().unwrap_or_default();
            let (Some(namespace), Some(name), Some(class)) = (
                claim.metadata.namespace.clone(),
                claim.metadata.name.clone(),
                spec.storage_class_name.clone(),
            ) else {
                continue;
            };
            if spec.volume_name.is_some() || !class.starts_with("enclave-") {
                continue;
            }
            let Some(driver) = classes.get_opt(&class).await?.map(|c| c.provisioner) else {
                continue;
            };
            let size = spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned());
            let volume: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(
                serde_json::json!({
                    "metadata": {"name": format!("demo-{namespace}-{name}")},
                    "spec": {"capacity": {"storage": size}, "accessModes": spec.access_modes,
                             "storageClassName": class, "persistentVolumeReclaimPolicy": "Retain",
                             "csi": {"driver": driver, "volumeHandle": format!("{namespace}-{name}")},
                             "claimRef": {"namespace": namespace, "name": name,
                                          "uid": claim.metadata.uid}}
                }),
            )?;
            // Bound to the claim by its uid, as a provisioner does: the volume controller
            // then binds the claim at once (a volume naming its claim without the uid is
            // "pre-bound", left for the claim's periodic sync, 15 s).
            // Made already on an earlier pass: the claim binds soon.
            let _ = volumes
                .create(&kube::api::PostParams::default(), &volume)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the Tenant `name` with `spec`.
///
/// # Errors
/// When the API server refuses it.
pub async fn create_tenant(
    client: &Client,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let tenant: enclave_crds::Tenant = serde_json::from_value(serde_json::json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec
    }))?;
    kube::Api::<enclave_crds::Tenant>::all(client.clone())
        .create(&kube::api::PostParams::default(), &tenant)
        .await?;
    Ok(())
}
