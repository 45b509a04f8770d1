//! The controllers: the Tenant pipeline, and the restore and export requests beside it.

pub mod requests;
pub mod tenant;

/// The pause after a watch error, for all of a controller's watches together.
///
/// kube-runtime backs off the merged stream of a controller's watches as one: with its
/// default (exponential, up to minutes), the errors of one watch starve all the others. After
/// an API server restart each of the Tenant controller's watches in turn answers `410 Expired`
/// and relists, and the Tenant watch itself waited behind them for more than two minutes on
/// the local control plane (`tests/tests/faults.rs`). A short constant pause keeps the others
/// flowing; each watch relists on its own, and a watch failing for good still costs a request
/// every half second at most.
#[derive(Clone, Debug, Default)]
pub struct TriggerBackoff;

/// How long [`TriggerBackoff`] pauses.
pub const TRIGGER_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

impl Iterator for TriggerBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        Some(TRIGGER_PAUSE)
    }
}

impl kube::runtime::utils::Backoff for TriggerBackoff {
    fn reset(&mut self) {}
}
