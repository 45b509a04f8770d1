//! The tenant's quota as its total (R11): split over its zones by what each uses now, read
//! from the live quotas' status before the apply.

use super::reconcile::Reconcile;
use crate::desired::Desired;
use crate::desired::quota::{self, QUOTA, Usage};
use crate::error::{Phase, Result, api};
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::Api;

impl Reconcile<'_> {
    /// Splits `spec.quota` over the zones by their live usage (`status.used` of each zone's
    /// quota, and what each zone declares), writes every limit that shrinks at once, and
    /// leaves in `desired` the limits to apply, raises capped so that the zones together never
    /// hold more than the total ([`quota::rebalance`]). Read from the API server, not the
    /// caches: a raise is capped by the other zones' limits, which must not be stale. Returns
    /// the quotas as they are now (read, or just lowered), for the apply to compare against.
    ///
    /// # Errors
    /// When a quota cannot be read or lowered.
    pub(super) async fn split_quota(&self, desired: &mut Desired) -> Result<Vec<ResourceQuota>> {
        if self.tenant.spec.quota.is_none() {
            return Ok(Vec::new());
        }
        let mut used = Usage::new();
        let mut live = Vec::new();
        for zone in &self.tenant.spec.zones {
            let namespace = self.tenant.zone_namespace(&zone.name);
            let quota = Api::<ResourceQuota>::namespaced(self.ctx.client.clone(), &namespace)
                .get_opt(QUOTA)
                .await
                .map_err(api(Phase::Apply, "get", "ResourceQuota", &namespace))?;
            if let Some(quota) = &quota {
                used.insert(namespace, quota::used(quota));
            }
            live.push(quota);
        }
        // Usage that moves within the live limits writes nothing; a zone at a limit
        // rebalances from usage.
        let basis = quota::standing(self.tenant, &live).unwrap_or(used);
        let split = quota::resource_quotas(self.tenant, &self.identity, &basis);
        let plan = quota::rebalance(self.tenant, &split, &live);
        for lowered in &plan.lowered {
            let name = (&lowered.metadata.namespace, &lowered.metadata.name);
            let live = live
                .iter()
                .flatten()
                .find(|l| (&l.metadata.namespace, &l.metadata.name) == name);
            self.writer.apply(lowered, live).await?;
        }
        desired.resource_quotas = plan.kept;
        let now = live
            .into_iter()
            .flatten()
            .map(|live| {
                let name = (&live.metadata.namespace, &live.metadata.name);
                plan.lowered
                    .iter()
                    .find(|l| (&l.metadata.namespace, &l.metadata.name) == name)
                    .cloned()
                    .unwrap_or(live)
            })
            .collect();
        Ok(now)
    }
}
