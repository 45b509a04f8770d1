//! Faults on a real control plane, for `tests/tests/faults.rs` (bounded) and `hack/chaos.sh`
//! (the long run): the operator killed at random points, the API server and etcd restarted, two
//! leaders for a moment, another field manager fighting over managed fields, a Tenant edited
//! every 100 ms, the admission webhook gone, a slow and lossy API. Each scenario gives a
//! [`Row`] of the table: runs, converged, time to converge, orphans, duplicates, claims and
//! Secrets lost, unexpected log lines.

use crate::chart::{self, SERVICE_ACCOUNT};
use crate::controlplane::ControlPlane;
use crate::harness::{OPERATOR_NAMESPACE, eventually, install_crds};
use crate::replica::{Launch, Replica, free_addr, operator_writes};
use anyhow::{Result, ensure};
use enclave_crds::{Phase, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod inventory;
mod proxy;
mod scenarios;
pub use inventory::{Inventory, inventory};
pub use scenarios::*;

/// How long a tenant may take to converge after a fault.
pub const CONVERGE: Duration = Duration::from_secs(120);
/// The label selector of everything the operator manages.
const MANAGED: &str = "app.kubernetes.io/managed-by=enclave-operator";

/// One line of the table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// Faults injected (kills, restarts, edits...).
    pub runs: usize,
    /// Whether every tenant converged to its spec at the end.
    pub converged: bool,
    /// Time to converge after each fault, median, seconds.
    pub p50: f64,
    /// Time to converge after each fault, 99th percentile, seconds.
    pub p99: f64,
    /// Managed objects of no tenant.
    pub orphans: usize,
    /// A tenant's namespace, CA, key or password made twice.
    pub duplicates: usize,
    /// Claims and key Secrets seen before the faults and gone after.
    pub lost: usize,
    /// Operator log lines at WARN or ERROR not in [`EXPECTED`].
    pub unexpected: usize,
    /// What else was measured.
    pub note: String,
}

impl Row {
    /// `p50`/`p99` of `samples` (seconds).
    pub fn times(&mut self, samples: &[Duration]) {
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        // Nearest rank.
        let at = |percent: usize| {
            s.get((s.len() * percent).div_ceil(100).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        (self.p50, self.p99) = (at(50), at(99));
    }
}

/// The table, as `hack/chaos.sh` prints it.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<22} {:>5} {:>9} {:>8} {:>8} {:>7} {:>10} {:>11} {:>10}  {}\n",
        "scenario",
        "runs",
        "converged",
        "p50 s",
        "p99 s",
        "orphans",
        "duplicates",
        "claims lost",
        "unexpected",
        "note"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:>5} {:>9} {:>8.2} {:>8.2} {:>7} {:>10} {:>11} {:>10}  {}",
            r.scenario,
            r.runs,
            if r.converged { "yes" } else { "NO" },
            r.p50,
            r.p99,
            r.orphans,
            r.duplicates,
            r.lost,
            r.unexpected,
            r.note
        );
    }
    out
}

/// Log lines at WARN or ERROR that faults cause, and why each is expected: any other fails
/// the run (the Strimzi habit).
pub const EXPECTED: [(&str, &str); 20] = [
    (
        "too old resource version",
        "a restarted API server's watch cache starts after the watch's resource version: the watch relists",
    ),
    (
        "client error (connect)",
        "the API server restarting, or a connection cut by the proxy: retried",
    ),
    (
        "client error (sendrequest)",
        "a request on a connection the API server or the proxy closed: retried",
    ),
    (
        "eof in poll",
        "kube-client noting a connection closed under a watch",
    ),
    (
        "connection refused",
        "the API server restarting, or not yet up after a kill",
    ),
    ("error trying to connect", "the same, as hyper words it"),
    (
        "connection reset",
        "the proxy dropping a connection, or the API server going away",
    ),
    ("broken pipe", "the same, mid-write"),
    (
        "unexpected eof",
        "a connection cut by the proxy or a restart",
    ),
    ("connection closed", "the same"),
    (
        "timed out",
        "a request outliving the slow proxy's patience or a restart",
    ),
    ("service unavailable", "the API server up before etcd"),
    ("etcdserver", "etcd restarting under the API server"),
    (
        "the object has been modified",
        "a conflict with another writer: retried at once",
    ),
    ("conflict", "the same, as the error kind names it"),
    ("not found", "a tenant deleted while it was reconciled"),
    (
        "watcher error",
        "a watch cut by a restart: the watcher lists again",
    ),
    (
        "lease",
        "the leader Lease lost or unreadable during a fault: the replica stops",
    ),
    (
        "too many requests",
        "the API server shedding load (priority and fairness)",
    ),
    (
        "is being deleted",
        "a namespace terminating under a deleted tenant",
    ),
];

