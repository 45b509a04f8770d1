//! Incidents beyond the status (R14): their announcement to the operator's webhook, the
//! register in the operator's namespace, and the alert routing to the tenant's contacts.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::desired::incidents::{
    alert_routing, alertmanager_config_resource, register, register_name, registered,
};
use crate::error::{Phase, api};
use crate::notify::{self, Notification};
use crate::status::incidents::{resolved_now, unannounced};
use enclave_crds::{Incident, TenantStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject};
use tracing::warn;

impl Reconcile<'_> {
    /// Announces the incidents `status` opens and resolves. Without a webhook, the Event and
    /// the metric of this reconcile announce them: `notifiedAt` is now. With one, an opened
    /// incident is notified once its receiver accepts it, tried again at every reconcile
    /// until then; a recovery is sent once.
    pub(super) async fn announce(&self, previous: &[Incident], status: &mut TenantStatus) {
        let now = Time(self.now);
        let Some(url) = self.config.notifications.webhook_url.as_deref() else {
            for incident in unannounced(&mut status.incidents) {
                incident.notified_at = Some(now.clone());
            }
            return;
        };
        for incident in resolved_now(previous, &status.incidents) {
            if let Err(error) = self.send(url, "resolved", incident).await {
                self.notification_failed(incident, &error).await;
            }
        }
        for incident in unannounced(&mut status.incidents) {
            match self.send(url, "opened", incident).await {
                Ok(()) => incident.notified_at = Some(Time(k8s_openapi::jiff::Timestamp::now())),
                Err(error) => self.notification_failed(incident, &error).await,
            }
        }
    }

    async fn send(
        &self,
        url: &str,
        event: &'static str,
        incident: &Incident,
    ) -> Result<(), notify::NotifyError> {
        let notification = Notification {
            event,
            tenant: &self.identity.name,
            tenant_uid: &self.identity.uid,
            display_name: self.tenant.spec.display_name.as_deref(),
            incident,
        };
        let ca = self.config.notifications.webhook_ca.as_deref();
        notify::send(url, ca, &notification).await
    }

    async fn notification_failed(&self, incident: &Incident, error: &notify::NotifyError) {
        warn!(incident = %incident.id, %error, "incident notification failed");
        self.notify_again
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.writer
            .publish(Note::warning(
                "NotificationFailed",
                "Notify",
                format!("incident {}: {error}", incident.id),
            ))
            .await;
    }

    /// Adds what the status shows of the incidents to the register (`enclave-incidents-<tenant>`
    /// in the operator's namespace), when it changed.
    pub(super) async fn keep_register(
        &self,
        previous: &[Incident],
        incidents: &[Incident],
    ) -> crate::error::Result<()> {
        if previous == incidents {
            return Ok(());
        }
        let namespace = &self.config.namespace;
        let name = register_name(&self.identity.name);
        let live = Api::<ConfigMap>::namespaced(self.ctx.client.clone(), namespace)
            .get_opt(&name)
            .await
            .map_err(api(Phase::Status, "get", "ConfigMap", &name))?;
        let kept = registered(live.as_ref(), &self.identity);
        let desired = register(&self.identity, namespace, kept, incidents);
        self.writer
            .during(Phase::Status)
            .apply(&desired, live.as_ref())
            .await?;
        Ok(())
    }

    /// Keeps the tenant's `AlertmanagerConfig` when prometheus-operator's CRD is served and
    /// the configuration asks for it.
    pub(super) async fn keep_alert_routing(&self) -> crate::error::Result<()> {
        if !self
            .ctx
            .alert_routing
            .load(std::sync::atomic::Ordering::Relaxed)
            || !self.config.notifications.alertmanager_config
        {
            return Ok(());
        }
        let resource = alertmanager_config_resource();
        let desired = alert_routing(self.tenant, &self.identity, &self.config.namespace);
        let name = desired["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let live = Api::<DynamicObject>::namespaced_with(
            self.ctx.client.clone(),
            &self.config.namespace,
            &resource,
        )
        .get_opt(&name)
        .await
        .map_err(api(Phase::Apply, "get", &resource.kind, &name))?;
        let live = live
            .map(serde_json::to_value)
            .transpose()
            .map_err(|source| crate::error::Error::Serialization {
                kind: resource.kind.clone(),
                source,
            })?;
        self.writer
            .apply_json(&resource, desired, live.as_ref())
            .await?;
        Ok(())
    }
}
