//! The objects that carry a tenant's TLS: the CA Secret in the operator's namespace, the
//! serving certificate's Secret in each internet-facing zone, and in every zone the CA bundle
//! and the TLS policy as ConfigMaps.

use crate::desired::Identity;
use crate::pki::{Pem, Policy, TLS12_OPENSSL};
use enclave_crds::{Exposure, Tenant};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet};

/// Name of the serving certificate's Secret (`kubernetes.io/tls`) in each internet-facing zone.
pub const SERVING_SECRET: &str = "enclave-tls";
/// Name of the CA bundle ConfigMap (`ca.crt`) in every zone.
pub const BUNDLE: &str = "enclave-ca-bundle";
/// Name of the TLS policy ConfigMap in every zone.
pub const POLICY: &str = "enclave-tls-policy";
/// Where workloads of a zone holding the certificate find it.
pub const MOUNT_PATH: &str = "/etc/enclave/tls";
/// Pod template annotation naming the certificate's serial: a new certificate rolls the pods
/// that mount it, one at a time.
pub const SERIAL_ANNOTATION: &str = "enclave.dev/certificate-serial";
/// Entry of the CA Secret keeping the previous CA during a rotation.
pub const PREVIOUS_CA: &str = "previous.crt";

/// The name of the tenant's CA Secret in the operator's namespace.
#[must_use]
pub fn ca_secret_name(tenant: &str) -> String {
    format!("enclave-ca-{tenant}")
}

/// The zones holding the serving certificate: the internet-facing ones, or the first zone
/// when none faces the internet.
#[must_use]
pub fn serving_zones(tenant: &Tenant) -> Vec<String> {
    let internet: Vec<String> = tenant
        .spec
        .zones
        .iter()
        .filter(|z| z.exposure == Exposure::Internet)
        .map(|z| z.name.clone())
        .collect();
    if internet.is_empty() {
        tenant
            .spec
            .zones
            .first()
            .map(|z| vec![z.name.clone()])
            .unwrap_or_default()
    } else {
        internet
    }
}

/// The names the serving certificate covers: `spec.tls.dnsNames` and the in-cluster names of
/// the Services of workloads in the serving zones.
#[must_use]
pub fn dns_names(tenant: &Tenant, cluster_domain: &str) -> BTreeSet<String> {
    let zones = serving_zones(tenant);
    let mut names: BTreeSet<String> = tenant
        .spec
        .tls
        .iter()
        .flat_map(|t| t.dns_names.iter().cloned())
        .collect();
    for workload in tenant
        .spec
        .workloads
        .iter()
        .filter(|w| !w.ports.is_empty() && zones.contains(&w.zone))
    {
        let namespace = tenant.zone_namespace(&workload.zone);
        names.insert(format!("{}.{namespace}.svc", workload.name));
        names.insert(format!(
            "{}.{namespace}.svc.{cluster_domain}",
            workload.name
        ));
    }
    names
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

/// Every TLS object the operator keeps for a tenant: what the applier applies, and sweeps once
/// `spec.tls` no longer asks for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsObjects {
    /// The TLS policy, in every zone (published with or without `spec.tls`).
    pub policies: Vec<ConfigMap>,
    /// The CA bundle, in every zone.
    pub bundles: Vec<ConfigMap>,
    /// The CA (operator's namespace) and the serving certificates (serving zones) of the
    /// built-in issuer.
    pub secrets: Vec<Secret>,
    /// cert-manager `Certificate`s, as JSON (the kind is not compiled in).
    pub certificates: Vec<serde_json::Value>,
    /// Secrets written by cert-manager for those Certificates, `(namespace, name)`: kept, not
    /// applied.
    pub issued_elsewhere: Vec<(String, String)>,
}

impl TlsObjects {
    /// Adds `other`'s objects to these.
    pub fn merge(&mut self, other: TlsObjects) {
        let TlsObjects {
            policies,
            bundles,
            secrets,
            certificates,
            issued_elsewhere,
        } = other;
        self.policies.extend(policies);
        self.bundles.extend(bundles);
        self.secrets.extend(secrets);
        self.certificates.extend(certificates);
        self.issued_elsewhere.extend(issued_elsewhere);
    }
}

