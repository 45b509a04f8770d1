//! `enclave-operator`: run the operator, print its CRDs, or print its version.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use enclave_operator::admission::{self, Certificates, Guard, GuardConfig};
use enclave_operator::app::Options;
use enclave_operator::config::Config;
use enclave_operator::leader::Election;
use enclave_operator::telemetry::{self, Health};
use k8s_openapi::api::admissionregistration::v1::{ServiceReference, WebhookClientConfig};
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
#[allow(clippy::large_enum_variant)] // parsed once at start
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run {
        /// The operator's configuration file (see examples/operator-config.yaml).
        #[arg(long, env = "ENCLAVE_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Seconds between two looks at the configuration file; a changed file is applied to
        /// every tenant.
        #[arg(long, env = "ENCLAVE_CONFIG_POLL_SECONDS", default_value_t = 5)]
        config_poll_seconds: u64,
        /// The operator's own namespace, where encryption keys are kept.
        #[arg(long, env = "POD_NAMESPACE", default_value = "enclave-system")]
        namespace: String,
        /// Address of the admin server (/livez, /readyz, /metrics).
        #[arg(long, env = "ENCLAVE_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
        admin_addr: SocketAddr,
        /// Tenants reconciled at once.
        #[arg(long, env = "ENCLAVE_CONCURRENCY", default_value_t = 8)]
        concurrency: u16,
        /// Seconds between two looks at a settled tenant.
        #[arg(long, env = "ENCLAVE_RESYNC_SECONDS", default_value_t = 300)]
        resync_seconds: u64,
        /// Address the admission guard's TLS server binds.
        #[arg(long, env = "ENCLAVE_GUARD_ADDR", default_value = "0.0.0.0:9443")]
        guard_addr: SocketAddr,
        /// The Service the API server calls the guard through, as `namespace/name`.
        #[arg(long, env = "ENCLAVE_GUARD_SERVICE", conflicts_with = "guard_url")]
        guard_service: Option<String>,
        /// The URL the API server calls the guard at, for an operator outside the cluster
        /// (such as `https://127.0.0.1:9443/validate`). Without this or --guard-service the
        /// guard is off.
        #[arg(long, env = "ENCLAVE_GUARD_URL")]
        guard_url: Option<String>,
        /// The operator's service account (in its namespace): the only user the guard lets
        /// write managed objects.
        #[arg(
            long,
            env = "ENCLAVE_SERVICE_ACCOUNT",
            default_value = "enclave-operator"
        )]
        service_account: String,
        /// Groups the guard lets change managed objects (break-glass). Repeatable.
        #[arg(
            long = "guard-exempt-group",
            env = "ENCLAVE_GUARD_EXEMPT_GROUPS",
            value_delimiter = ','
        )]
        guard_exempt_groups: Vec<String>,
        /// The CA of the client certificate the API server presents to webhooks (configured by
        /// its `--admission-control-config-file`); when given, the guard answers only callers
        /// with a certificate from it.
        #[arg(long, env = "ENCLAVE_GUARD_CLIENT_CA")]
        guard_client_ca: Option<std::path::PathBuf>,
        /// The shortest `lifecycle.retention` the guard accepts on a Tenant (such as `1h`).
        #[arg(long, env = "ENCLAVE_MIN_RETENTION", default_value = "1h", value_parser = parse_duration)]
        min_retention: std::time::Duration,
        /// Keep the guard's serving certificate in this Secret of the operator's namespace,
        /// shared by every replica (the chart's way). Without it, each start makes one in
        /// memory and writes the whole webhook configuration (one replica only).
        #[arg(
            long,
            env = "ENCLAVE_GUARD_CERTIFICATE_SECRET",
            requires = "webhook_configuration"
        )]
        guard_certificate_secret: Option<String>,
        /// Who writes that Secret and the webhook's caBundle: the operator, or cert-manager
        /// (a Certificate and its CA injector).
        #[arg(long, env = "ENCLAVE_GUARD_CERTIFICATE_ISSUER", value_enum, default_value_t = Issuer::Operator)]
        guard_certificate_issuer: Issuer,
        /// The ValidatingWebhookConfiguration the chart installed, whose caBundle the leader
        /// keeps (with --guard-certificate-secret).
        #[arg(
            long,
            env = "ENCLAVE_WEBHOOK_CONFIGURATION",
            requires = "guard_certificate_secret"
        )]
        webhook_configuration: Option<String>,
        /// Elect a leader among the replicas through a Lease in the operator's namespace: only
        /// the leader reconciles; every replica serves the guard, the broker and metrics.
        #[arg(long, env = "ENCLAVE_LEADER_ELECTION")]
        leader_election: bool,
        /// The Lease's name.
        #[arg(
            long,
            env = "ENCLAVE_LEADER_ELECTION_LEASE",
            default_value = "enclave-operator"
        )]
        leader_election_lease: String,
        /// Seconds a Lease holds without renewal: a dead leader is replaced after about this.
        #[arg(long, env = "ENCLAVE_LEASE_DURATION_SECONDS", default_value_t = 10)]
        lease_duration_seconds: u64,
        /// Seconds before expiry that the leader renews its Lease.
        #[arg(long, env = "ENCLAVE_LEASE_GRACE_SECONDS", default_value_t = 3)]
        lease_grace_seconds: u64,
        /// Log level when RUST_LOG is unset: error, warn, info, debug or trace.
        #[arg(long, env = "ENCLAVE_LOG_LEVEL", default_value = "info")]
        log_level: String,
    },
    /// Fetch a backup pod's credentials from the operator (the init container of backup
    /// Jobs) and write them, readable by their owner only, for the backup script.
    Credentials {
        /// The operator's credentials endpoint.
        #[arg(long)]
        url: String,
        /// The pod's audience-bound service account token.
        #[arg(long, default_value = "/var/run/secrets/enclave/token")]
        token: std::path::PathBuf,
        /// The CA that signs the operator's endpoint.
        #[arg(long, default_value = "/var/run/secrets/enclave-ca/ca.crt")]
        ca: std::path::PathBuf,
        /// Directory to write the files into (memory).
        #[arg(long, default_value = "/run/enclave")]
        out: std::path::PathBuf,
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
        Command::Credentials {
            url,
            token,
            ca,
            out,
        } => {
            let token = std::fs::read_to_string(&token)
                .with_context(|| format!("reading {}", token.display()))?;
            let ca = std::fs::read_to_string(&ca)
                .with_context(|| format!("reading {}", ca.display()))?;
            let credentials = enclave_operator::credentials::fetch(&url, token.trim(), &ca).await?;
            enclave_operator::credentials::write_files(&out, &credentials)?;
            println!("credentials written to {}", out.display());
        }
        Command::Run {
            config: config_file,
            config_poll_seconds,
            namespace,
            admin_addr,
            concurrency,
            resync_seconds,
            guard_addr,
            guard_service,
            guard_url,
            service_account,
            guard_exempt_groups,
            guard_client_ca,
            min_retention,
            guard_certificate_secret,
            guard_certificate_issuer,
            webhook_configuration,
            leader_election,
            leader_election_lease,
            lease_duration_seconds,
            lease_grace_seconds,
            log_level,
        } => {
            telemetry::init_logging(&log_level);
            let client = kube::Client::try_default()
                .await
                .context("no usable kubeconfig or in-cluster config")?;
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
            let initial = match &config_file {
                Some(path) => enclave_operator::config::load(path, &Config::default())?.0,
                None => Config::default(),
            };
            let mut guard = guard_config(
                guard_addr,
                guard_service,
                guard_url,
                guard_exempt_groups,
                &namespace,
                &service_account,
            )?;
            if let Some(guard) = &mut guard {
                guard.guard.network = initial.network.clone();
                guard.guard.min_retention = min_retention;
                guard.client_ca = guard_client_ca
                    .map(|path| {
                        std::fs::read_to_string(&path).with_context(|| {
                            format!("reading --guard-client-ca {}", path.display())
                        })
                    })
                    .transpose()?;
                if let (Some(secret), Some(webhook_configuration)) =
                    (guard_certificate_secret, webhook_configuration)
                {
                    guard.certificates = Certificates::Secret {
                        secret,
                        webhook_configuration,
                        issued_by_operator: guard_certificate_issuer == Issuer::Operator,
                    };
                }
            }
            let instance = std::env::var("POD_NAME").ok();
            let election = leader_election.then(|| Election {
                lease: leader_election_lease,
                namespace: namespace.clone(),
                identity: instance.clone().unwrap_or_else(replica_name),
                duration: Duration::from_secs(lease_duration_seconds),
                grace: Duration::from_secs(lease_grace_seconds),
            });
            let options = Options {
                base: Config {
                    concurrency,
                    resync: Duration::from_secs(resync_seconds),
                    namespace,
                    ..Config::default()
                },
                config_file,
                config_poll: Duration::from_secs(config_poll_seconds),
                guard,
                election,
                instance,
            };
            if let Err(error) =
                enclave_operator::app::run(client, options, health, stopped, None).await
            {
                if matches!(error, enclave_operator::Error::Leader(_)) {
                    // Not one more write: the process ends here, its pod restarts.
                    tracing::error!(%error, "exiting");
                    std::process::exit(1);
                }
                return Err(error.into());
            }
            admin.await.context("admin server task")??;
        }
    }
    Ok(())
}

