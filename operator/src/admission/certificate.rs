//! The guard's serving certificate when it is kept in a Secret (the chart's way): made once
//! by the first replica to start (or by cert-manager), served by every replica and reloaded
//! when it changes, and named in the webhook configuration's `caBundle` by the leader.

use super::webhook::{MUTATING_WEBHOOKS, ServingCertificate, WEBHOOKS, ca_bundle, server_config};
use crate::cluster::{Gateway, Note, Writer};
use crate::error::Phase;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::time::Duration;

/// How often a replica looks for a renewed certificate, and the leader at the `caBundle`.
const EVERY: Duration = Duration::from_secs(10);
/// How long a replica waits for a certificate someone else makes (cert-manager).
const WAIT_FOR_ISSUER: Duration = Duration::from_secs(300);

/// The certificate kept in `secret`. When `issued_by_operator`, one is made (for `names`)
/// if the Secret is missing, unreadable or names other hosts; otherwise this waits for
/// cert-manager to write it.
///
/// # Errors
/// When the Secret cannot be read or written, or cert-manager never writes it.
pub(super) async fn load_or_issue(
    gateway: &Gateway,
    namespace: &str,
    secret: &str,
    names: &[String],
    issued_by_operator: bool,
) -> crate::Result<ServingCertificate> {
    let api = Api::<Secret>::namespaced(gateway.client().clone(), namespace);
    let writer = gateway.writer(Phase::Start, None);
    let started = std::time::Instant::now();
    loop {
        let live = api.get_opt(secret).await.map_err(crate::error::api(
            Phase::Start,
            "get",
            "Secret",
            &format!("{namespace}/{secret}"),
        ))?;
        let kept = live.as_ref().and_then(ServingCertificate::from_secret);
        match (kept, issued_by_operator) {
            (Some(kept), false) => return Ok(kept),
            (Some(kept), true) if kept.covers(names) => return Ok(kept),
            (_, true) => {
                let made = ServingCertificate::generate(names)
                    .map_err(|e| crate::Error::Certificate(e.to_string()))?;
                let desired = made.to_secret(secret, namespace);
                let note = Note::normal(
                    "WebhookCertificateIssued",
                    "Issue",
                    format!("made the admission guard's serving certificate for {names:?}"),
                );
                if live.is_none() {
                    // Another replica may make it at the same moment: then its certificate
                    // stands, and is read on the next turn.
                    if writer.create_absent(&desired, note).await? {
                        return Ok(made);
                    }
                } else {
                    tracing::info!(%secret, "the guard's certificate names other hosts: made anew");
                    writer.apply(&desired, live.as_ref()).await?;
                    return Ok(made);
                }
            }
            (None, false) => {
                if started.elapsed() > WAIT_FOR_ISSUER {
                    return Err(crate::Error::Certificate(format!(
                        "no certificate in Secret {namespace}/{secret} after {}s: is cert-manager issuing it?",
                        WAIT_FOR_ISSUER.as_secs()
                    )));
                }
                tracing::info!(%secret, "waiting for cert-manager to write the guard's certificate");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Serves a renewed certificate as soon as `secret` holds one (cert-manager's renewals, or
/// another replica's new certificate).
pub(super) async fn reload(
    client: kube::Client,
    namespace: String,
    secret: String,
    mut current: ServingCertificate,
    client_ca: Option<String>,
    tls: axum_server::tls_rustls::RustlsConfig,
) {
    let api = Api::<Secret>::namespaced(client, &namespace);
    loop {
        tokio::time::sleep(EVERY).await;
        let Ok(Some(live)) = api.get_opt(&secret).await else {
            continue;
        };
        let Some(kept) = ServingCertificate::from_secret(&live) else {
            continue;
        };
        if kept == current {
            continue;
        }
        match server_config(&kept, client_ca.as_deref()) {
            Ok(config) => {
                tls.reload_from_config(config);
                tracing::info!(%secret, "admission guard serves a renewed certificate");
                current = kept;
            }
            Err(error) => tracing::warn!(%secret, %error, "the renewed certificate is unusable"),
        }
    }
}

/// The leader's upkeep: keeps each webhook's `caBundle` in the chart's configuration
/// `webhook_configuration` equal to the CA in `secret`, until `shutdown` resolves. Only the
/// `caBundle` fields are the operator's: Helm or Argo CD own the rest of the object and never
/// see a difference to undo.
pub async fn keep_ca_bundle(
    gateway: Gateway,
    namespace: String,
    secret: String,
    webhook_configuration: String,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let secrets = Api::<Secret>::namespaced(gateway.client().clone(), &namespace);
    let validating = Api::<ValidatingWebhookConfiguration>::all(gateway.client().clone());
    let mutating = Api::<MutatingWebhookConfiguration>::all(gateway.client().clone());
    let writer = gateway.writer(Phase::Start, None);
    let upkeep = async {
        loop {
            // A read that fails (the API server restarting) is not an absent certificate.
            let ca = match secrets.get_opt(&secret).await {
                Ok(found) => found
                    .as_ref()
                    .and_then(ServingCertificate::from_secret)
                    .map(|c| c.ca_pem),
                Err(error) => {
                    tracing::warn!(%secret, %error, "reading the serving certificate failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            match ca {
                Some(ca) => {
                    keep_one(&validating, &writer, &webhook_configuration, &WEBHOOKS, &ca).await;
                    keep_one(
                        &mutating,
                        &writer,
                        &webhook_configuration,
                        &MUTATING_WEBHOOKS,
                        &ca,
                    )
                    .await;
                }
                None => tracing::warn!(%secret, "no certificate to publish yet"),
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    tokio::select! {
        () = upkeep => {},
        () = shutdown => {},
    }
}

/// Sets the `caBundle` of each of `webhooks` in the configuration `name` to `ca`, unless all
/// are already.
async fn keep_one<K>(api: &Api<K>, writer: &Writer<'_>, name: &str, webhooks: &[&str], ca: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize,
    K: std::fmt::Debug,
{
    let kind = K::kind(&());
    let live = match api.get_opt(name).await {
        Ok(Some(live)) => serde_json::to_value(&live).unwrap_or_default(),
        Ok(None) => {
            tracing::warn!(configuration = %name, %kind, "the webhook configuration is missing: is the chart installed?");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, %kind, "reading the webhook configuration failed");
            return;
        }
    };
    let fields = ca_bundle(&kind, name, webhooks, ca);
    let bundle = &fields["webhooks"][0]["clientConfig"]["caBundle"];
    let current = live["webhooks"].as_array().is_some_and(|hooks| {
        hooks
            .iter()
            .all(|w| &w["clientConfig"]["caBundle"] == bundle)
    });
    if current {
        return;
    }
    match writer.apply_fields::<K>(None, name, &fields).await {
        Ok(()) => tracing::info!(configuration = %name, %kind, "webhook caBundle set"),
        Err(error) => tracing::warn!(%error, %kind, "setting the webhook caBundle failed"),
    }
}