/// The cert-manager `Certificate` of the serving zone `zone`, issued by `spec.issuer` for
/// `names` into the Secret [`SERVING_SECRET`]; `None` without an issuer.
#[must_use]
pub fn certificate(
    tenant: &Tenant,
    identity: &Identity,
    zone: &str,
    spec: &enclave_crds::Tls,
    names: &[String],
) -> Option<serde_json::Value> {
    use enclave_crds::{IssuerKind, KeyAlgorithm};
    let issuer = spec.issuer.as_ref()?;
    let kind = match issuer.kind {
        IssuerKind::Issuer => "Issuer",
        IssuerKind::ClusterIssuer => "ClusterIssuer",
    };
    let (algorithm, size) = match spec.key_algorithm {
        KeyAlgorithm::EcdsaP256 => ("ECDSA", 256),
        KeyAlgorithm::Rsa2048 => ("RSA", 2048),
        KeyAlgorithm::Rsa3072 => ("RSA", 3072),
        KeyAlgorithm::Rsa4096 => ("RSA", 4096),
    };
    let meta = identity.zone_object(tenant, zone, SERVING_SECRET);
    let mut certificate_spec = serde_json::json!({
        "secretName": SERVING_SECRET,
        "dnsNames": names,
        "duration": go_duration(&spec.duration),
        "privateKey": {"algorithm": algorithm, "size": size, "rotationPolicy": "Always"},
        "issuerRef": {"name": issuer.name, "kind": kind, "group": "cert-manager.io"},
        // The tenant's uid and the TLS part, not Enclave's managed-by label: cert-manager must
        // be free to write the Secret, which the guard would refuse on managed objects.
        "secretTemplate": {"labels": {crate::labels::TENANT_UID: identity.uid, PART: PART_TLS}},
    });
    if let Some(renew) = &spec.renew_before {
        certificate_spec["renewBefore"] = serde_json::json!(go_duration(renew));
    }
    Some(serde_json::json!({
        "metadata": {"name": SERVING_SECRET, "namespace": meta.namespace, "labels": meta.labels, "ownerReferences": meta.owner_references},
        "spec": certificate_spec,
    }))
}

/// A duration as Go (and so cert-manager) reads it: days become seconds.
fn go_duration(text: &str) -> String {
    enclave_crds::duration::parse(text)
        .map_or_else(|| text.to_string(), |d| format!("{}s", d.as_secs()))
}

/// The cert-manager `Certificate` kind, which is not compiled in.
#[must_use]
pub fn certificate_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

/// Label telling a TLS Secret (swept with `spec.tls`) from a key Secret (kept until the purge).
pub const PART: &str = "enclave.dev/part";
/// Value of [`PART`] on TLS Secrets.
pub const PART_TLS: &str = "tls";

fn tls_labels(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.insert(PART.into(), PART_TLS.into());
    labels
}

/// The CA Secret, in the operator's namespace (the protected zone), never the tenant's.
#[must_use]
pub fn ca_secret(identity: &Identity, namespace: &str, ca: &Pem, previous: Option<&str>) -> Secret {
    let mut data = BTreeMap::from([
        ("tls.crt".to_string(), bytes(&ca.cert)),
        ("tls.key".to_string(), bytes(&ca.key)),
    ]);
    if let Some(previous) = previous {
        data.insert(PREVIOUS_CA.into(), bytes(previous));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(ca_secret_name(&identity.name)),
            namespace: Some(namespace.into()),
            labels: Some(tls_labels(identity.labels())),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The serving certificate's Secret in `zone`, with the CA bundle as `ca.crt`.
#[must_use]
pub fn serving_secret(
    tenant: &Tenant,
    identity: &Identity,
    zone: &str,
    serving: &Pem,
    bundle: &str,
) -> Secret {
    let mut metadata = identity.zone_object(tenant, zone, SERVING_SECRET);
    metadata.labels = metadata.labels.map(tls_labels);
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), bytes(&serving.cert)),
            ("tls.key".to_string(), bytes(&serving.key)),
            ("ca.crt".to_string(), bytes(bundle)),
        ])),
        ..Secret::default()
    }
}

/// The CA bundle in every zone: what clients of the tenant's services trust.
#[must_use]
pub fn bundles(tenant: &Tenant, identity: &Identity, bundle: &str) -> Vec<ConfigMap> {
    let data = BTreeMap::from([("ca.crt".to_string(), bundle.to_string())]);
    super::per_zone_config_maps(tenant, identity, BUNDLE, &data)
}

/// The TLS policy in every zone, for front services and ingress controllers to read.
#[must_use]
pub fn policies(tenant: &Tenant, identity: &Identity, policy: Policy) -> Vec<ConfigMap> {
    let min = match policy.min_version {
        enclave_crds::TlsVersion::Tls12 => "TLSv1.2",
        enclave_crds::TlsVersion::Tls13 => "TLSv1.3",
    };
    let ingress = format!(
        "nginx.ingress.kubernetes.io/ssl-redirect: \"true\"\nnginx.ingress.kubernetes.io/force-ssl-redirect: \"true\"\nnginx.ingress.kubernetes.io/ssl-ciphers: \"{TLS12_OPENSSL}\"\nnginx.ingress.kubernetes.io/ssl-prefer-server-ciphers: \"true\"\n"
    );
    let data = BTreeMap::from([
        ("minVersion".to_string(), min.to_string()),
        ("protocols".to_string(), policy.protocols().to_string()),
        ("cipherSuites".to_string(), policy.suites().join(",")),
        ("opensslCiphers".to_string(), TLS12_OPENSSL.to_string()),
        ("hstsMaxAgeSeconds".to_string(), "31536000".to_string()),
        ("ingressAnnotations".to_string(), ingress),
    ]);
    super::per_zone_config_maps(tenant, identity, POLICY, &data)
}

/// The certificate and key a Secret holds, if readable text.
#[must_use]
pub fn pem_of(secret: &Secret) -> Option<Pem> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Pem {
        cert: text("tls.crt")?,
        key: text("tls.key")?,
    })
}

/// The previous CA a CA Secret keeps, if any.
#[must_use]
pub fn previous_of(secret: &Secret) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(PREVIOUS_CA)?.0.clone()).ok()
}
