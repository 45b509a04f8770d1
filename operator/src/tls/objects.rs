//! The objects that carry a tenant's TLS: the CA Secret in the operator's namespace, the
//! serving certificate's Secret in each internet-facing zone, and in every zone the CA bundle
//! and the TLS policy as ConfigMaps.

use super::{Pem, Policy, TLS12_OPENSSL};
use crate::build::Identity;
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
            labels: Some(identity.labels()),
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
    Secret {
        metadata: identity.zone_object(tenant, zone, SERVING_SECRET),
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
    tenant
        .spec
        .zones
        .iter()
        .map(|z| ConfigMap {
            metadata: identity.zone_object(tenant, &z.name, BUNDLE),
            data: Some(BTreeMap::from([("ca.crt".to_string(), bundle.to_string())])),
            ..ConfigMap::default()
        })
        .collect()
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
    tenant
        .spec
        .zones
        .iter()
        .map(|z| ConfigMap {
            metadata: identity.zone_object(tenant, &z.name, POLICY),
            data: Some(data.clone()),
            ..ConfigMap::default()
        })
        .collect()
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
