//! `enclave-operator`: run the operator, print its CRDs, or print its version.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use enclave_operator::config::Config;
use enclave_operator::telemetry::{self, Health};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "enclave-operator",
    version,
    about = "Enclave: the tenancy operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run {
        /// Address of the admin server (/livez, /readyz, /metrics).
        #[arg(long, env = "ENCLAVE_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
        admin_addr: SocketAddr,
        /// Tenants reconciled at once.
        #[arg(long, env = "ENCLAVE_CONCURRENCY", default_value_t = 8)]
        concurrency: u16,
        /// Seconds between two looks at a settled tenant.
        #[arg(long, env = "ENCLAVE_RESYNC_SECONDS", default_value_t = 300)]
        resync_seconds: u64,
    },
    /// Print the CRDs as YAML.
    Crd,
    /// Print the version.
    Version,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", enclave_crds::crds_yaml()?),
        Command::Version => println!("enclave-operator {}", env!("CARGO_PKG_VERSION")),
        Command::Run {
            admin_addr,
            concurrency,
            resync_seconds,
        } => {
            telemetry::init_logging("info");
            let client = kube::Client::try_default()
                .await
                .context("no usable kubeconfig or in-cluster config")?;
            let config = Config {
                concurrency,
                resync: Duration::from_secs(resync_seconds),
                ..Config::default()
            };
            let health = Health::default();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let admin = tokio::spawn(telemetry::serve(
                admin_addr,
                health.clone(),
                wait(stopped.clone()),
            ));
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutdown requested: finishing reconciles in flight");
                let _ = stop.send(true);
            });
            enclave_operator::controller::run(client, config, health, wait(stopped)).await?;
            admin.await.context("admin server task")??;
        }
    }
    Ok(())
}

/// Resolves once the stop flag is raised.
async fn wait(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
