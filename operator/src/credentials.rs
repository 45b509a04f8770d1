//! The credentials broker: how a backup pod gets its tenant's repository password and the
//! object store's credentials without either ever being stored in a tenant namespace.
//!
//! The pod presents a short-lived service account token bound to the audience
//! [`AUDIENCE`](crate::desired::backup::AUDIENCE); the operator has the API server review it
//! (TokenReview), checks that it is the `enclave-backup` service account of a tenant's zone
//! namespace, that the token is bound to a pod of a Job the operator made (a restore) or its
//! backup CronJob made (nobody else may make such a Job or such a pod: the guard), and that
//! the tenant is active, and answers with that tenant's secrets only. The pod writes them to
//! memory.

use crate::desired::backup::{ACCESS_KEY_FILE, AUDIENCE, NAME, PASSWORD_FILE, SECRET_KEY_FILE};
use crate::desired::labels;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Where the broker answers, on the operator's TLS endpoint.
pub const PATH: &str = "/credentials";

/// What a backup pod receives.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The tenant's restic repository password.
    pub restic_password: String,
    /// The object store's access key id.
    pub access_key_id: String,
    /// The object store's secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// The broker's state: a client of the API server and the operator's namespace.
#[derive(Clone)]
pub struct Broker {
    /// Client of the API server.
    pub client: kube::Client,
    /// Where the passwords and the store's credentials are kept.
    pub namespace: String,
    /// The namespaces' labels and the Tenants, kept by watches.
    pub caches: crate::admission::Caches,
}

type Refusal = (StatusCode, String);

fn refuse(code: StatusCode, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

/// `GET /credentials` with `Authorization: Bearer <token>`.
///
/// # Errors
/// 401 for a token the API server does not accept for the audience, 403 for any other
/// identity than a tenant's backup service account, 404 for a tenant without backups, 503 while
/// its secrets are not in place.
pub async fn handle(
    State(broker): State<Arc<Broker>>,
    headers: HeaderMap,
) -> Result<Json<Credentials>, Refusal> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![AUDIENCE.into()]),
        },
        ..TokenReview::default()
    };
    let unavailable = |e: kube::Error| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let reviewed = crate::cluster::Gateway::review_token(&broker.client, &review)
        .await
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let status = reviewed.status.unwrap_or_default();
    let audience_ok = status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|a| a == AUDIENCE));
    if status.authenticated != Some(true) || !audience_ok {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!("the token is not valid for the audience {AUDIENCE}"),
        ));
    }
    let user = status.user.unwrap_or_default();
    let bound = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|extra| extra.get(key)?.first().cloned())
    };
    let pod = bound("authentication.kubernetes.io/pod-name")
        .zip(bound("authentication.kubernetes.io/pod-uid"));
    let username = user.username.clone().unwrap_or_default();
    let namespace = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_suffix(&format!(":{NAME}")))
        .ok_or_else(|| {
            refuse(
                StatusCode::FORBIDDEN,
                format!("{username} is not a backup service account"),
            )
        })?;
    // A namespace the operator made (only it may set its labels: the guard), one of a
    // tenant's zones by name too.
    let namespace_labels = broker
        .caches
        .namespace_labels(namespace)
        .await
        .map_err(unavailable)?
        .filter(|l| l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER))
        .ok_or_else(|| {
            refuse(
                StatusCode::FORBIDDEN,
                format!("{namespace} is not a tenant namespace"),
            )
        })?;
    let uid = namespace_labels
        .get(labels::TENANT_UID)
        .cloned()
        .unwrap_or_default();
    let zone = namespace_labels
        .get(labels::ZONE)
        .cloned()
        .unwrap_or_default();
    let tenant = broker
        .caches
        .tenant_by_uid(&uid)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "no tenant owns this namespace"))?;
    let name = tenant.metadata.name.clone().unwrap_or_default();
    if tenant.zone_namespace(&zone) != namespace {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{namespace} is not a zone namespace of tenant {name}"),
        ));
    }
    let Some((pod, pod_uid)) = pod else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "the token is not bound to a pod: only the pods of Enclave's backup and restore Jobs get credentials",
        ));
    };
    let run = job_of(&broker.client, namespace, &pod, &pod_uid, &uid).await?;
    let stopped = tenant.metadata.deletion_timestamp.is_some()
        || tenant.spec.lifecycle.state == enclave_crds::LifecycleState::Decommissioned;
    if stopped || run == Run::Backup && !tenant.is_running() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("tenant {name} is not active: its backups are suspended"),
        ));
    }
    let backup = tenant.spec.backup.as_ref().ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            format!("tenant {name} has no backups"),
        )
    })?;
    let secrets = Api::<Secret>::namespaced(broker.client.clone(), &broker.namespace);
    let entry = |secret: &Option<Secret>, key: &str| {
        secret
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let password_name = crate::desired::backup::password_secret_name(&name);
    let password = secrets.get_opt(&password_name).await.map_err(unavailable)?;
    let store = secrets
        .get_opt(&backup.destination.credentials_secret)
        .await
        .map_err(unavailable)?;
    let missing = |what: &str| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is not in place yet"),
        )
    };
    let credentials = Credentials {
        restic_password: entry(&password, "password")
            .ok_or_else(|| missing(&format!("{}/{password_name}", broker.namespace)))?,
        access_key_id: entry(&store, "AWS_ACCESS_KEY_ID").ok_or_else(|| {
            missing(&format!(
                "AWS_ACCESS_KEY_ID of {}/{}",
                broker.namespace, backup.destination.credentials_secret
            ))
        })?,
        secret_access_key: entry(&store, "AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            missing(&format!(
                "AWS_SECRET_ACCESS_KEY of {}/{}",
                broker.namespace, backup.destination.credentials_secret
            ))
        })?,
    };
    tracing::info!(tenant = %name, %namespace, "backup credentials handed to a backup pod");
    Ok(Json(credentials))
}

