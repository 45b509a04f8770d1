//! `kubectl enclave`: the platform team's and the customer's view of a tenant, and the
//! requests they make of it. On `PATH` as `kubectl-enclave`, kubectl runs it as a plugin.
//!
//! - `report <tenant> [-o text|json|markdown]`: each promise of the policy, kept or not, with
//!   its evidence. A platform engineer's report is built from the Tenant; a tenant admin, who
//!   cannot read Tenants, reads the report the operator publishes in their zones
//!   (`-n <zone namespace>`, by default the context's namespace, else `<tenant>-dmz`).
//! - `status [<tenant>]`: every tenant on one line, or one tenant in detail.
//! - `backup <tenant>`: asks the operator to run the tenant's backup now.
//! - `export <tenant>`, `restore <tenant> [--snapshot ID] [--volume V]...`: creates the request.
//! - `suspend | resume | decommission <tenant>`: changes `spec.lifecycle.state`.
//!
//! `--wait` follows a backup, an export or a restore until it ends, printing each step.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use enclave_crds::{
    RequestStatus, Tenant, TenantExport, TenantExportSpec, TenantRestore, TenantRestoreSpec,
};
use enclave_operator::desired::backup::now;
use enclave_operator::labels;
use enclave_operator::report::{self, Report};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kubectl-enclave",
    version,
    about = "Reports on and acts on Enclave tenants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Subcommand)]
