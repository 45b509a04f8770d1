//! The scale benchmark (`hack/bench.sh`): N tenants on a fresh local control plane, the release
//! operator as its own process, against a bare client applying the same objects. Measures, for
//! one profile and one N: the cold start to all Ready and the bare client's time (their ratio),
//! create → Ready of tenants added one by one among N, the operator's reads and writes per
//! reconcile of unchanged tenants (from the audit log, which records the operator's reads),
//! its RSS and CPU, and the API server's CPU.
// Counts and seconds become f64 for ratios and the table: far below 2^52.
#![allow(clippy::cast_precision_loss)]

use crate::chaos::{self, Cluster};
use crate::harness::OPERATOR_NAMESPACE;
use crate::replica::{Launch, Replica};
use anyhow::{Context as _, Result, ensure};
use enclave_crds::{Phase, Tenant};
use enclave_operator::config::{Config, ConfigFile};
use futures::TryStreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, Seek as _};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many tenants are created (and objects applied) at once.
pub const PARALLEL: usize = 16;

/// What each tenant of a run is.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// `spec: {displayName}`: the default zones, nothing else.
    Minimal,
    /// A workload, a volume, TLS from the built-in CA, backups ([`chaos::spec`]).
    Full,
}

impl Profile {
    fn spec(self, display: &str) -> Value {
        match self {
            Self::Minimal => json!({"displayName": display}),
            Self::Full => chaos::spec(true, display),
        }
    }
}

/// One line of the benchmark's table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub profile: String,
    pub tenants: usize,
    /// Objects the bare client applied per tenant (the operator makes these, and more for
    /// TLS, which needs its CA).
    pub objects_per_tenant: f64,
    /// Cold start: N Tenants created, until all are Ready.
    pub operator_seconds: f64,
    /// The same objects server-side applied by a bare client.
    pub bare_seconds: f64,
    pub ratio: f64,
    /// Create → Ready of tenants added one by one among N.
    pub ready_p50_ms: f64,
    pub ready_p99_ms: f64,
    /// Every tenant reconciled again (an annotation changed): the operator's requests per
    /// reconcile, from the audit log.
    pub reads_per_reconcile: f64,
    pub writes_per_reconcile: f64,
    /// At rest for [`REST`]: the operator's reads per second (periodic resyncs included).
    pub reads_per_second_at_rest: f64,
    pub operator_rss_mib: f64,
    /// CPU seconds of the operator over the cold start.
    pub operator_cpu_seconds: f64,
    /// CPU seconds of kube-apiserver over the operator's cold start and the bare client's run.
    pub apiserver_cpu_seconds: f64,
    pub apiserver_cpu_seconds_bare: f64,
    /// Reconciles over the whole run, and those that failed.
    pub reconciles: f64,
    pub reconcile_errors: f64,
    /// The requests of the forced reconciles, by `verb resource`.
    pub reads_by_kind: std::collections::BTreeMap<String, usize>,
    /// The operator's writes over the cold start, per tenant.
    pub cold_writes_per_tenant: f64,
    /// The operator's requests over the cold start, by `verb resource`.
    pub cold_requests: std::collections::BTreeMap<String, usize>,
}

/// How long the operator is watched at rest.
pub const REST: Duration = Duration::from_secs(30);

/// The example configuration, as the operator loads it (for the bare client's objects).
fn config() -> Result<Config> {
    let text = std::fs::read_to_string(
        crate::controlplane::repo_root().join("examples/operator-config.yaml"),
    )?;
    let mut config = ConfigFile::parse(&text)?.apply_to(&Config::default());
    config.namespace = OPERATOR_NAMESPACE.into();
    config.operator_ca = Some("CA".into());
    config.broker_url = Some("https://enclave-webhook.enclave-system.svc:443/credentials".into());
    Ok(config)
}

