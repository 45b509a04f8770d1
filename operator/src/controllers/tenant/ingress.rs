//! The firewall at the shared ingress controller (R4): every Ingress of an internet-facing zone
//! carries the tenant's allowed and denied source ranges in the annotations the controller
//! reads (`network.ingressFirewall`), so traffic coming through it is filtered like traffic
//! reaching the pods directly. The tenant's Ingresses are theirs; the operator owns only these
//! annotations, and the guard refuses anyone else's change to them.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::desired::network::{carries_firewall, ingress_firewall};
use crate::error::{Phase, Result, api};
use enclave_crds::Exposure;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

impl Reconcile<'_> {
    /// Sets the firewall's annotations on every Ingress of the internet-facing zones that does
    /// not carry them exactly. A merge patch: an Ingress deleted meanwhile is not made again.
    pub(super) async fn keep_ingress_firewall(&self) -> Result<()> {
        let wanted = ingress_firewall(self.tenant, &self.config.network);
        if wanted.is_empty() {
            return Ok(());
        }
        for zone in self
            .tenant
            .spec
            .zones
            .iter()
            .filter(|z| z.exposure == Exposure::Internet)
        {
            let namespace = self.tenant.zone_namespace(&zone.name);
            let ingresses = Api::<Ingress>::namespaced(self.ctx.client.clone(), &namespace)
                .list(&ListParams::default())
                .await
                .map_err(api(Phase::Apply, "list", "Ingress", &namespace))?;
            for ingress in ingresses
                .items
                .iter()
                .filter(|i| !carries_firewall(i.metadata.annotations.as_ref(), &wanted))
            {
                let name = ingress.name_any();
                let patch = serde_json::json!({"metadata": {"annotations": wanted}});
                let note = Note::normal(
                    "IngressFirewall",
                    "Update",
                    format!(
                        "Ingress {namespace}/{name}: the firewall's source ranges set for the ingress controller"
                    ),
                );
                self.writer
                    .patch::<Ingress>(Some(&namespace), &name, &patch, Some(note))
                    .await?;
            }
        }
        Ok(())
    }
}