enum Command {
    /// Each promise of the security policy: kept or not, and the live evidence.
    Report {
        tenant: String,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
        /// The zone namespace to read the published report from, when the Tenant itself cannot
        /// be read (a tenant admin's rights).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Every tenant on one line, or one tenant in detail.
    Status { tenant: Option<String> },
    /// Asks the operator to run the tenant's backups now (`enclave.dev/backup-now`).
    Backup {
        tenant: String,
        #[arg(long)]
        wait: bool,
    },
    /// Requests a full export of the tenant (`TenantExport`).
    Export {
        tenant: String,
        #[arg(long)]
        wait: bool,
    },
    /// Requests a restore of the tenant's volumes (`TenantRestore`).
    Restore {
        tenant: String,
        /// A snapshot id, or `latest`.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// Volumes to restore (repeat); none: every volume.
        #[arg(long = "volume")]
        volumes: Vec<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Stops the tenant's workloads; data and access are kept.
    Suspend { tenant: String },
    /// Runs a suspended tenant again.
    Resume { tenant: String },
    /// Stops the tenant and destroys its data once its retention has passed.
    Decommission {
        tenant: String,
        /// Confirms: the data is destroyed after `spec.lifecycle.retention`.
        #[arg(long)]
        yes: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match Box::pin(run(cli)).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no cluster to talk to (KUBECONFIG)")?;
    let tenants = Api::<Tenant>::all(client.clone());
    match cli.command {
        Command::Report {
            tenant,
            output,
            namespace,
        } => {
            let report = load_report(&client, &tenant, namespace).await?;
            let now = Timestamp::now();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Text => print!("{}", report::text(&report, now)),
                Format::Markdown => print!("{}", report::markdown(&report, now)),
            }
        }
        Command::Status { tenant: None } => {
            let list = tenants.list(&ListParams::default()).await?;
            println!(
                "{:<24} {:<16} {:<10} {:<10} {:<12} {:<10} PROMISES",
                "TENANT", "PHASE", "WORKLOADS", "INCIDENTS", "LAST-BACKUP", "CERT"
            );
            let now = Timestamp::now();
            for t in &list.items {
                let status = t.status.clone().unwrap_or_default();
                let open = status
                    .incidents
                    .iter()
                    .filter(|i| i.resolved_at.is_none())
                    .count();
                let ago = |time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                    time.map_or_else(|| "-".into(), |t| report::age(t.0, now))
                };
                println!(
                    "{:<24} {:<16} {:<10} {:<10} {:<12} {:<10} {}",
                    t.name_any(),
                    status
                        .phase
                        .map_or_else(|| "-".into(), |p| format!("{p:?}")),
                    status.ready_workloads.as_deref().unwrap_or("-"),
                    open,
                    ago(status
                        .backup
                        .as_ref()
                        .and_then(|b| b.last_successful_time.as_ref())),
                    ago(status
                        .certificate
                        .as_ref()
                        .and_then(|c| c.not_after.as_ref())),
                    report::report(t).summary
                );
            }
        }
        Command::Status { tenant: Some(name) } => {
            let t = tenants.get(&name).await?;
            let status = t.status.clone().unwrap_or_default();
            println!(
                "{name}: {}",
                status
                    .phase
                    .map_or_else(|| "no status yet".into(), |p| format!("{p:?}"))
            );
            for c in &status.conditions {
                println!(
                    "  {:<20} {:<6} {}: {}",
                    c.type_, c.status, c.reason, c.message
                );
            }
            println!("  namespaces: {}", status.namespaces.join(", "));
            for i in &status.incidents {
                println!(
                    "  incident {} ({}): {}{}",
                    i.id,
                    i.severity,
                    i.summary,
                    if i.resolved_at.is_some() {
                        ", resolved"
                    } else {
                        ", OPEN"
                    }
                );
            }
        }
        Command::Backup { tenant, wait } => backup(&client, &tenants, &tenant, wait).await?,
        Command::Export { tenant, wait } => {
            tenants.get(&tenant).await?;
            let request = TenantExport::new(&request_name(&tenant), TenantExportSpec { tenant });
            let api = Api::<TenantExport>::all(client.clone());
            let made = api.create(&PostParams::default(), &request).await?;
            println!("tenantexport/{} created", made.name_any());
            if wait {
                follow(&made.name_any(), || async {
                    Ok(api.get(&made.name_any()).await?.status)
                })
                .await?;
            }
        }
        Command::Restore {
            tenant,
            snapshot,
            volumes,
            wait,
        } => {
            tenants.get(&tenant).await?;
            let request = TenantRestore::new(
                &request_name(&tenant),
                TenantRestoreSpec {
                    tenant,
                    volumes,
                    snapshot,
                },
            );
            let api = Api::<TenantRestore>::all(client.clone());
            let made = api.create(&PostParams::default(), &request).await?;
            println!("tenantrestore/{} created", made.name_any());
            if wait {
                follow(&made.name_any(), || async {
                    Ok(api.get(&made.name_any()).await?.status)
                })
                .await?;
            }
        }
        Command::Suspend { tenant } => lifecycle(&tenants, &tenant, "Suspended").await?,
        Command::Resume { tenant } => lifecycle(&tenants, &tenant, "Active").await?,
        Command::Decommission { tenant, yes } => {
            if !yes {
                let t = tenants.get(&tenant).await?;
                bail!(
                    "decommissioning {tenant} stops it now and destroys its data after {}: run again with --yes",
                    t.spec.lifecycle.retention
                );
            }
            lifecycle(&tenants, &tenant, "Decommissioned").await?;
        }
    }
    Ok(())
}

/// The report built from the Tenant when it can be read, else the one the operator published
/// in the tenant's zone namespace.
async fn load_report(client: &Client, name: &str, namespace: Option<String>) -> Result<Report> {
    let tenants = Api::<Tenant>::all(client.clone());
    let refused = match tenants.get(name).await {
        Ok(tenant) => return Ok(report::report(&tenant)),
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => e,
        Err(e) => return Err(e.into()),
    };
    // The namespace asked for, else the context's (a tenant admin's kubeconfig usually names
    // one of their zones), else the default first zone.
    let namespace = namespace
        .or_else(|| Some(client.default_namespace().to_string()).filter(|n| n != "default"))
        .unwrap_or_else(|| format!("{name}-dmz"));
    let published = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get(report::NAME)
        .await
        .with_context(|| {
            format!(
                "reading tenant {name} ({}), then its published report {namespace}/{}",
                refused.message,
                report::NAME
            )
        })?;
    // Only the operator makes objects with its managed-by label (the guard refuses anyone
    // else); a ConfigMap of that name without it is not Enclave's report.
    let labels = published.labels();
    if labels.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER) {
        bail!("{namespace}/{} was not published by Enclave", report::NAME);
    }
    if labels.get(labels::TENANT).map(String::as_str) != Some(name) {
        bail!("{namespace} is not a zone of tenant {name}");
    }
    let json = published
        .data
        .as_ref()
        .and_then(|d| d.get(report::KEY))
        .context("the published report is empty")?;
    Ok(serde_json::from_str(json)?)
}

