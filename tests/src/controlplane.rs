//! The local control plane: etcd, kube-apiserver (RBAC, admission, audit log),
//! kube-controller-manager, kube-scheduler and kwok with fake nodes in two zones, on free
//! loopback ports, with certificates made here.
//!
//! Every process it starts is stopped when the [`ControlPlane`] is dropped, and by a reaper
//! process when this process ends any other way (a panic, Ctrl-C, a kill), so nothing is
//! left behind.

mod restart;
use crate::pki::{self, Authority, CertFiles};
use anyhow::{Context as _, bail};
use restart::Restarted;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fake nodes: name and zone. Three nodes over two zones, so spreading is observable.
/// Each takes 1,000 pods (a kubelet's default is 110): the benchmark's 100 full tenants run
/// their workloads twice, the operator's and the bare client's.
pub const NODES: [(&str, &str); 3] = [
    ("kwok-node-a1", "zone-a"),
    ("kwok-node-a2", "zone-a"),
    ("kwok-node-b1", "zone-b"),
];

/// The user the operator runs as on the local control plane, so the audit log tells its
/// writes apart from everyone else's.
pub const OPERATOR_USER: &str = "enclave-operator";

/// Audit policy: metadata of every write, and of the operator's reads (a read its RBAC
/// refuses shows there as a 403); nothing of other reads or of node heartbeats.
const AUDIT_POLICY: &str = r"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: None
  users: [system:kube-scheduler]
  verbs: [update, patch]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
  userGroups: [system:serviceaccounts:enclave-system]
- level: None
";

/// Admission plugins of a production cluster.
const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,DefaultStorageClass,\
DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,\
ResourceQuota,Priority,StorageObjectInUseProtection,PersistentVolumeClaimResize,RuntimeClass";

/// A running local control plane.
pub struct ControlPlane {
    /// Directory of its certificates, kubeconfigs, data and logs; removed on drop.
    pub dir: PathBuf,
    /// Directory of the Kubernetes binaries.
    pub bin_dir: PathBuf,
    /// Kubeconfig of a cluster admin.
    pub kubeconfig: PathBuf,
    /// Kubeconfig of the operator's own user ([`OPERATOR_USER`]).
    pub operator_kubeconfig: PathBuf,
    /// The API server's audit log (JSON lines).
    pub audit_log: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// The CA of the client certificate the API server presents to admission webhooks.
    pub webhook_client_ca: PathBuf,
    children: Vec<(String, Child)>,
    /// How each component was started, by name, and its process since a restart.
    started: std::sync::Mutex<Vec<Restarted>>,
    reaper: Option<Child>,
}

/// The directory holding the control-plane binaries: `$ENCLAVE_BIN_DIR`, or what
/// `hack/build-controlplane.sh` builds (at once when cached).
///
/// # Errors
/// When the build fails.
pub fn binaries() -> anyhow::Result<PathBuf> {
    built("ENCLAVE_BIN_DIR", "hack/build-controlplane.sh")
}

/// The directory holding cert-manager's controller (`bin/controller`) and CRDs (`crds/`):
/// `$ENCLAVE_CERT_MANAGER_DIR`, or what `hack/build-cert-manager.sh` builds.
///
/// # Errors
/// When the build fails.
pub fn cert_manager() -> anyhow::Result<PathBuf> {
    built("ENCLAVE_CERT_MANAGER_DIR", "hack/build-cert-manager.sh")
}

/// The directory holding restic (`bin/restic`): `$ENCLAVE_RESTIC_DIR`, or what
/// `hack/build-restic.sh` builds.
///
/// # Errors
/// When the build fails.
pub fn restic() -> anyhow::Result<PathBuf> {
    built("ENCLAVE_RESTIC_DIR", "hack/build-restic.sh")
}

/// The directory holding rclone (`bin/rclone`, with `serve s3`, the local S3-compatible server
/// the backup tests run restic against): `$ENCLAVE_RCLONE_DIR`, or what `hack/build-rclone.sh`
/// builds.
///
/// # Errors
/// When the build fails.
pub fn rclone() -> anyhow::Result<PathBuf> {
    built("ENCLAVE_RCLONE_DIR", "hack/build-rclone.sh")
}

