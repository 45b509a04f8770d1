//! Leader election (R15): every replica serves the admission guard, the credentials broker and
//! metrics; only the holder of a Lease in the operator's namespace reconciles and keeps the
//! webhook's certificate. A replica that loses the Lease stops writing at once (the process
//! exits and its pod restarts); a replica asked to stop releases the Lease, so the next leader
//! need not wait for it to expire.

use kube_lease_manager::LeaseManagerBuilder;
use std::time::Duration;
use tokio::sync::watch;

/// How a replica campaigns for the Lease.
#[derive(Clone, Debug)]
pub struct Election {
    /// The Lease's name, in `namespace`.
    pub lease: String,
    /// The operator's namespace.
    pub namespace: String,
    /// This replica's name in the Lease (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal: a dead leader is replaced after about this long.
    pub duration: Duration,
    /// How long before expiry the leader renews.
    pub grace: Duration,
}

/// This replica's campaign: whether it leads, and the task that keeps or seeks the Lease.
pub struct Campaign {
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Starts campaigning for the Lease.
///
/// # Errors
/// When the Lease cannot be read or created (RBAC, or the API server unreachable).
pub async fn campaign(client: kube::Client, election: &Election) -> crate::Result<Campaign> {
    let manager = LeaseManagerBuilder::new(client, &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration.as_secs().max(2))
        .with_grace(election.grace.as_secs().max(1))
        .build()
        .await
        .map_err(|e| crate::Error::Leader(e.to_string()))?;
    let (leading, task) = manager.watch().await;
    Ok(Campaign { leading, task })
}

impl Campaign {
    /// Resolves once this replica holds the Lease.
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Resolves when this replica, having held the Lease, no longer does (or its campaign
    /// ended).
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Whether this replica holds the Lease now.
    #[must_use]
    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Gives the Lease up (when held) and ends the campaign.
    pub async fn release(self) {
        let Self { leading, task } = self;
        drop(leading); // the campaign's task releases the Lease once nobody listens
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader lease failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader election task failed"),
            Err(_) => tracing::warn!("releasing the leader lease timed out"),
        }
    }
}