/// The guard's configuration from the command line; `None` when it is off.
fn guard_config(
    listen: SocketAddr,
    service: Option<String>,
    url: Option<String>,
    exempt_groups: Vec<String>,
    namespace: &str,
    service_account: &str,
) -> anyhow::Result<Option<GuardConfig>> {
    let guard = Guard {
        exempt_groups,
        // Exactly the operator's own service account, in the namespace it runs in: not any
        // principal that happens to be named like it.
        operator_users: vec![admission::operator_service_account(
            namespace,
            service_account,
        )],
        ..Guard::default()
    };
    if let Some(url) = url {
        let host = url
            .trim_start_matches("https://")
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        let client_config = WebhookClientConfig {
            url: Some(url),
            ..WebhookClientConfig::default()
        };
        return Ok(Some(GuardConfig {
            listen,
            namespace: namespace.to_string(),
            client_config,
            names: vec![host],
            guard,
            client_ca: None,
            certificates: Certificates::Ephemeral,
        }));
    }
    let Some(service) = service else {
        return Ok(None);
    };
    // The Service's namespace names where the API server calls the guard; the operator's own
    // namespace (where the broker reads secrets) stays `namespace`.
    let (service_namespace, name) = service
        .split_once('/')
        .context("--guard-service takes namespace/name")?;
    let client_config = WebhookClientConfig {
        service: Some(ServiceReference {
            namespace: service_namespace.into(),
            name: name.into(),
            path: Some(admission::PATH.into()),
            port: Some(i32::from(listen.port())),
        }),
        ..WebhookClientConfig::default()
    };
    let names = vec![
        format!("{name}.{service_namespace}.svc"),
        format!("{name}.{service_namespace}.svc.cluster.local"),
    ];
    Ok(Some(GuardConfig {
        listen,
        namespace: namespace.to_string(),
        client_config,
        names,
        guard,
        client_ca: None,
        certificates: Certificates::Ephemeral,
    }))
}

/// Who writes the guard's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Issuer {
    /// The operator makes it (rcgen) and keeps the webhook's caBundle.
    Operator,
    /// cert-manager writes the Secret and injects the caBundle.
    CertManager,
}

/// This replica's name in the Lease without POD_NAME: the host's name and the process id.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "enclave".into(), |h| h.trim().to_string());
    format!("{host}-{}", std::process::id())
}

/// A duration as the API writes them (`30s`, `15m`, `1h`, `7d`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    enclave_crds::duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 15m, 1h or 7d"))
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
