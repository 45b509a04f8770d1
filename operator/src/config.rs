//! The operator's configuration: what the platform team decides for every tenant.

use std::time::Duration;

/// Settings of one operator process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Tenants reconciled at once; kube-runtime's default is unbounded.
    pub concurrency: u16,
    /// How often a settled tenant is looked at again, to catch what no watch reports.
    pub resync: Duration,
    /// How soon a tenant waiting on the cluster (a terminating namespace) is looked at again.
    pub poll: Duration,
    /// Name reported as the source of Events.
    pub reporter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 8,
            resync: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            reporter: crate::build::MANAGER.to_string(),
        }
    }
}