/// What only an API server restart explains: refusals in its first seconds, before its RBAC
/// authorizer has loaded the roles (a missing permission would last; these are retried and
/// stop).
pub const AFTER_RESTART: [(&str, &str); 1] = [(
    "is forbidden",
    "a restarted API server's first seconds, before its RBAC authorizer holds the chart's roles: retried",
)];

/// The lines of `log` at WARN or ERROR that [`EXPECTED`] and `also` do not explain.
#[must_use]
pub fn unexpected_lines(log: &str, also: &[(&str, &str)]) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
        .filter(|l| {
            let lower = l.to_lowercase();
            !EXPECTED
                .iter()
                .chain(also)
                .any(|(needle, _)| lower.contains(needle))
        })
        .map(str::to_string)
        .collect()
}

/// A control plane with Enclave's CRDs, the chart's identity and webhooks, and the operator as
/// processes of its own.
pub struct Cluster {
    /// The control plane.
    pub cp: ControlPlane,
    /// Where the guard of the replica serving it listens.
    pub guard: SocketAddr,
    url: String,
    replicas: usize,
}

impl Cluster {
    /// Starts the control plane and installs the chart's identity, RBAC and webhooks.
    ///
    /// # Errors
    /// When a component cannot start.
    pub fn start() -> Result<Self> {
        let cp = ControlPlane::start()?;
        let kubectl = cp.bin_dir.join("kubectl");
        install_crds(&kubectl, &cp.kubeconfig)?;
        let guard = free_addr()?;
        let url = format!("https://{guard}/validate");
        chart::operator_identity(&kubectl, &cp.kubeconfig, OPERATOR_NAMESPACE, &url)?;
        Ok(Self {
            cp,
            guard,
            url,
            replicas: 0,
        })
    }

    /// A cluster-admin client.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read.
    pub async fn client(&self) -> Result<Client> {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&self.cp.kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        Ok(Client::try_from(config)?)
    }

    /// A token kubeconfig of the chart's service account, of its own (the audit log tells
    /// replicas apart by it), talking to `server` (the API server, or a proxy).
    ///
    /// # Errors
    /// When the token cannot be made.
    pub fn kubeconfig(&mut self, server: Option<&str>) -> Result<PathBuf> {
        let kubectl = self.cp.bin_dir.join("kubectl");
        let made = chart::token_kubeconfig(
            &kubectl,
            &self.cp.kubeconfig,
            OPERATOR_NAMESPACE,
            SERVICE_ACCOUNT,
        )?;
        self.replicas += 1;
        let path = made.with_file_name(format!("replica-{}.kubeconfig", self.replicas));
        let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&made)?)?;
        if let Some(server) = server
            && let Some(clusters) = config["clusters"].as_sequence_mut()
        {
            for cluster in clusters {
                cluster["cluster"]["server"] = server.into();
            }
        }
        std::fs::write(&path, serde_yaml::to_string(&config)?)?;
        Ok(path)
    }

    /// Starts a replica named `name` with `kubeconfig`; `serve` makes it the one the webhooks
    /// call.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn replica(
        &self,
        name: &str,
        kubeconfig: &std::path::Path,
        serve: bool,
    ) -> Result<Replica> {
        let extra = [
            "--guard-exempt-group=system:masters".to_string(),
            "--lease-duration-seconds=6".to_string(),
            "--lease-grace-seconds=2".to_string(),
            "--resync-seconds=60".to_string(),
        ];
        Replica::start(
            name,
            &Launch {
                namespace: OPERATOR_NAMESPACE,
                kubeconfig,
                guard: if serve { self.guard } else { free_addr()? },
                url: &self.url,
                webhook_client_ca: &self.cp.webhook_client_ca,
                extra: &extra,
            },
        )
    }

    /// The operator's accepted writes so far.
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn writes(&self) -> Result<Vec<crate::replica::Write>> {
        operator_writes(&self.cp.audit_log, OPERATOR_NAMESPACE)
    }
}

/// Waits until `replica` holds the Lease.
///
/// # Errors
/// When it does not within a minute.
pub async fn leading(replica: &Replica) -> Result<Duration> {
    let started = Instant::now();
    eventually(
        &format!("{} leads", replica.name),
        Duration::from_secs(60),
        || async { Ok(replica.leads().then_some(())) },
    )
    .await?;
    Ok(started.elapsed())
}

/// A tenant of the scenarios: `full` ones have a workload, a volume, TLS and backups.
#[must_use]
pub fn spec(full: bool, display: &str) -> Value {
    if full {
        json!({
            "displayName": display,
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]},
                      {"name": "data", "allowFrom": ["dmz"]}],
            "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}],
            "tls": {"dnsNames": ["shop.example"]},
            "backup": {"schedule": "0 2 * * *",
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "chaos-s3"}},
            "lifecycle": {"retention": "1h"}
        })
    } else {
        json!({"displayName": display, "zones": [{"name": "app", "ports": [{"port": 8080}]}], "lifecycle": {"retention": "1h"}})
    }
}

