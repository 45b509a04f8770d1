//! The incident webhook (`notifications.webhookUrl`): each incident, when it opens and when it
//! resolves, POSTed as JSON to a receiver of the platform team's choosing (a paging service, a
//! ticket system, a chat bridge). The receiver's 2xx answer is the incident's `notifiedAt`.

use enclave_crds::Incident;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a receiver may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiver gets.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Notification<'a> {
    /// `opened` or `resolved`.
    pub event: &'static str,
    /// The Tenant's name.
    pub tenant: &'a str,
    /// The Tenant's uid: names are reused, uids never.
    pub tenant_uid: &'a str,
    /// The customer's name (`spec.displayName`).
    pub display_name: Option<&'a str>,
    /// The incident as `status.incidents` shows it.
    pub incident: &'a Incident,
}

/// Why a notification did not reach its receiver.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The URL, the CA or the payload is unusable.
    #[error("notification not sent: {0}")]
    Setup(String),
    /// The receiver could not be reached in time.
    #[error("notification receiver unreachable: {0}")]
    Unreachable(String),
    /// The receiver answered with an error.
    #[error("notification receiver answered {0}")]
    Refused(u16),
}

/// POSTs `notification` to `url`, trusting `ca` (PEM) or else the public web PKI.
///
/// # Errors
/// [`NotifyError`] when the receiver did not accept it.
pub async fn send(
    url: &str,
    ca: Option<&str>,
    notification: &Notification<'_>,
) -> Result<(), NotifyError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let setup = |e: &dyn std::fmt::Display| NotifyError::Setup(e.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| setup(&e))?;
    let tls = if let Some(ca) = ca {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots
                .add(cert.map_err(|e| setup(&e))?)
                .map_err(|e| setup(&e))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let roots = webpki_roots::TLS_SERVER_ROOTS
            .iter()
            .cloned()
            .collect::<rustls::RootCertStore>();
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let body = serde_json::to_vec(notification).map_err(|e| setup(&e))?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "enclave-operator")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| setup(&e))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| NotifyError::Unreachable(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| NotifyError::Unreachable(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(NotifyError::Refused(status.as_u16()))
    }
}
