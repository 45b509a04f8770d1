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
    /// quota); a zone without a quota yet uses nothing.
    pub(super) async fn split_quota(&self, desired: &mut Desired) -> Result<()> {
        if self.tenant.spec.quota.is_none() {
            return Ok(());
        }
        let mut used = Usage::new();
        for zone in &self.tenant.spec.zones {
            let namespace = self.tenant.zone_namespace(&zone.name);
            let live = Api::<ResourceQuota>::namespaced(self.ctx.client.clone(), &namespace)
                .get_opt(QUOTA)
                .await
                .map_err(api(Phase::Apply, "get", "ResourceQuota", &namespace))?;
            if let Some(live) = live {
                used.insert(namespace, quota::used(&live));
            }
        }
        desired.resource_quotas = quota::resource_quotas(self.tenant, &self.identity, &used);
        Ok(())
    }
}
