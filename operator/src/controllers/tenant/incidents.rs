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
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use tracing::warn;

impl Reconcile<'_> {
    /// Announces the incidents `status` opens and resolves. Without a webhook, the Event and
    /// the metric of this reconcile announce them: `notifiedAt` is now. With one, an incident
    /// is notified once its receiver accepts it (resolved already if it recovered before),
    /// tried again every 30 s until then; a recovery is sent once. One failure ends the
    /// sending for this reconcile: a receiver that hangs costs each reconcile one timeout.
    pub(super) async fn announce(&self, previous: &[Incident], status: &mut TenantStatus) {
        let Some(url) = self.config.notifications.webhook_url.as_deref() else {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            for incident in unannounced(&mut status.incidents) {
                incident.notified_at = Some(now.clone());
            }
            return;
        };
        for incident in resolved_now(previous, &status.incidents) {
            if let Err(error) = self.send(url, "resolved", incident).await {
                return self.notification_failed(incident, &error).await;
            }
        }
        for incident in unannounced(&mut status.incidents) {
            let event = if incident.resolved_at.is_some() {
                "resolved"
            } else {
                "opened"
            };
            match self.send(url, event, incident).await {
                Ok(()) => incident.notified_at = Some(Time(k8s_openapi::jiff::Timestamp::now())),
                Err(error) => return self.notification_failed(incident, &error).await,
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

    /// Adds what the status shows of the incidents to the register (`enclave-incidents-<tenant>-<uid>`
    /// in the operator's namespace) when they changed, or when writing it failed before: a
    /// failure is logged, recorded as a Warning Event, and tried again.
    pub(super) async fn keep_register(&self, previous: &[Incident], incidents: &[Incident]) {
        let retry = self
            .ctx
            .register_retry
            .lock()
            .is_ok_and(|r| r.contains(&self.identity.uid));
        if previous == incidents && !retry {
            return;
        }
        let result = self.write_register(incidents).await;
        let failed = match (result, self.ctx.register_retry.lock()) {
            (Ok(()), Ok(mut pending)) => {
                pending.remove(&self.identity.uid);
                None
            }
            (Err(error), Ok(mut pending)) => {
                pending.insert(self.identity.uid.clone());
                Some(error)
            }
            (result, Err(_)) => result.err(),
        };
        if let Some(error) = failed {
            warn!(%error, "the incident register could not be written; trying again");
            self.notify_again
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.writer
                .publish(Note::warning(
                    "IncidentRegisterFailed",
                    "Register",
                    format!("the incident register was not written: {error}"),
                ))
                .await;
        }
    }

    async fn write_register(&self, incidents: &[Incident]) -> crate::error::Result<()> {
        let namespace = &self.config.namespace;
        let name = register_name(&self.identity);
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

    /// Publishes the report of the status just written in every zone (`enclave-report`), so
    /// that it follows the status at once; the next reconcile's apply finds it in place. A
    /// failure is logged: that apply writes it again.
    pub(super) async fn publish_report(&self, status: &TenantStatus) {
        let mut reported = self.tenant.clone();
        reported.status = Some(status.clone());
        for desired in crate::report::config_maps(&reported, &self.identity) {
            let (namespace, name) = (desired.namespace().unwrap_or_default(), desired.name_any());
            let live = self
                .ctx
                .caches
                .get_or_read::<ConfigMap>(&self.ctx.client, Some(&namespace), &name)
                .await;
            let result = match live {
                Ok(live) => self.writer.apply(&desired, live.as_ref()).await.map(drop),
                Err(error) => Err(api_error(error, &name)),
            };
            if let Err(error) = result {
                warn!(%error, "the report could not be published; the next reconcile will");
            }
        }
    }

    /// Keeps the tenant's `AlertmanagerConfig` when prometheus-operator's CRD is served and
    /// the configuration asks for it. A failure (prometheus-operator's own webhook down, the
    /// CRD removed) holds up nothing else: it is logged and recorded as a Warning Event.
    pub(super) async fn keep_alert_routing(&self) {
        if !self
            .ctx
            .alert_routing
            .load(std::sync::atomic::Ordering::Relaxed)
            || !self.config.notifications.alertmanager_config
        {
            return;
        }
        if let Err(error) = self.apply_alert_routing().await {
            warn!(%error, "the tenant's alert routing could not be kept");
            self.writer
                .publish(Note::warning(
                    "AlertRoutingFailed",
                    "Apply",
                    format!("the AlertmanagerConfig routing the tenant's alerts to its contacts was not kept: {error}"),
                ))
                .await;
        }
    }

    async fn apply_alert_routing(&self) -> crate::error::Result<()> {
        let resource = alertmanager_config_resource();
        let desired = alert_routing(self.tenant, &self.identity, &self.config.namespace);
        let name = desired["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Applied once per change of what it says (the contacts), not read every reconcile:
        // it lives in the operator's namespace, which tenants cannot touch.
        let said = desired.to_string();
        let uid = &self.identity.uid;
        if self
            .ctx
            .routed
            .lock()
            .is_ok_and(|r| r.get(uid) == Some(&said))
        {
            return Ok(());
        }
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
        if let Ok(mut routed) = self.ctx.routed.lock() {
            routed.insert(uid.clone(), said);
        }
        Ok(())
    }
}

fn api_error(error: kube::Error, name: &str) -> crate::error::Error {
    api(Phase::Status, "get", "ConfigMap", name)(error)
}
