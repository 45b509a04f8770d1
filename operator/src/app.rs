//! The operator process, as `enclave-operator run` (and the tests) start it: the admission
//! guard and the credentials broker on every replica; the controllers, and the upkeep of the
//! webhook's `caBundle`, on the leader only.

use crate::admission::{self, Certificates, GuardConfig};
use crate::config::Config;
use crate::leader::{self, Election};
use crate::telemetry::Health;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The configuration before the file's settings: concurrency, resync, the namespace.
    pub base: Config,
    /// The operator's configuration file, watched for changes.
    pub config_file: Option<std::path::PathBuf>,
    /// How often the file is looked at.
    pub config_poll: Duration,
    /// The admission guard; `None` leaves it off.
    pub guard: Option<GuardConfig>,
    /// Leader election; `None` runs the controllers at once (one replica).
    pub election: Option<Election>,
    /// This replica's name in Events (its pod name).
    pub instance: Option<String>,
}

/// Runs the operator until `stop` is raised. `guard_stop` stops the guard alone (a test of
/// its outage); without it the guard stops with the rest.
///
/// # Errors
/// When the guard, the configuration or the controllers cannot start, or when this replica
/// lost the leader lease: it must then stop writing at once, so the caller exits.
pub async fn run(
    client: kube::Client,
    options: Options,
    health: Health,
    stop: watch::Receiver<bool>,
    guard_stop: Option<watch::Receiver<bool>>,
) -> crate::Result<()> {
    let Options {
        mut base,
        config_file,
        config_poll,
        guard,
        election,
        instance,
    } = options;
    let mut upkeep = None;
    let mut started = None;
    if let Some(guard) = guard {
        base.broker_url = guard.credentials_url();
        if let Certificates::Secret {
            secret,
            webhook_configuration,
            issued_by_operator: true,
        } = &guard.certificates
        {
            upkeep = Some((secret.clone(), webhook_configuration.clone()));
        }
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "enclave-guard".into(),
                instance: instance.clone(),
            },
        );
        let guard = admission::start(
            client.clone(),
            guard,
            recorder,
            health.metrics.clone(),
            raised(guard_stop.unwrap_or_else(|| stop.clone())),
        )
        .await?;
        base.operator_ca = Some(guard.ca_pem.clone());
        health.serving.store(true, Ordering::Relaxed);
        started = Some(guard);
    } else {
        tracing::warn!(
            "admission guard off: pass --guard-service or --guard-url to turn it on (backup pods need it for their credentials)"
        );
    }
    let namespace = base.namespace.clone();
    let configs = match config_file {
        Some(path) => crate::config::watch_file(path, base, config_poll)?,
        None => watch::channel(base).1,
    };
    // The guard judges Tenants by the same configuration as the controllers, reloads included.
    if let Some(guard) = &started {
        guard.follow(configs.clone());
    }
    let campaign = match &election {
        Some(election) => {
            let mut campaign = leader::campaign(client.clone(), election).await?;
            tracing::info!(identity = %election.identity, lease = %election.lease, "waiting for the leader lease");
            let mut stopping = stop.clone();
            tokio::select! {
                () = campaign.acquired() => {},
                _ = stopping.wait_for(|s| *s) => {
                    campaign.release().await;
                    return Ok(());
                }
            }
            tracing::info!(identity = %election.identity, "leading: starting the controllers");
            Some(campaign)
        }
        None => None,
    };
    health.metrics.set_leader(true);
    let gateway = crate::cluster::Gateway::new(
        client.clone(),
        Reporter {
            controller: "enclave-guard".into(),
            instance,
        },
        health.metrics.clone(),
    );
    let upkeep = upkeep.map(|(secret, configuration)| {
        tokio::spawn(admission::keep_ca_bundle(
            gateway,
            namespace,
            secret,
            configuration,
            raised(stop.clone()),
        ))
    });
    let controllers =
        crate::controllers::tenant::run(client, configs, health.clone(), raised(stop.clone()));
    let result = match campaign {
        None => controllers.await,
        Some(mut campaign) => {
            let outcome = tokio::select! {
                result = controllers => Some(result),
                () = campaign.lost() => None,
            };
            match outcome {
                Some(result) => {
                    campaign.release().await;
                    result
                }
                // The controllers future is dropped here: no reconcile goes on.
                None => Err(crate::Error::Leader(
                    "lost the leader lease: stopping at once".into(),
                )),
            }
        }
    };
    health.metrics.set_leader(false);
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    result
}

/// Resolves once the flag is raised.
async fn raised(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}