/// The objects the operator would apply for tenant `name`, relabelled so that the operator
/// neither watches nor sweeps them, and without owner (no Tenant owns them).
fn bare_objects(profile: Profile, name: &str, config: &Config) -> Result<Vec<Value>> {
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "uid": format!("00000000-0000-4000-8000-{:012}", name.len())},
        "spec": profile.spec(name)}))?;
    let built = enclave_operator::desired::desired(&tenant, config)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.reason, e.message))?;
    // The StorageClasses are shared by every tenant asking for the same profile: made by
    // the operator (a bare one under the same name would be foreign to it, and refused).
    let mut objects: Vec<Value> = built
        .objects()
        .into_iter()
        .filter(|o| o["kind"] != "StorageClass")
        .collect();
    for object in &mut objects {
        let meta = &mut object["metadata"];
        if let Some(meta) = meta.as_object_mut() {
            meta.remove("ownerReferences");
        }
        if let Some(labels) = meta["labels"].as_object_mut() {
            labels.retain(|k, _| {
                !k.starts_with("enclave.dev/") && !k.starts_with("app.kubernetes.io/")
            });
            labels.insert("bench.enclave.dev/bare".into(), json!("true"));
        }
    }
    Ok(objects)
}

/// Server-side applies `object` as the bare client.
async fn apply(client: &Client, object: &Value) -> Result<()> {
    let (group, version) = match object["apiVersion"].as_str().unwrap_or_default() {
        v if v.contains('/') => v.split_once('/').context("apiVersion")?,
        v => ("", v),
    };
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("bench-bare").force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("{kind} {name}"))?;
    Ok(())
}

/// The bare client: every tenant's objects applied, [`PARALLEL`] tenants at a time, each
/// tenant's in order. Returns the time taken and the objects applied.
async fn bare(client: &Client, profile: Profile, n: usize) -> Result<(Duration, usize)> {
    let config = config()?;
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        all.push(bare_objects(profile, &format!("raw{i}"), &config)?);
    }
    let count = all.iter().map(Vec::len).sum();
    let started = Instant::now();
    futures::stream::iter(all.into_iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(PARALLEL, |objects| async move {
            for object in &objects {
                apply(client, object).await?;
            }
            Ok(())
        })
        .await?;
    Ok((started.elapsed(), count))
}

/// Creates the Tenant `name`.
async fn create(client: &Client, profile: Profile, name: &str) -> Result<()> {
    if profile == Profile::Full {
        return chaos::create(client, name, profile.spec(name)).await;
    }
    let tenant: Tenant = serde_json::from_value(json!({"apiVersion": "enclave.dev/v1alpha1",
        "kind": "Tenant", "metadata": {"name": name}, "spec": profile.spec(name)}))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    Ok(())
}

fn ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Ready) && s.observed_generation == t.metadata.generation
    })
}

/// Waits, by a watch, until every Tenant in `names` is Ready for its generation.
async fn all_ready(client: &Client, names: &BTreeSet<String>, limit: Duration) -> Result<()> {
    let mut waiting = names.clone();
    let mut events = std::pin::pin!(
        watcher(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default()
        )
        .applied_objects()
    );
    let wait = async {
        while let Some(t) = events.try_next().await? {
            if ready(&t) {
                waiting.remove(&t.name_any());
            }
            if waiting.is_empty() {
                return Ok::<_, anyhow::Error>(());
            }
        }
        anyhow::bail!("the watch ended")
    };
    tokio::time::timeout(limit, wait)
        .await
        .map_err(|_| anyhow::anyhow!("not all Ready within {limit:?}"))?
}