/// `$variable` when set (`hack/test.sh` builds everything first), else the directory the
/// build `script` prints on its last line (at once when cached).
///
/// # Errors
/// When the build fails.
pub fn built(variable: &str, script: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(variable) {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join(script);
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed", script.display());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(PathBuf::from(
        stdout.lines().last().unwrap_or_default().trim(),
    ))
}

/// Runs `kubectl` against `kubeconfig` and returns its output.
///
/// # Errors
/// When kubectl cannot run or fails; its stderr is in the error.
pub fn kubectl_output(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The repository's root directory.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl ControlPlane {
    /// Builds (or finds cached) and starts every component, and waits until the API is
    /// healthy and the fake nodes are Ready.
    ///
    /// # Errors
    /// When a component fails to start; its log's tail is in the error.
    pub fn start() -> anyhow::Result<Self> {
        let bin_dir = binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "enclave-controlplane-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cp = Self {
            kubeconfig: dir.join("admin.kubeconfig"),
            operator_kubeconfig: dir.join("operator.kubeconfig"),
            audit_log: dir.join("audit.log"),
            server: String::new(),
            webhook_client_ca: dir.join("ca.crt"),
            bin_dir,
            dir,
            children: Vec::new(),
            started: std::sync::Mutex::default(),
            reaper: None,
        };
        cp.start_reaper()?;
        cp.boot()?;
        Ok(cp)
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let dir = self.dir.clone();
        let ca = Authority::create(&dir)?;
        let (sa_key, sa_pub) = pki::service_account_keys(&dir)?;
        let serving = ca.serving(
            "apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default.svc",
                "10.0.0.1",
            ],
        )?;
        let [
            etcd_port,
            etcd_peer,
            api_port,
            cm_port,
            sched_port,
            kwok_port,
        ] = free_ports()?;
        self.server = format!("https://127.0.0.1:{api_port}");

        let clients: [(&str, &str, &[&str]); 5] = [
            ("admin", "enclave-admin", &["system:masters"]),
            ("operator", OPERATOR_USER, &["system:masters"]),
            ("controller-manager", "system:kube-controller-manager", &[]),
            ("scheduler", "system:kube-scheduler", &[]),
            ("kwok", "kwok-controller", &["system:masters"]),
        ];
        for (file, user, groups) in clients {
            let certs = ca.client(file, user, groups)?;
            write_kubeconfig(
                &dir.join(format!("{file}.kubeconfig")),
                &self.server,
                &ca.ca_file,
                user,
                &certs,
            )?;
        }

        // The API server presents a client certificate to every webhook, so a webhook can
        // answer only it.
        let webhook_client = ca.client("webhook-client", "kube-apiserver-webhook-client", &[])?;
        std::fs::write(
            dir.join("webhook.kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate: {}\n    client-key: {}\n",
                webhook_client.cert.display(),
                webhook_client.key.display()
            ),
        )?;
        std::fs::write(
            dir.join("admission.yaml"),
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ValidatingAdmissionWebhook\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {0}\n- name: MutatingAdmissionWebhook\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {0}\n",
                dir.join("webhook.kubeconfig").display()
            ),
        )?;
        self.webhook_client_ca.clone_from(&ca.ca_file);

        progress("starting etcd");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        self.spawn(
            "etcd",
            Command::new(self.bin("etcd")).args([
                "--name=enclave".to_string(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=enclave=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true".to_string(),
                // As kubeadm sets it: the API server's watch caches learn etcd's progress every
                // 5 s, so a kind nobody changes does not keep a restarted API server's watch
                // cache behind the resource version its lists hand out (watches would then
                // fail with 410 Expired, relist and fail again).
                "--watch-progress-notify-interval=5s".to_string(),
                "--log-level=warn".to_string(),
            ]),
        )?;
        self.wait("etcd", Duration::from_secs(30), |_| {
            http_get_contains(etcd_port, "/health", "true")
        })?;

        progress("starting kube-apiserver");
        std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;
        self.spawn(
            "kube-apiserver",
            Command::new(self.bin("kube-apiserver")).args([
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                // No kubelets or kube-proxy here: the `kubernetes` Service needs no endpoints, and
                // the reconciler refuses a loopback address.
                "--endpoint-reconciler-type=none".to_string(),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", serving.cert.display()),
                format!("--tls-private-key-file={}", serving.key.display()),
                format!("--client-ca-file={}", ca.ca_file.display()),
                "--service-account-issuer=https://kubernetes.default.svc".to_string(),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                "--authorization-mode=RBAC".to_string(),
                // As on a real cluster: privileged pods are possible, and Pod Security admission is
                // what refuses them in restricted namespaces.
                "--allow-privileged=true".to_string(),
                format!("--enable-admission-plugins={ADMISSION_PLUGINS}"),
                format!(
                    "--admission-control-config-file={}",
                    dir.join("admission.yaml").display()
                ),
                format!(
                    "--audit-policy-file={}",
                    dir.join("audit-policy.yaml").display()
                ),
                format!("--audit-log-path={}", self.audit_log.display()),
                "--audit-log-format=json".to_string(),
                "--audit-log-mode=blocking".to_string(),
                // Never rotated during a run (the default rotates at 100 MB): the harness reads
                // only this file, and a rotation would hide writes from a zero-writes check.
                "--audit-log-maxsize=100000".to_string(),
                "--profiling=false".to_string(),
                "--v=1".to_string(),
            ]),
        )?;
        self.wait("kube-apiserver", Duration::from_secs(90), |cp| {
            cp.kubectl_ok(&["get", "--raw", "/readyz"])
        })?;

        progress("starting kube-controller-manager, kube-scheduler and kwok");
        self.spawn(
            "kube-controller-manager",
            Command::new(self.bin("kube-controller-manager")).args([
                format!(
                    "--kubeconfig={}",
                    dir.join("controller-manager.kubeconfig").display()
                ),
                format!(
                    "--authentication-kubeconfig={}",
                    dir.join("controller-manager.kubeconfig").display()
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    dir.join("controller-manager.kubeconfig").display()
                ),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", ca.ca_file.display()),
                "--use-service-account-credentials=true".to_string(),
                "--leader-elect=false".to_string(),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={cm_port}"),
                "--controllers=*".to_string(),
                "--v=1".to_string(),
            ]),
        )?;
        self.spawn(
            "kube-scheduler",
            Command::new(self.bin("kube-scheduler")).args([
                format!(
                    "--kubeconfig={}",
                    dir.join("scheduler.kubeconfig").display()
                ),
                format!(
                    "--authentication-kubeconfig={}",
                    dir.join("scheduler.kubeconfig").display()
                ),
                format!(
                    "--authorization-kubeconfig={}",
                    dir.join("scheduler.kubeconfig").display()
                ),
                "--leader-elect=false".to_string(),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={sched_port}"),
                "--v=1".to_string(),
            ]),
        )?;
        self.spawn(
            "kwok",
            Command::new(self.bin("kwok")).args([
                format!("--kubeconfig={}", dir.join("kwok.kubeconfig").display()),
                format!(
                    "--config={}",
                    repo_root().join("tests/kwok/stages.yaml").display()
                ),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_string(),
                "--cidr=10.0.128.0/17".to_string(),
                "--node-ip=10.0.0.2".to_string(),
                format!("--server-address=127.0.0.1:{kwok_port}"),
            ]),
        )?;
        self.create_nodes()?;
        self.wait("fake nodes", Duration::from_secs(60), |cp| {
            cp.kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                "node",
                "--all",
                "--timeout=2s",
            ])
        })?;
        // Pods need the namespace's default service account, made by the controller-manager.
        self.wait("the controller-manager", Duration::from_secs(60), |cp| {
            cp.kubectl_ok(&["get", "serviceaccount", "default", "--namespace=default"])
        })?;
        progress(&format!(
            "ready in {:.1}s: KUBECONFIG={}",
            started.elapsed().as_secs_f64(),
            self.kubeconfig.display()
        ));
        Ok(())
    }

    fn create_nodes(&self) -> anyhow::Result<()> {
        let mut yaml = String::new();
        for (name, zone) in NODES {
            write!(
                yaml,
                r#"---
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: {zone}
status:
  allocatable: {{cpu: "32", memory: 256Gi, pods: "1000"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "1000"}}
"#
            )?;
        }
        self.kubectl_stdin(&["apply", "-f", "-"], &yaml)
    }

    /// A `kubectl` command for this cluster, as admin.
    #[must_use]
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Runs kubectl with `args`, feeding `input` on stdin.
    ///
    /// # Errors
    /// When kubectl fails; its stderr is in the error.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> anyhow::Result<()> {
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn kubectl_ok(&self, args: &[&str]) -> bool {
        self.kubectl()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name} from {}", self.bin_dir.display()))?;
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("pids"))?;
        writeln!(pids, "{}", child.id())?;
        if let Ok(mut started) = self.started.lock() {
            started.push(Restarted {
                name: name.to_string(),
                program: cmd.get_program().to_owned(),
                args: cmd.get_args().map(ToOwned::to_owned).collect(),
                process: None,
            });
        }
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Waits for `ready`, failing early with the log's tail if a component exits.
    fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return Ok(());
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited ({status}) while waiting for {what}:\n{}",
                        tail(&self.dir.join(format!("{name}.log")))
                    );
                }
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for (n, _) in &self.children {
                    let _ = writeln!(
                        logs,
                        "--- {n}\n{}",
                        tail(&self.dir.join(format!("{n}.log")))
                    );
                }
                bail!("{what} not ready after {timeout:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A watcher process, in its own process group so Ctrl-C does not stop it, that kills every
    /// component and removes the directory once this process is gone, however it ended.
    fn start_reaper(&mut self) -> anyhow::Result<()> {
        let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
[ -f "$2/pids" ] && kill -9 $(cat "$2/pids") 2>/dev/null
sleep 1; rm -rf "$2""#;
        let reaper = Command::new("sh")
            .args(["-c", script, "enclave-reaper"])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        self.reaper = Some(reaper);
        Ok(())
    }

    /// Starts a process that belongs with the control plane (cert-manager, say): its output goes
    /// to `<dir>/<name>.log`, and the reaper stops it with the rest. The caller owns the child.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn start_extra(&self, name: &str, cmd: &mut Command) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("pids"))?;
        writeln!(pids, "{}", child.id())?;
        Ok(child)
    }

    /// Ids of the component processes, for checks that none outlives the control plane.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        let restarted: Vec<u32> = self
            .started
            .lock()
            .map(|s| {
                s.iter()
                    .filter_map(|c| c.process.as_ref().map(Child::id))
                    .collect()
            })
            .unwrap_or_default();
        self.children
            .iter()
            .map(|(_, c)| c.id())
            .chain(restarted)
            .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(mut started) = self.started.lock() {
            for process in started.iter_mut().rev().filter_map(|c| c.process.as_mut()) {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
        // Reverse order: clients of the API server first, etcd last.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    certs: &CertFiles,
) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: enclave-local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
users:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
contexts:\n- name: enclave-local\n  context:\n    cluster: enclave-local\n    user: {user}\ncurrent-context: enclave-local\n",
        ca = ca.display(),
        cert = certs.cert.display(),
        key = certs.key.display(),
    );
    std::fs::write(path, yaml)?;
    Ok(())
}

/// Free loopback ports, all bound at once so none is handed out twice.
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn http_get_contains(port: u16, path: &str, needle: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    (body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200")) && body.contains(needle)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

fn progress(message: &str) {
    eprintln!("[controlplane] {message}");
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
