//! Leader election (R15): every replica serves the admission guard, the credentials broker and
//! metrics; only the holder of a Lease in the operator's namespace reconciles and keeps the
//! webhook's certificate. A replica that loses the Lease stops writing at once (the process
//! exits and its pod restarts); a replica asked to stop releases the Lease, so the next leader
//! need not wait for it to expire.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
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
    client: kube::Client,
    election: Election,
}

/// Starts campaigning for the Lease.
///
/// # Errors
/// When the Lease cannot be read or created (RBAC, or the API server unreachable).
pub async fn campaign(client: kube::Client, election: &Election) -> crate::Result<Campaign> {
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration.as_secs().max(2))
        .with_grace(election.grace.as_secs().max(1))
        .build()
        .await
        .map_err(|e| crate::Error::Leader(e.to_string()))?;
    let (leading, task) = manager.watch().await;
    Ok(Campaign {
        leading,
        task,
        client,
        election: election.clone(),
    })
}

impl Campaign {
    /// Resolves once this replica holds the Lease.
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Resolves when this replica, having held the Lease, no longer does (or its campaign
    /// ended), or can no longer show that it does: the Lease read back names another holder,
    /// has expired, or could not be read for longer than the Lease lasts less its grace (the
    /// renew deadline of Kubernetes' own leader election). The campaign's task alone would go on
    /// believing it leads while its renewals fail, as a standby takes the expired Lease.
    pub async fn lost(&mut self) {
        let leases = kube::Api::<Lease>::namespaced(self.client.clone(), &self.election.namespace);
        let Election {
            lease,
            identity,
            duration,
            grace,
            ..
        } = &self.election;
        let deadline = duration.saturating_sub(*grace).max(Duration::from_secs(1));
        let every = (*grace / 2).max(Duration::from_millis(500));
        let watchdog = async {
            let mut confirmed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                match leases.get_opt(lease).await {
                    Ok(Some(live)) => {
                        if !held_by(&live, identity, jiff_now()) {
                            tracing::error!(%lease, "the leader lease is another's, or expired");
                            return;
                        }
                        confirmed = tokio::time::Instant::now();
                    }
                    Ok(None) => {
                        tracing::error!(%lease, "the leader lease is gone");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "reading the leader lease failed"),
                }
                if confirmed.elapsed() > deadline {
                    tracing::error!(%lease, "the leader lease could not be confirmed in time");
                    return;
                }
            }
        };
        tokio::select! {
            _ = self.leading.wait_for(|leading| !*leading) => {},
            () = watchdog => {},
        }
    }

    /// Whether this replica holds the Lease now.
    #[must_use]
    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Gives the Lease up (when held) and ends the campaign.
    pub async fn release(self) {
        let Self { leading, task, .. } = self;
        drop(leading); // the campaign's task releases the Lease once nobody listens
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader lease failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader election task failed"),
            Err(_) => tracing::warn!("releasing the leader lease timed out"),
        }
    }
}

fn jiff_now() -> Timestamp {
    Timestamp::now()
}

/// Whether `lease` names `identity` as its holder and has not expired at `now`.
fn held_by(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return false;
    }
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    renewed
        .0
        .checked_add(jiff_seconds(seconds))
        .is_ok_and(|expiry| expiry > now)
}

fn jiff_seconds(seconds: i32) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(i64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_is_held_only_by_its_holder_and_only_until_it_expires() {
        let now = Timestamp::from_second(1_000_000).expect("time");
        let renewed = Timestamp::from_second(999_995).expect("time");
        assert!(held_by(&lease("a", renewed, 10), "a", now));
        assert!(!held_by(&lease("b", renewed, 10), "a", now));
        // Renewed 5 s ago for 4 s: expired, whoever it names.
        assert!(!held_by(&lease("a", renewed, 4), "a", now));
        assert!(!held_by(&Lease::default(), "a", now));
    }
}