/// `attempt` until it succeeds, for up to 90 s: while the operator is down, its webhooks
/// refuse Tenant changes (they fail closed), and a restarted API server refuses connections.
///
/// # Errors
/// The last error, when it never succeeds.
pub async fn retrying<F, Fut>(what: &str, mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(error) if started.elapsed() > Duration::from_secs(90) => {
                return Err(anyhow::Error::from(error).context(what.to_string()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Ok for `code` (a create that already happened, a delete of what is gone).
fn except(code: u16) -> impl Fn(kube::Error) -> Result<(), kube::Error> {
    move |error| match error {
        kube::Error::Api(status) if status.code == code => Ok(()),
        error => Err(error),
    }
}

/// Creates the Tenant `name` with `spec`, and the backups' store credentials once.
///
/// # Errors
/// When the API server keeps refusing.
pub async fn create(client: &Client, name: &str, spec: Value) -> Result<()> {
    let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let store: Secret = serde_json::from_value(json!({"metadata": {"name": "chaos-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}}))?;
    retrying("the store's credentials", || async {
        secrets
            .create(&PostParams::default(), &store)
            .await
            .map(drop)
            .or_else(except(409))
    })
    .await?;
    let tenant: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}),
    )?;
    let api = Api::<Tenant>::all(client.clone());
    retrying(&format!("creating {name}"), || async {
        api.create(&PostParams::default(), &tenant)
            .await
            .map(drop)
            .or_else(except(409))
    })
    .await
}

/// Sets `spec.displayName` of `name` (a new generation).
///
/// # Errors
/// When the API server keeps refusing.
pub async fn rename(client: &Client, name: &str, display: &str) -> Result<()> {
    let patch = json!({"spec": {"displayName": display}});
    let api = Api::<Tenant>::all(client.clone());
    retrying(&format!("renaming {name}"), || async {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
    })
    .await
}

/// Deletes the Tenant `name`, confirmed as the guard asks.
///
/// # Errors
/// When the API server keeps refusing.
pub async fn delete(client: &Client, name: &str) -> Result<()> {
    let api = Api::<Tenant>::all(client.clone());
    let confirm = json!({"metadata": {"annotations": {"enclave.dev/confirm-delete": name}}});
    retrying(&format!("deleting {name}"), || async {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&confirm))
            .await?;
        api.delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .or_else(except(404))
    })
    .await
}

/// Whether every Tenant is at rest: the live ones Ready for their current generation, the
/// deleted ones Decommissioning (their data kept until the deadline).
///
/// # Errors
/// When the Tenants cannot be listed.
pub async fn settled(client: &Client) -> Result<(bool, Vec<String>)> {
    let mut waiting = Vec::new();
    for t in Api::<Tenant>::all(client.clone())
        .list(&ListParams::default())
        .await?
    {
        let status = t.status.clone().unwrap_or_default();
        let at_rest = if t.metadata.deletion_timestamp.is_some() {
            status.phase == Some(Phase::Decommissioning)
        } else {
            status.phase == Some(Phase::Ready)
                && status.observed_generation == t.metadata.generation
        };
        if !at_rest {
            waiting.push(format!("{} ({:?})", t.name_any(), status.phase));
        }
    }
    Ok((waiting.is_empty(), waiting))
}

/// Waits until [`settled`]; how long it took.
///
/// # Errors
/// When it does not within [`CONVERGE`].
pub async fn converge(client: &Client) -> Result<Duration> {
    converge_within(client, CONVERGE).await
}

/// Waits until [`settled`], at most `limit`; how long it took.
///
/// # Errors
/// When it does not within `limit`.
pub async fn converge_within(client: &Client, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let (done, waiting) = settled(client).await?;
        if done {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < limit,
            "not converged after {limit:?}: {}",
            waiting.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the tenant `name` has observed its current generation.
///
/// # Errors
/// When it does not within [`CONVERGE`].
pub async fn observed(client: &Client, name: &str) -> Result<Duration> {
    let started = Instant::now();
    let api = Api::<Tenant>::all(client.clone());
    eventually(&format!("{name} observed"), CONVERGE, || async {
        let t = api.get(name).await?;
        let status = t.status.unwrap_or_default();
        Ok((status.observed_generation == t.metadata.generation
            && status.phase == Some(Phase::Ready))
        .then_some(()))
    })
    .await?;
    Ok(started.elapsed())
}

/// A small deterministic generator (no dependency, the same run each time for a seed).
pub struct Lcg(u64);

impl Lcg {
    /// Seeded.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}
