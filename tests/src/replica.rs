//! The operator as its own process, as a Deployment runs it: the `enclave-operator` binary Cargo
//! built, with the chart's identity (a service account token), its guard on a loopback port,
//! leader election on. Tests kill it, pause it, stop it and read its metrics and its log.

use crate::chart::{CERTIFICATE_SECRET, RELEASE, WEBHOOK_CONFIGURATION};
use crate::controlplane::repo_root;
use anyhow::{Context as _, Result, ensure};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One operator process.
pub struct Replica {
    /// Its name (`POD_NAME`: its leader-election identity).
    pub name: String,
    child: Child,
    /// Its admin server (metrics, health).
    pub admin: SocketAddr,
    /// Its log (JSON lines).
    pub log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start a replica.
pub struct Launch<'a> {
    /// The operator's namespace.
    pub namespace: &'a str,
    /// A kubeconfig acting as the chart's service account.
    pub kubeconfig: &'a Path,
    /// Where its guard listens.
    pub guard: SocketAddr,
    /// The URL the webhook configurations call.
    pub url: &'a str,
    /// The CA of the API server's webhook client certificate.
    pub webhook_client_ca: &'a Path,
    /// Further arguments of `enclave-operator run`.
    pub extra: &'a [String],
}

impl Replica {
    /// Starts `enclave-operator run` as `name`, its log appended to a file of its own.
    ///
    /// # Errors
    /// When the binary is missing or cannot start.
    pub fn start(name: &str, launch: &Launch<'_>) -> Result<Self> {
        let admin = free_addr()?;
        let log =
            std::env::temp_dir().join(format!("enclave-replica-{name}-{}.log", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(operator_binary()?)
            .args(["run", "--namespace", launch.namespace])
            .arg(format!(
                "--config={}",
                repo_root().join("examples/operator-config.yaml").display()
            ))
            .arg(format!("--admin-addr={admin}"))
            .arg(format!("--guard-addr={}", launch.guard))
            .arg(format!("--guard-url={}", launch.url))
            .arg(format!("--guard-certificate-secret={CERTIFICATE_SECRET}"))
            .arg(format!("--webhook-configuration={WEBHOOK_CONFIGURATION}"))
            .arg(format!(
                "--service-account={}",
                crate::chart::SERVICE_ACCOUNT
            ))
            .arg(format!(
                "--guard-client-ca={}",
                launch.webhook_client_ca.display()
            ))
            .args(["--min-retention=1s", "--leader-election"])
            .arg(format!("--leader-election-lease={RELEASE}"))
            .args(launch.extra)
            .env("KUBECONFIG", launch.kubeconfig)
            .env("POD_NAME", name)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()?;
        Ok(Self {
            name: name.into(),
            child,
            admin,
            log,
        })
    }

    /// `enclave_<name>` of its metrics, summed over its series.
    #[must_use]
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = http_get(self.admin, "/metrics").ok()?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// The cumulative buckets `(le, count)` of its histogram `name`.
    #[must_use]
    pub fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        histogram_of(&http_get(self.admin, "/metrics").unwrap_or_default(), name)
    }

    /// Whether it holds the leader Lease.
    #[must_use]
    pub fn leads(&self) -> bool {
        self.metric("enclave_leader") == Some(1.0)
    }

    /// Its log so far.
    #[must_use]
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has ended.
    ///
    /// # Errors
    /// When the status cannot be read.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`).
    ///
    /// # Errors
    /// When `kill` cannot run.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -{signal} {}", self.child.id());
        Ok(())
    }

    /// SIGKILL, and waits for the process to end.
    ///
    /// # Errors
    /// When it cannot be signalled.
    pub fn kill9(&mut self) -> Result<()> {
        self.signal("KILL")?;
        let _ = self.child.wait();
        Ok(())
    }

    /// SIGTERM, and waits for the process to end.
    ///
    /// # Errors
    /// When it does not end within 20 s.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        self.signal("TERM")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `GET path` on a loopback HTTP server: the raw response.
///
/// # Errors
/// When it cannot be reached.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A free loopback address.
///
/// # Errors
/// When none is free.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The operator binary Cargo built beside the tests, or `$ENCLAVE_OPERATOR_BINARY` (the
/// benchmark runs the release build).
///
/// # Errors
/// When it is missing.
pub fn operator_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ENCLAVE_OPERATOR_BINARY") {
        let path = PathBuf::from(path);
        ensure!(path.exists(), "{} is missing", path.display());
        return Ok(path);
    }
    let path = repo_root().join("target/debug/enclave-operator");
    let path = std::env::var_os("CARGO_TARGET_DIR").map_or(path, |dir| {
        PathBuf::from(dir).join("debug/enclave-operator")
    });
    ensure!(
        path.exists(),
        "{} is missing: cargo build -p enclave-operator --bins (hack/test.sh does)",
        path.display()
    );
    Ok(path)
}

/// The credential id (token JTI) a kubeconfig's token carries: audit events name it.
///
/// # Errors
/// When the kubeconfig holds no JWT.
pub fn credential_id(kubeconfig: &Path) -> Result<String> {
    let config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    let token = config["users"][0]["user"]["token"]
        .as_str()
        .context("token")?;
    let payload = token.split('.').nth(1).context("a JWT")?;
    let claims: Value = serde_json::from_slice(&base64_url(payload)?)?;
    Ok(format!("JTI={}", claims["jti"].as_str().context("jti")?))
}

fn base64_url(text: &str) -> Result<Vec<u8>> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = alphabet.iter().position(|a| *a == c).context("base64url")?;
        bits = (bits << 6) | u32::try_from(value)?;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff)?);
        }
    }
    Ok(out)
}

/// One write of the operator in the API server's audit log.
#[derive(Clone, Debug)]
pub struct Write {
    /// The credential id of the token that made it (one per replica).
    pub credential: String,
    /// `create`, `update`, `patch` or `delete`.
    pub verb: String,
    /// The resource (`configmaps`).
    pub resource: String,
    /// Its namespace, empty for a cluster-scoped object.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// When the API server received it (RFC 3339, microseconds).
    pub at: String,
}

/// Every write of the chart's operator (in `namespace`) the API server accepted, from its
/// audit log: Events aside (the guard writes them on every replica), refused writes aside
/// (they changed nothing).
///
/// # Errors
/// When the log cannot be read.
pub fn operator_writes(audit_log: &Path, namespace: &str) -> Result<Vec<Write>> {
    let user = crate::chart::operator_user(namespace);
    let field = |e: &Value, f: &str| e["objectRef"][f].as_str().unwrap_or_default().to_string();
    Ok(std::fs::read_to_string(audit_log)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == user.as_str())
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            )
        })
        .filter(|e| e["objectRef"]["resource"] != "events")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_i64()
                .is_some_and(|c| c < 400)
        })
        .map(|e| Write {
            credential: e["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            verb: e["verb"].as_str().unwrap_or_default().to_string(),
            resource: field(&e, "resource"),
            namespace: field(&e, "namespace"),
            name: field(&e, "name"),
            at: e["requestReceivedTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect())
}

/// The cumulative buckets `(le, count)` of the histogram `name` in a metrics text.
#[must_use]
pub fn histogram_of(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q`; past the last finite bucket, that
/// bucket's bound (a lower bound then).
#[must_use]
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let last_finite = buckets
        .iter()
        .map(|b| b.0)
        .filter(|le| le.is_finite())
        .fold(0.0, f64::max);
    buckets
        .iter()
        .find(|(_, count)| *count >= total * q)
        .map_or(0.0, |(le, _)| le.min(last_finite))
}
