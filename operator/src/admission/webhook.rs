//! How the API server reaches the guard: the serving certificate (and, when the API server
//! presents one, the verification of its client certificate), and the webhook configuration:
//! for what the guard is called, and how it fails.

use super::{Guard, WEBHOOK_CONFIGURATION};
use crate::labels::{self, MANAGER};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::sync::Arc;

/// A TLS server configuration that verifies any client certificate presented against `ca`,
/// and lets callers without one through to the broker (backup pods present none).
pub(super) fn client_verifying_config(
    certificate: &ServingCertificate,
    ca: &str,
) -> crate::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let failed = |e: &dyn std::fmt::Display| crate::Error::Certificate(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(cert.map_err(|e| failed(&e))?)
            .map_err(|e| failed(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| failed(&e))?;
    let chain = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let key =
        PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).map_err(|e| failed(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| failed(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The guard's serving certificate and the CA the API server trusts it by.
pub struct ServingCertificate {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// The CA certificate, PEM: the webhook's `caBundle`.
    pub ca_pem: String,
}

impl ServingCertificate {
    /// A new CA and a certificate for `names` (DNS names or IP addresses) signed by it.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn generate(names: &[String]) -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "enclave-guard-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name
            .push(DnType::CommonName, "enclave-guard");
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: issuer.pem(),
        })
    }
}

/// The webhook configuration: where the API server calls the guard, for what, and how it fails.
#[must_use]
pub fn webhook_configuration(
    client_config: WebhookClientConfig,
    ca_pem: &str,
    guard: &Guard,
) -> ValidatingWebhookConfiguration {
    let client_config = WebhookClientConfig {
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
        ..client_config
    };
    let rule = |groups: &[&str], resources: &[&str], operations: &[&str], scope: &str| {
        RuleWithOperations {
            api_groups: Some(groups.iter().map(|s| (*s).to_string()).collect()),
            api_versions: Some(vec!["*".into()]),
            resources: Some(resources.iter().map(|s| (*s).to_string()).collect()),
            operations: Some(operations.iter().map(|s| (*s).to_string()).collect()),
            scope: Some(scope.into()),
        }
    };
    let all = ["CREATE", "UPDATE", "DELETE"];
    // The operator and the system controllers never reach the guard: the API server skips the
    // call, so their work goes on while the guard is down.
    let trusted: Vec<String> = guard
        .operator_users
        .iter()
        .chain(&guard.exempt_users)
        .map(|u| format!("'{u}'"))
        .collect();
    let not_trusted = MatchCondition {
        name: "not-the-operator-or-system-controllers".into(),
        expression: format!("!(request.userInfo.username in [{}])", trusted.join(", ")),
    };
    let managed = LabelSelector {
        match_labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        ..LabelSelector::default()
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_CONFIGURATION.into()),
            labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            ValidatingWebhook {
                name: "managed.guard.enclave.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config.clone(),
                rules: Some(vec![
                    // A namespace created with Enclave's labels would pass for a tenant's.
                    rule(&[""], &["namespaces"], &all, "Cluster"),
                    // Every namespaced kind the operator makes: none is created (with forged
                    // labels), changed or deleted by anyone else. Claims are checked field by
                    // field (the storage controllers bind them).
                    rule(
                        &[""],
                        &[
                            "resourcequotas",
                            "limitranges",
                            "secrets",
                            "configmaps",
                            "services",
                            "serviceaccounts",
                            "persistentvolumeclaims",
                        ],
                        &all,
                        "Namespaced",
                    ),
                    rule(
                        &["networking.k8s.io"],
                        &["networkpolicies"],
                        &all,
                        "Namespaced",
                    ),
                    rule(
                        &["rbac.authorization.k8s.io"],
                        &["rolebindings"],
                        &all,
                        "Namespaced",
                    ),
                    rule(
                        &["rbac.authorization.k8s.io"],
                        &["clusterroles"],
                        &all,
                        "Cluster",
                    ),
                    rule(
                        &["apps"],
                        &["deployments", "statefulsets"],
                        &all,
                        "Namespaced",
                    ),
                    rule(&["policy"], &["poddisruptionbudgets"], &all, "Namespaced"),
                    rule(&["batch"], &["cronjobs", "jobs"], &all, "Namespaced"),
                    rule(&["cert-manager.io"], &["certificates"], &all, "Namespaced"),
                    rule(&["storage.k8s.io"], &["storageclasses"], &all, "Cluster"),
                ]),
                object_selector: Some(managed),
                match_conditions: Some(vec![not_trusted]),
                failure_policy: Some("Fail".into()),
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
                namespace_selector: Some(LabelSelector::default()),
            },
            // In tenant namespaces, whatever the labels: the backup identity, the scale and
            // exec subresources, Services and RoleBindings. Fails closed: while the guard is
            // down a tenant cannot start pods by hand, which is what keeps the backup
            // credentials theirs alone; their workloads' own pods come from the (trusted)
            // controllers and keep coming.
            ValidatingWebhook {
                name: "tenant-namespaces.guard.enclave.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config.clone(),
                rules: Some(vec![
                    rule(
                        &[""],
                        &["pods", "replicationcontrollers", "services"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &[""],
                        &["pods/ephemeralcontainers"],
                        &["UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &[""],
                        &["pods/exec", "pods/attach", "pods/portforward"],
                        &["CONNECT"],
                        "Namespaced",
                    ),
                    rule(
                        &["apps"],
                        &["deployments", "replicasets", "statefulsets", "daemonsets"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &["apps"],
                        &["deployments/scale", "statefulsets/scale"],
                        &["UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &["batch"],
                        &["jobs", "cronjobs"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &["rbac.authorization.k8s.io"],
                        &["rolebindings"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    rule(
                        &["networking.k8s.io"],
                        &["ingresses"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                ]),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(
                        [(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into(),
                    ),
                    ..LabelSelector::default()
                }),
                object_selector: Some(LabelSelector::default()),
                match_conditions: Some(vec![MatchCondition {
                    name: "not-the-operator-or-system-controllers".into(),
                    expression: format!("!(request.userInfo.username in [{}])", trusted.join(", ")),
                }]),
                failure_policy: Some("Fail".into()),
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
            },
            ValidatingWebhook {
                name: "tenants.guard.enclave.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config.clone(),
                rules: Some(vec![rule(
                    &[enclave_crds::GROUP],
                    &["tenants"],
                    &["CREATE", "UPDATE"],
                    "Cluster",
                )]),
                failure_policy: Some("Ignore".into()),
                side_effects: "None".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
                namespace_selector: Some(LabelSelector::default()),
                object_selector: Some(LabelSelector::default()),
                ..ValidatingWebhook::default()
            },
            // Deleting a Tenant decommissions it for good: refused unless confirmed, and
            // refused while the guard is down (fail closed), when nobody can check.
            ValidatingWebhook {
                name: "tenant-deletions.guard.enclave.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config,
                rules: Some(vec![rule(
                    &[enclave_crds::GROUP],
                    &["tenants"],
                    &["DELETE"],
                    "Cluster",
                )]),
                failure_policy: Some("Fail".into()),
                side_effects: "None".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
                namespace_selector: Some(LabelSelector::default()),
                object_selector: Some(LabelSelector::default()),
                ..ValidatingWebhook::default()
            },
        ]),
    }
}
