//! The firewall at the shared ingress controller (R4): every Ingress of the tenant's zones
//! carries the tenant's allowed and denied source ranges in the annotations the controller
//! reads (`network.ingressFirewall`), so traffic coming through it is filtered like traffic
//! reaching the pods directly. The tenant's Ingresses are theirs; the operator owns only these
//! annotations, and the guard refuses anyone else's change to them.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::desired::network::{firewall_patch, ingress_firewall};
use crate::error::Result;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use tracing::warn;

impl Reconcile<'_> {
    /// Sets the firewall's annotations on every Ingress of the tenant's zones that does not
    /// carry exactly them (an Ingress in an internal zone too: the controller merges canaries
    /// and paths by host across namespaces, so the filter must hold on each). A merge patch: an
    /// Ingress deleted meanwhile is not made again. One refused patch does not hold up the
    /// others; the status then shows that Ingress `Pending` and `Isolated` false.
    pub(super) async fn keep_ingress_firewall(&self) -> Result<()> {
        let wanted = ingress_firewall(self.tenant, &self.config.network);
        if wanted.is_empty() {
            return Ok(());
        }
        for zone in &self.tenant.spec.zones {
            let namespace = self.tenant.zone_namespace(&zone.name);
            let ingresses = self.in_namespace::<Ingress>(&namespace).await?;
            for ingress in &ingresses {
                let Some(patch) = firewall_patch(ingress.metadata.annotations.as_ref(), &wanted)
                else {
                    continue;
                };
                let name = ingress.name_any();
                let patch = serde_json::json!({"metadata": {"annotations": patch}});
                let note = Note::normal(
                    "IngressFirewall",
                    "Update",
                    format!(
                        "Ingress {namespace}/{name}: the firewall's source ranges set for the ingress controller"
                    ),
                );
                if let Err(error) = self
                    .writer
                    .patch::<Ingress>(Some(&namespace), &name, &patch, Some(note))
                    .await
                {
                    warn!(%error, ingress = %name, "the firewall could not be set on an Ingress");
                }
            }
        }
        Ok(())
    }
}
