//! Enclave's operator: reconciles each `Tenant` into isolated namespaces and the objects that
//! keep its policy, reports what it sees, and decommissions safely.
#![forbid(unsafe_code)]

pub mod admission;
pub mod apply;
pub mod build;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod exposure;
pub mod requests;
pub mod status;
pub mod telemetry;
pub mod tls;

/// Everything that can go wrong while reconciling a tenant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be turned into JSON.
    #[error("serialisation failed: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The Tenant lacks metadata the API server always sets (name, uid).
    #[error("tenant lacks metadata.{0}")]
    MissingMetadata(&'static str),
    /// The guard's serving certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(String),
    /// An object could not be written as YAML.
    #[error("YAML serialisation failed: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The operating system gave no randomness for an encryption key.
    #[error("key generation failed: {0}")]
    Key(String),
    /// The admin HTTP server could not start.
    #[error("admin server failed: {0}")]
    AdminServer(#[from] std::io::Error),
}

impl Error {
    /// A short, stable name for the `kind` label of the error metric.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Serialization(_) | Error::Yaml(_) => "serialization",
            Error::MissingMetadata(_) => "metadata",
            Error::AdminServer(_) => "admin-server",
            Error::Certificate(_) => "certificate",
            Error::Key(_) => "key",
        }
    }
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;