/// What a pod asking for credentials runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// A Job of the operator's backup CronJob.
    Backup,
    /// A Job of a `TenantRestore`.
    Restore,
}

/// Follows the token's pod to the Job that made it and the Job to its owner: only a Job the
/// operator made (a restore) or that its own CronJob made (a backup), carrying the tenant's
/// labels, which nobody else may set (the guard), qualifies.
async fn job_of(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    pod_uid: &str,
    tenant_uid: &str,
) -> Result<Run, Refusal> {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    let unavailable = |e: kube::Error| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let forbidden = |why: &str| {
        refuse(
            StatusCode::FORBIDDEN,
            format!("pod {namespace}/{pod}: {why}"),
        )
    };
    let live = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(pod)
        .await
        .map_err(unavailable)?
        .filter(|p| p.metadata.uid.as_deref() == Some(pod_uid))
        .ok_or_else(|| forbidden("not found"))?;
    if live
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        != Some(NAME)
    {
        return Err(forbidden("does not run as the backup service account"));
    }
    let controller = |owners: Option<
        &Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    >| { owners?.iter().find(|o| o.controller == Some(true)).cloned() };
    let owner = controller(live.metadata.owner_references.as_ref())
        .filter(|o| o.kind == "Job")
        .ok_or_else(|| forbidden("not made by a Job"))?;
    let job = Api::<Job>::namespaced(client.clone(), namespace)
        .get_opt(&owner.name)
        .await
        .map_err(unavailable)?
        .filter(|j| j.metadata.uid.as_deref() == Some(owner.uid.as_str()))
        .ok_or_else(|| forbidden("its Job is gone"))?;
    let job_labels = job.metadata.labels.clone().unwrap_or_default();
    if job_labels.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER)
        || job_labels.get(labels::TENANT_UID).map(String::as_str) != Some(tenant_uid)
    {
        return Err(forbidden("its Job is not Enclave's"));
    }
    match controller(job.metadata.owner_references.as_ref()) {
        Some(o) if o.kind == "CronJob" && o.name == NAME => {
            // The operator's CronJob itself, by uid: one carrying its labels and the tenant's.
            let cron =
                Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(client.clone(), namespace)
                    .get_opt(NAME)
                    .await
                    .map_err(unavailable)?
                    .filter(|c| c.metadata.uid.as_deref() == Some(o.uid.as_str()))
                    .ok_or_else(|| forbidden("its CronJob is gone"))?;
            let cron_labels = cron.metadata.labels.unwrap_or_default();
            if cron_labels.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER)
                || cron_labels.get(labels::TENANT_UID).map(String::as_str) != Some(tenant_uid)
            {
                return Err(forbidden("its CronJob is not Enclave's"));
            }
            Ok(Run::Backup)
        }
        Some(o) if o.kind == "TenantRestore" && o.api_version.starts_with(enclave_crds::GROUP) => {
            Ok(Run::Restore)
        }
        _ => Err(forbidden(
            "its Job was made neither by Enclave's backup CronJob nor by a restore",
        )),
    }
}

/// Why the credentials could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The CA or the URL is unusable.
    #[error("{0}")]
    Setup(String),
    /// The request failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The broker refused.
    #[error("refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The broker's reason.
        message: String,
    },
    /// The files could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Fetches the credentials from the broker at `url`, trusting only `ca_pem`.
///
/// # Errors
/// [`FetchError`] when the broker cannot be reached or refuses.
pub async fn fetch(url: &str, token: &str, ca_pem: &str) -> Result<Credentials, FetchError> {
    use http_body_util::BodyExt as _;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let setup = |e: &dyn std::fmt::Display| FetchError::Setup(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| setup(&e))?)
            .map_err(|e| setup(&e))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| setup(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let request = http::Request::get(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .map_err(|e| setup(&e))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| FetchError::Request(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| FetchError::Request(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(FetchError::Refused {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| FetchError::Request(e.to_string()))
}

/// Writes the credentials as the files the backup script reads, readable by their owner only.
///
/// # Errors
/// [`FetchError::Write`] when a file cannot be written.
pub fn write_files(dir: &Path, credentials: &Credentials) -> Result<(), FetchError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    for (name, value) in [
        (PASSWORD_FILE, &credentials.restic_password),
        (ACCESS_KEY_FILE, &credentials.access_key_id),
        (SECRET_KEY_FILE, &credentials.secret_access_key),
    ] {
        let path = dir.join(name);
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            // A file, not the API: the one `.create(` outside the gateway (cluster/).
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o400)
                .open(&path)?;
            file.write_all(value.as_bytes())
        };
        write().map_err(|source| FetchError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let c = Credentials {
            restic_password: "hunter2".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "s3cr3t".into(),
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("s3cr3t"));
    }

    #[test]
    fn files_are_written_for_the_script_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("enclave-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let c = Credentials {
            restic_password: "pw".into(),
            access_key_id: "id".into(),
            secret_access_key: "key".into(),
        };
        write_files(&dir, &c).expect("written");
        let password = dir.join(PASSWORD_FILE);
        assert_eq!(std::fs::read_to_string(&password).expect("read"), "pw");
        assert_eq!(
            std::fs::metadata(&password)
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o400
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
