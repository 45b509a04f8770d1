//! How the API server reaches the guard: the serving certificate (and, when the API server
//! presents one, the verification of its client certificate), and the webhook configuration:
//! for what the guard is called, and how it fails.

use super::{Guard, MUTATE_PATH, PATH, WEBHOOK_CONFIGURATION};
use crate::labels::{self, MANAGER};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use std::sync::Arc;

/// The guard's TLS server configuration. With `client_ca`, it verifies any client certificate
/// presented against it (the guard then answers only the API server, which presents one) and
/// lets callers without one through to the broker (backup pods present none).
pub(super) fn server_config(
    certificate: &ServingCertificate,
    client_ca: Option<&str>,
) -> crate::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let failed = |e: &dyn std::fmt::Display| crate::Error::Certificate(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots
                    .add(cert.map_err(|e| failed(&e))?)
                    .map_err(|e| failed(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| failed(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let key =
        PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).map_err(|e| failed(&e))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| failed(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The guard's serving certificate and the CA the API server trusts it by.
#[derive(Clone, PartialEq, Eq)]
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

    /// The Secret (`kubernetes.io/tls`, with `ca.crt`) that keeps it for every replica.
    #[must_use]
    pub fn to_secret(&self, name: &str, namespace: &str) -> Secret {
        let data = [
            ("tls.crt", &self.cert_pem),
            ("tls.key", &self.key_pem),
            ("ca.crt", &self.ca_pem),
        ]
        .into_iter()
        .map(|(key, pem)| (key.to_string(), ByteString(pem.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(
                    [
                        (labels::MANAGED_BY.to_string(), MANAGER.to_string()),
                        (
                            "app.kubernetes.io/component".to_string(),
                            "webhook-certificate".to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// What `secret` keeps (written by the operator or by cert-manager); `None` when a part
    /// is missing.
    #[must_use]
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        Some(Self {
            cert_pem: text("tls.crt")?,
            key_pem: text("tls.key")?,
            ca_pem: text("ca.crt")?,
        })
    }

    /// Whether the certificate names every one of `names` (DNS names or IP addresses).
    #[must_use]
    pub fn covers(&self, names: &[String]) -> bool {
        use x509_parser::extensions::GeneralName;
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes()) else {
            return false;
        };
        let Ok(cert) = pem.parse_x509() else {
            return false;
        };
        let Ok(Some(alternative)) = cert.subject_alternative_name() else {
            return false;
        };
        let in_certificate: Vec<String> = alternative
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes)
                        .ok()
                        .map(|b| std::net::IpAddr::from(b).to_string()),
                    16 => <[u8; 16]>::try_from(*bytes)
                        .ok()
                        .map(|b| std::net::IpAddr::from(b).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        names.iter().all(|name| in_certificate.contains(name))
    }
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("ServingCertificate")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The names of the guard's webhooks, in the order of [`webhook_configuration`].
pub const WEBHOOKS: [&str; 4] = [
    "managed.guard.enclave.dev",
    "tenant-namespaces.guard.enclave.dev",
    "tenants.guard.enclave.dev",
    "tenant-deletions.guard.enclave.dev",
];

/// The fields of the webhook configuration `name` of `kind` (installed by the chart) that the
/// operator keeps: each webhook's `caBundle`, and nothing else, so that Helm or Argo CD own the
/// rest and nobody fights over a field.
#[must_use]
pub fn ca_bundle(kind: &str, name: &str, webhooks: &[&str], ca_pem: &str) -> serde_json::Value {
    // A ByteString serialises as base64, as the API wants it.
    let bundle = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec()))
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": webhooks
            .iter()
            .map(|webhook| serde_json::json!({"name": webhook, "clientConfig": {"caBundle": bundle}}))
            .collect::<Vec<_>>(),
    })
}

/// The webhook configuration: where the API server calls the guard, for what, and how it fails.
#[must_use]
pub fn webhook_configuration(
    client_config: WebhookClientConfig,
    ca_pem: &str,
    guard: &Guard,
    operator_namespace: &str,
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
    let not_trusted = not_trusted(guard);
    let managed = LabelSelector {
        match_labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        ..LabelSelector::default()
    };
    // Never kube-system: the cluster's own pods start whatever state the guard is in. The
    // operator's namespace is left out of the tenant-namespace rules (its pods, its Deployment,
    // its Lease never wait on the guard), but what Enclave manages there (encryption keys,
    // backup passwords, tenant CAs) is guarded like anywhere: a key deleted by anyone else
    // would be made anew, and the data it encrypts lost.
    let not_system = LabelSelectorRequirement {
        key: "kubernetes.io/metadata.name".into(),
        operator: "NotIn".into(),
        values: Some(vec!["kube-system".into()]),
    };

    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_CONFIGURATION.into()),
            labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![
            ValidatingWebhook {
                name: WEBHOOKS[0].into(),
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
                match_conditions: Some(vec![not_trusted.clone()]),
                failure_policy: Some("Fail".into()),
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![not_system]),
                    ..LabelSelector::default()
                }),
            },
            // In tenant namespaces, whatever the labels: the backup identity, the scale and
            // exec subresources, Services and RoleBindings. Fails closed: while the guard is
            // down a tenant cannot start pods by hand, which is what keeps the backup
            // credentials theirs alone; their workloads' own pods come from the (trusted)
            // controllers and keep coming.
            ValidatingWebhook {
                name: WEBHOOKS[1].into(),
                admission_review_versions: vec!["v1".into()],
                client_config: client_config.clone(),
                rules: Some(vec![
                    rule(
                        &[""],
                        &["pods", "replicationcontrollers", "services"],
                        &["CREATE", "UPDATE"],
                        "Namespaced",
                    ),
                    // Enclave's names (`enclave-*`) are kept free for what it publishes there.
                    rule(&[""], &["configmaps", "secrets"], &["CREATE"], "Namespaced"),
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
                namespace_selector: Some(tenant_namespaces(operator_namespace)),
                object_selector: Some(LabelSelector::default()),
                match_conditions: Some(vec![not_trusted.clone()]),
                failure_policy: Some("Fail".into()),
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(5),
                match_policy: Some("Equivalent".into()),
            },
            ValidatingWebhook {
                name: WEBHOOKS[2].into(),
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
                name: WEBHOOKS[3].into(),
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

/// The operator and the system controllers never reach the guard: the API server skips the
/// call, so their work goes on while the guard is down.
fn not_trusted(guard: &Guard) -> MatchCondition {
    let trusted: Vec<String> = guard
        .operator_users
        .iter()
        .chain(&guard.exempt_users)
        .map(|u| format!("'{u}'"))
        .collect();
    MatchCondition {
        name: "not-the-operator-or-system-controllers".into(),
        expression: format!("!(request.userInfo.username in [{}])", trusted.join(", ")),
    }
}

/// The tenants' namespaces (Enclave's label), never kube-system nor the operator's own.
fn tenant_namespaces(operator_namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(vec!["kube-system".into(), operator_namespace.to_string()]),
        }]),
    }
}

/// The names of the guard's mutating webhooks, in the order of [`mutating_configuration`].
pub const MUTATING_WEBHOOKS: [&str; 1] = ["ingress-firewall.guard.enclave.dev"];

/// The mutating webhook configuration (named like the validating one): the tenant's firewall
/// set on its Ingresses as they are created or changed, at [`MUTATE_PATH`]. Fails closed, like
/// the other rules of tenant namespaces: no Ingress of a tenant is admitted without its
/// firewall. Reinvoked when a later mutating webhook changes the object.
#[must_use]
pub fn mutating_configuration(
    client_config: WebhookClientConfig,
    ca_pem: &str,
    guard: &Guard,
    operator_namespace: &str,
) -> MutatingWebhookConfiguration {
    let mut client_config = WebhookClientConfig {
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
        ..client_config
    };
    if let Some(service) = &mut client_config.service {
        service.path = Some(MUTATE_PATH.into());
    }
    if let Some(url) = &mut client_config.url {
        *url = format!("{}{MUTATE_PATH}", url.strip_suffix(PATH).unwrap_or(url));
    }
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(WEBHOOK_CONFIGURATION.into()),
            labels: Some([(labels::MANAGED_BY.to_string(), MANAGER.to_string())].into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: MUTATING_WEBHOOKS[0].into(),
            admission_review_versions: vec!["v1".into()],
            client_config,
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["networking.k8s.io".into()]),
                api_versions: Some(vec!["*".into()]),
                resources: Some(vec!["ingresses".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                scope: Some("Namespaced".into()),
            }]),
            namespace_selector: Some(tenant_namespaces(operator_namespace)),
            object_selector: Some(LabelSelector::default()),
            match_conditions: Some(vec![not_trusted(guard)]),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            match_policy: Some("Equivalent".into()),
            reinvocation_policy: Some("IfNeeded".into()),
        }]),
    }
}

/// Applies one of the guard's webhook configurations, made whole by this replica.
pub(super) async fn apply_configuration<K>(
    client: &kube::Client,
    writer: &crate::cluster::Writer<'_>,
    desired: &K,
) -> crate::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned + serde::Serialize,
{
    let kind = K::kind(&()).to_string();
    let live = kube::Api::<K>::all(client.clone())
        .get_opt(WEBHOOK_CONFIGURATION)
        .await
        .map_err(crate::error::api(
            crate::error::Phase::Start,
            "get",
            &kind,
            WEBHOOK_CONFIGURATION,
        ))?;
    writer.apply(desired, live.as_ref()).await?;
    Ok(())
}