async fn lifecycle(tenants: &Api<Tenant>, name: &str, state: &str) -> Result<()> {
    let patch = serde_json::json!({"spec": {"lifecycle": {"state": state}}});
    tenants
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    println!("tenant/{name}: lifecycle.state set to {state}");
    Ok(())
}

fn request_name(tenant: &str) -> String {
    format!("{tenant}-{}", Timestamp::now().as_second())
}

/// Asks the operator for a backup now (the Tenant's `enclave.dev/backup-now`): it starts one
/// Job per backup CronJob, with the backup identity only it may use.
async fn backup(client: &Client, tenants: &Api<Tenant>, name: &str, wait: bool) -> Result<()> {
    let tenant = tenants.get(name).await?;
    if tenant.spec.backup.is_none() {
        bail!("tenant {name} has no backups (spec.backup)");
    }
    let uid = tenant
        .metadata
        .uid
        .clone()
        .context("the Tenant has no uid")?;
    let at = Timestamp::now();
    let patch = serde_json::json!({"metadata": {"annotations": {now::ANNOTATION: at.to_string()}}});
    tenants
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let job = now::job_name(at);
    println!(
        "tenant/{name}: backup asked for at {at}; the operator starts Job {job} in each backup zone"
    );
    if !wait {
        return Ok(());
    }
    let selector = format!(
        "{}={uid},{}={}",
        labels::TENANT_UID,
        labels::MANAGED_BY,
        labels::MANAGER
    );
    let jobs = Api::<Job>::all(client.clone());
    follow(&job, || async {
        let started: Vec<Job> = jobs
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|j| j.name_any() == job)
            .collect();
        let status = |j: &Job| j.status.clone().unwrap_or_default();
        let phase = if started.is_empty() {
            None
        } else if started.iter().any(|j| status(j).failed.unwrap_or(0) > 0) {
            Some(enclave_crds::RequestPhase::Failed)
        } else if started.iter().all(|j| status(j).succeeded.unwrap_or(0) > 0) {
            Some(enclave_crds::RequestPhase::Succeeded)
        } else {
            Some(enclave_crds::RequestPhase::Running)
        };
        Ok(Some(RequestStatus {
            phase,
            message: Some(format!("{} Job(s) started", started.len())),
            ..RequestStatus::default()
        }))
    })
    .await
}

/// Prints each change of a request's phase until it ends (at most 30 minutes).
async fn follow<F, Fut>(what: &str, mut read: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<RequestStatus>>>,
{
    use enclave_crds::RequestPhase;
    let started = std::time::Instant::now();
    let mut last = None;
    loop {
        let status = read().await?.unwrap_or_default();
        let line = format!(
            "{what}: {}{}",
            status
                .phase
                .map_or_else(|| "accepted".into(), |p| format!("{p:?}")),
            status
                .message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if last.as_ref() != Some(&line) {
            println!("[{:>4}s] {line}", started.elapsed().as_secs());
            last = Some(line);
        }
        match status.phase {
            Some(RequestPhase::Succeeded) => return Ok(()),
            Some(RequestPhase::Failed) => bail!("{what} failed"),
            _ if started.elapsed() > Duration::from_secs(1800) => {
                bail!("{what} has not ended after 30 minutes")
            }
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}
