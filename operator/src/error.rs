//! Everything that can go wrong, each error naming the phase of the reconcile and the object it
//! was about, so that a 403 applying a NetworkPolicy never reads like a 403 listing claims.

use std::fmt;

/// The step of the work that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Starting the operator: the shared roles, the guard's webhook.
    Start,
    /// The finalizer, the deadline, stopping a decommissioned tenant.
    Lifecycle,
    /// Reading what must hold before anything is applied (namespaces not someone else's).
    Preflight,
    /// The tenant's CA and certificates.
    Tls,
    /// Applying the desired objects.
    Apply,
    /// Deleting what is no longer desired, or keeping it through retention.
    Sweep,
    /// Reading the live state for the status.
    Observe,
    /// Writing the status.
    Status,
    /// Destroying a tenant's data past its deadline, and verifying it.
    Purge,
    /// Restores and exports.
    Request,
    /// The backup credentials broker.
    Broker,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Phase::Start => "start",
            Phase::Lifecycle => "lifecycle",
            Phase::Preflight => "preflight",
            Phase::Tls => "tls",
            Phase::Apply => "apply",
            Phase::Sweep => "sweep",
            Phase::Observe => "observe",
            Phase::Status => "status",
            Phase::Purge => "purge",
            Phase::Request => "request",
            Phase::Broker => "broker",
        };
        f.write_str(name)
    }
}

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{phase}: {verb} {kind} {object}: {source}")]
    Api {
        /// The step that made the request.
        phase: Phase,
        /// `get`, `list`, `apply`, `create`, `patch`, `delete`, ...
        verb: &'static str,
        /// The kind asked for.
        kind: String,
        /// `namespace/name`, a name, or the label selector of a list.
        object: String,
        /// What the client said.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object the operator would apply exists and is not the operator's: it is never taken
    /// over (what someone else wrote into it would stay, under Enclave's name).
    #[error(
        "{phase}: {kind} {object} exists and is not Enclave's: Enclave never takes over an object it did not make; delete or rename it"
    )]
    Foreign {
        /// The step.
        phase: Phase,
        /// The kind.
        kind: String,
        /// `namespace/name` or a name.
        object: String,
    },
    /// An object could not be turned into JSON.
    #[error("serialisation of {kind} failed: {source}")]
    Serialization {
        /// The kind being serialised.
        kind: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The Tenant lacks metadata the API server always sets (name, uid).
    #[error("tenant lacks metadata.{0}")]
    MissingMetadata(&'static str),
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The operator's configuration file is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Leader election failed (the Lease could not be read, created or renewed).
    #[error("leader election: {0}")]
    Leader(String),
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
            _ if self.is_conflict() => "conflict",
            Error::Api { source, .. } if matches!(**source, kube::Error::Api(_)) => "api",
            Error::Api { .. } => "client",
            Error::Serialization { .. } | Error::Yaml(_) => "serialization",
            Error::MissingMetadata(_) => "metadata",
            Error::Foreign { .. } => "foreign",
            Error::AdminServer(_) => "admin-server",
            Error::Certificate(_) => "certificate",
            Error::Leader(_) => "leader",
            Error::Config(_) => "config",
            Error::Key(_) => "key",
        }
    }

    /// True for a 409: the view the request was made from was stale, a retry will do.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(&**source, kube::Error::Api(status) if status.code == 409))
    }

    /// True when the API server answered 404 Not Found.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(&**source, kube::Error::Api(status) if status.code == 404))
    }
}

/// Wraps a client error as [`Error::Api`]: `.map_err(api(Phase::Observe, "list", "Pod", sel))`.
pub fn api(
    phase: Phase,
    verb: &'static str,
    kind: impl Into<String>,
    object: impl Into<String>,
) -> impl FnOnce(kube::Error) -> Error {
    let (kind, object) = (kind.into(), object.into());
    move |source| Error::Api {
        phase,
        verb,
        kind,
        object,
        source: Box::new(source),
    }
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The API server's answer to a write naming a uid that is no longer the object's (422,
/// `metadata.uid` immutable) as what it means: a conflict, the view written from was stale.
pub(crate) fn replaced_since_read(error: kube::Error) -> kube::Error {
    match error {
        kube::Error::Api(status)
            if status.code == 422
                && status.details.as_ref().is_some_and(|details| {
                    details
                        .causes
                        .iter()
                        .any(|cause| cause.field == "metadata.uid")
                }) =>
        {
            kube::Error::Api(
                kube::core::Status::failure(
                    &format!("replaced since it was read: {}", status.message),
                    "Conflict",
                )
                .with_code(409)
                .boxed(),
            )
        }
        error => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Conflict")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn an_error_names_its_phase_and_object() {
        let error = api(
            Phase::Apply,
            "apply",
            "NetworkPolicy",
            "acme-dmz/enclave-default-deny",
        )(status(403));
        let text = error.to_string();
        assert!(
            text.starts_with("apply: apply NetworkPolicy acme-dmz/enclave-default-deny: "),
            "{text}"
        );
        assert_eq!(error.metric_label(), "api");
        assert!(!error.is_conflict());
    }

    #[test]
    fn conflicts_are_told_by_variant_and_code() {
        let error = api(Phase::Status, "apply", "Tenant", "acme")(status(409));
        assert!(error.is_conflict());
        assert_eq!(error.metric_label(), "conflict");
        assert!(!Error::MissingMetadata("uid").is_conflict());
    }
}