/// Create → Ready of `name`, polled every 10 ms.
async fn create_to_ready(client: &Client, profile: Profile, name: &str) -> Result<Duration> {
    let api = Api::<Tenant>::all(client.clone());
    let started = Instant::now();
    create(client, profile, name).await?;
    loop {
        if api.get_opt(name).await?.as_ref().is_some_and(ready) {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{name} not Ready in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU seconds (user + system) of process `pid` so far.
///
/// # Errors
/// When its `/proc` entry cannot be read.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command's closing parenthesis: state is field 3; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Resident memory of process `pid`, in MiB.
///
/// # Errors
/// When its `/proc` entry cannot be read.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

/// The operator's requests in the audit log from byte `from` on: (reads, writes, reads by
/// `verb resource`) — reads are `get` and `list`, writes every verb that changes something
/// (Events included). The guard's own upkeep (its webhook configurations and its certificate
/// Secret, looked at every few seconds whatever the tenants do) is counted apart, as
/// `upkeep <verb resource>`, not as reads.
fn requests_since(
    audit_log: &Path,
    from: u64,
) -> Result<(usize, usize, std::collections::BTreeMap<String, usize>)> {
    let user = crate::chart::operator_user(OPERATOR_NAMESPACE);
    let mut file = std::fs::File::open(audit_log)?;
    file.seek(std::io::SeekFrom::Start(from))?;
    let (mut reads, mut writes) = (0, 0);
    let mut kinds = std::collections::BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if !line.contains(&user) {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["user"]["username"] != user.as_str() {
            continue;
        }
        match event["verb"].as_str() {
            Some(verb @ ("get" | "list")) => {
                let resource = event["objectRef"]["resource"].as_str().unwrap_or_default();
                let name = event["objectRef"]["name"].as_str().unwrap_or_default();
                let upkeep = [
                    crate::chart::WEBHOOK_CONFIGURATION,
                    crate::chart::CERTIFICATE_SECRET,
                ]
                .contains(&name);
                if upkeep {
                    *kinds
                        .entry(format!("upkeep {verb} {resource}"))
                        .or_default() += 1;
                } else {
                    reads += 1;
                    *kinds.entry(format!("{verb} {resource}")).or_default() += 1;
                }
            }
            Some(verb @ ("create" | "update" | "patch" | "delete" | "deletecollection")) => {
                writes += 1;
                let resource = event["objectRef"]["resource"].as_str().unwrap_or_default();
                let sub = event["objectRef"]["subresource"]
                    .as_str()
                    .map_or(String::new(), |s| format!("/{s}"));
                *kinds.entry(format!("{verb} {resource}{sub}")).or_default() += 1;
            }
            _ => {}
        }
    }
    Ok((reads, writes, kinds))
}

fn log_size(audit_log: &Path) -> Result<u64> {
    Ok(std::fs::metadata(audit_log)?.len())
}

/// The `q` quantile of `samples` (nearest rank).
#[must_use]
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Starts the operator (the release build, `$ENCLAVE_OPERATOR_BINARY`) with the chart's
/// identity and its defaults (resync, concurrency), and waits until it leads.
async fn operator(cluster: &mut Cluster) -> Result<Replica> {
    let kubeconfig = cluster.kubeconfig(None)?;
    let extra = ["--guard-exempt-group=system:masters".to_string()];
    let url = format!("https://{}/validate", cluster.guard);
    let replica = Replica::start(
        "bench",
        &Launch {
            namespace: OPERATOR_NAMESPACE,
            kubeconfig: &kubeconfig,
            guard: cluster.guard,
            url: &url,
            webhook_client_ca: &cluster.cp.webhook_client_ca,
            extra: &extra,
        },
    )?;
    chaos::leading(&replica).await?;
    Ok(replica)
}

/// One run: a fresh control plane, `n` tenants of `profile`, `one_by_one` more added singly.
///
/// # Errors
/// When a step fails or does not finish in time.
pub async fn run(profile: Profile, n: usize, one_by_one: usize) -> Result<Row> {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let client = cluster.client().await?;
    let apiserver = cluster.cp.pid("kube-apiserver").context("kube-apiserver")?;

    eprintln!("  bare client: {n} tenants' objects");
    let cpu = cpu_seconds(apiserver)?;
    let (bare_time, objects) = bare(&client, profile, n).await?;
    let apiserver_bare = cpu_seconds(apiserver)? - cpu;

    let replica = operator(&mut cluster).await?;
    let pid = replica.pid();
    // Claims bound as a storage driver would (the local control plane has none).
    let provisioner = (profile == Profile::Full)
        .then(|| AbortOnDrop(tokio::spawn(crate::harness::provision(client.clone()))));
    let audit = cluster.cp.audit_log.clone();
    let cold_from = log_size(&audit)?;
    eprintln!("  operator: {n} tenants, {PARALLEL} created at a time");
    let names: BTreeSet<String> = (0..n).map(|i| format!("t{i}")).collect();
    let (cpu_op, cpu_api) = (cpu_seconds(pid)?, cpu_seconds(apiserver)?);
    let started = Instant::now();
    futures::stream::iter(names.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(PARALLEL, |name| {
            let client = client.clone();
            async move { create(&client, profile, name).await }
        })
        .await?;
    all_ready(&client, &names, Duration::from_secs(3600)).await?;
    let operator_time = started.elapsed();
    let operator_cpu = cpu_seconds(pid)? - cpu_op;
    let apiserver_cpu = cpu_seconds(apiserver)? - cpu_api;
    let (_, cold_writes, cold_requests) = requests_since(&audit, cold_from)?;

    eprintln!("  {one_by_one} tenants added one by one");
    let mut samples = Vec::with_capacity(one_by_one);
    for i in 0..one_by_one {
        samples.push(create_to_ready(&client, profile, &format!("one{i}")).await?);
    }

    eprintln!(
        "  at rest for {}s, then every tenant reconciled again",
        REST.as_secs()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let from = log_size(&audit)?;
    tokio::time::sleep(REST).await;
    let (rest_reads, _, _) = requests_since(&audit, from)?;
    let reconciles_before = replica
        .metric("enclave_reconciles_total")
        .unwrap_or_default();
    let from = log_size(&audit)?;
    let stamp = chrono::Utc::now().to_rfc3339();
    let api = Api::<Tenant>::all(client.clone());
    futures::stream::iter(names.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(PARALLEL, |name| {
            let (api, stamp) = (api.clone(), stamp.clone());
            async move {
                let poke = json!({"metadata": {"annotations": {"bench.enclave.dev/poke": stamp}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&poke))
                    .await?;
                Ok(())
            }
        })
        .await?;
    // Until every poke is reconciled and the reconciles stop.
    let mut last = 0.0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = replica
            .metric("enclave_reconciles_total")
            .unwrap_or_default();
        if now - reconciles_before >= n as f64 && (now - last).abs() < f64::EPSILON {
            break;
        }
        last = now;
    }
    let reconciled = last - reconciles_before;
    let (reads, writes, kinds) = requests_since(&audit, from)?;

    let rss = rss_mib(pid)?;
    let row = Row {
        profile: format!("{profile:?}").to_lowercase(),
        tenants: n,
        objects_per_tenant: objects as f64 / n.max(1) as f64,
        operator_seconds: operator_time.as_secs_f64(),
        bare_seconds: bare_time.as_secs_f64(),
        ratio: operator_time.as_secs_f64() / bare_time.as_secs_f64().max(0.001),
        ready_p50_ms: quantile(&samples, 0.5).as_secs_f64() * 1000.0,
        ready_p99_ms: quantile(&samples, 0.99).as_secs_f64() * 1000.0,
        reads_per_reconcile: reads as f64 / reconciled.max(1.0),
        writes_per_reconcile: writes as f64 / reconciled.max(1.0),
        reads_per_second_at_rest: rest_reads as f64 / REST.as_secs_f64(),
        operator_rss_mib: rss,
        operator_cpu_seconds: operator_cpu,
        apiserver_cpu_seconds: apiserver_cpu,
        apiserver_cpu_seconds_bare: apiserver_bare,
        reconciles: replica
            .metric("enclave_reconciles_total")
            .unwrap_or_default(),
        reconcile_errors: replica
            .metric("enclave_reconcile_errors_total")
            .unwrap_or_default(),
        reads_by_kind: kinds,
        cold_writes_per_tenant: cold_writes as f64 / n.max(1) as f64,
        cold_requests,
    };
    drop(provisioner);
    drop(replica);
    drop(cluster);
    Ok(row)
}

/// A task aborted when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The rows as a table.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<8} {:>6} {:>8} {:>9} {:>8} {:>6} {:>8} {:>8} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}\n",
        "profile",
        "N",
        "obj/ten",
        "enclave",
        "bare",
        "ratio",
        "p50",
        "p99",
        "reads/rec",
        "writes/rec",
        "reads/s",
        "RSS MiB",
        "op CPU",
        "api CPU",
        "errors"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<8} {:>6} {:>8.1} {:>8.1}s {:>7.1}s {:>5.2}x {:>6.0}ms {:>6.0}ms {:>10.2} {:>10.2} {:>9.1} {:>8.1} {:>7.1}s {:>7.1}s {:>8}",
            r.profile,
            r.tenants,
            r.objects_per_tenant,
            r.operator_seconds,
            r.bare_seconds,
            r.ratio,
            r.ready_p50_ms,
            r.ready_p99_ms,
            r.reads_per_reconcile,
            r.writes_per_reconcile,
            r.reads_per_second_at_rest,
            r.operator_rss_mib,
            r.operator_cpu_seconds,
            r.apiserver_cpu_seconds,
            r.reconcile_errors
        );
    }
    out
}
