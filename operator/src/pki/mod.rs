//! TLS for every tenant (R1, R9): a CA per tenant, serving certificates it issues, when to
//! renew them, and the TLS policy front services apply. Pure: no client; the controller keeps
//! the results in Secrets and ConfigMaps (see `desired::tls`).

use enclave_crds::{KeyAlgorithm, TlsVersion};
use k8s_openapi::jiff::Timestamp;
use rcgen::PublicKeyData as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rsa::pkcs8::EncodePrivateKey as _;
use std::collections::BTreeSet;
use std::time::Duration;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why TLS material cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused to make a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// PEM or DER that does not parse.
    #[error("unreadable certificate: {0}")]
    Unreadable(String),
    /// No randomness, or an RSA key that could not be made.
    #[error("key generation failed: {0}")]
    Key(String),
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for Pem {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What a certificate says, as the operator needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: Timestamp,
    /// Expiry.
    pub not_after: Timestamp,
    /// DNS names (subject alternative names).
    pub dns_names: BTreeSet<String>,
    /// Issuer's distinguished name.
    pub issuer: String,
    /// Subject's distinguished name.
    pub subject: String,
    /// The subject's public key, as the bits of its `subjectPublicKeyInfo`.
    pub public_key: Vec<u8>,
}

/// Reads the first certificate of a PEM text.
///
/// # Errors
/// [`TlsError::Unreadable`] when it is not a certificate.
pub fn parse(pem: &str) -> Result<CertInfo, TlsError> {
    certificates(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Unreadable("no certificate".into()))
}

/// Reads every certificate of a PEM text (a CA bundle).
///
/// # Errors
/// [`TlsError::Unreadable`] when a block is not a certificate.
pub fn certificates(pem: &str) -> Result<Vec<CertInfo>, TlsError> {
    let mut out = Vec::new();
    for block in ::pem::parse_many(pem).map_err(|e| TlsError::Unreadable(e.to_string()))? {
        if block.tag() != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = X509Certificate::from_der(block.contents())
            .map_err(|e| TlsError::Unreadable(e.to_string()))?;
        out.push(info(&cert)?);
    }
    Ok(out)
}

fn info(cert: &X509Certificate<'_>) -> Result<CertInfo, TlsError> {
    let time =
        |t: i64| Timestamp::from_second(t).map_err(|e| TlsError::Unreadable(format!("time: {e}")));
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some((*name).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertInfo {
        serial: crate::units::hex(cert.raw_serial()),
        not_before: time(cert.validity().not_before.timestamp())?,
        not_after: time(cert.validity().not_after.timestamp())?,
        dns_names,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// True when `cert_pem` was signed by the key of `ca_pem`.
#[must_use]
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let der = |pem: &str| ::pem::parse(pem).ok().map(|p| p.contents().to_vec());
    let (Some(cert), Some(ca)) = (der(cert_pem), der(ca_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(&cert),
        X509Certificate::from_der(&ca),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// True when `key_pem` is the private key of `cert_pem`.
#[must_use]
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let (Ok(cert), Ok(key)) = (parse(cert_pem), KeyPair::from_pem(key_pem)) else {
        return false;
    };
    cert.public_key == key.der_bytes()
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| TlsError::Key(e.to_string()))?;
    // Positive, and never a leading zero byte: 127 random bits.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn offset(t: Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| TlsError::Unreadable(format!("time: {e}")))
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

/// A new self-signed CA for one tenant, valid `validity` from `now`. Its name carries the
/// tenant's, so one tenant's CA can never be mistaken for another's.
///
/// # Errors
/// When key generation or signing fails.
pub fn new_ca(tenant: &str, now: Timestamp, validity: Duration) -> Result<Pem, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Enclave");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("enclave tenant {tenant} CA"));
    // Signs serving certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    params.not_before = offset(now)?;
    params.not_after = offset(later(now, validity))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for `names`, signed by `ca`, valid `validity` from `now` but never
/// past the CA's own expiry.
///
/// # Errors
/// When the CA cannot be read, or key generation or signing fails.
pub fn issue(
    ca: &Pem,
    names: &[String],
    algorithm: KeyAlgorithm,
    now: Timestamp,
    validity: Duration,
) -> Result<Pem, TlsError> {
    let ca_info = parse(&ca.cert)?;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = offset(now)?;
    params.not_after = offset(later(now, validity).min(ca_info.not_after))?;
    let key = key_pair(algorithm)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn key_pair(algorithm: KeyAlgorithm) -> Result<KeyPair, TlsError> {
    let bits = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            return Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?);
        }
        KeyAlgorithm::Rsa2048 => 2048,
        KeyAlgorithm::Rsa3072 => 3072,
        KeyAlgorithm::Rsa4096 => 4096,
    };
    // ring signs with RSA keys but cannot make them: the RustCrypto `rsa` crate does.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &der.as_bytes().into(),
        &rcgen::PKCS_RSA_SHA256,
    )?)
}

/// When a certificate valid from `not_before` to `not_after` is renewed: `renew_before` its
/// expiry, or once two thirds of its lifetime have passed.
#[must_use]
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<Duration>,
) -> Timestamp {
    let lifetime = Duration::try_from(not_after.duration_since(not_before)).unwrap_or_default();
    let before = renew_before.unwrap_or(lifetime / 3).min(lifetime);
    not_after.checked_sub(before).unwrap_or(not_before)
}

/// Why a serving certificate must be (re-)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reissue {
    /// There is none.
    Missing,
    /// Its Secret does not hold a readable certificate and matching key (edited by hand).
    Unreadable,
    /// Not signed by the tenant's current CA (the CA rotated, or the Secret was replaced).
    ForeignIssuer,
    /// The names it must cover changed.
    NamesChanged,
    /// Its renewal time has come.
    Renewal,
}

impl Reissue {
    /// The Event reason and a phrase for people.
    #[must_use]
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Reissue::Missing => (
                "CertificateIssued",
                "no certificate yet, or its Secret was deleted",
            ),
            Reissue::Unreadable => (
                "CertificateReissued",
                "its Secret was edited: certificate or key unreadable or mismatched",
            ),
            Reissue::ForeignIssuer => (
                "CertificateReissued",
                "it was not signed by the tenant's current CA",
            ),
            Reissue::NamesChanged => ("CertificateReissued", "the names it must cover changed"),
            Reissue::Renewal => ("CertificateRenewed", "its renewal time has come"),
        }
    }
}

/// Checks a serving certificate (`cert`, `key` as found in its Secret) against the tenant's
/// current CA and the names it must cover, at `now`.
///
/// # Errors
/// The [`Reissue`] reason when it must be replaced.
pub fn check_leaf(
    found: Option<&Pem>,
    ca_cert: &str,
    names: &BTreeSet<String>,
    now: Timestamp,
    renew_before: Option<Duration>,
) -> Result<CertInfo, Reissue> {
    let found = found.ok_or(Reissue::Missing)?;
    let info = parse(&found.cert).map_err(|_| Reissue::Unreadable)?;
    if !key_matches(&found.cert, &found.key) {
        return Err(Reissue::Unreadable);
    }
    if !signed_by(&found.cert, ca_cert) {
        return Err(Reissue::ForeignIssuer);
    }
    if &info.dns_names != names {
        return Err(Reissue::NamesChanged);
    }
    if now >= renewal_time(info.not_before, info.not_after, renew_before) {
        return Err(Reissue::Renewal);
    }
    Ok(info)
}

/// What to do with the tenant's CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaPlan {
    /// It is good: keep it.
    Keep(CertInfo),
    /// None, or unreadable: make one.
    Create,
    /// Two thirds of its life have passed: make a new one and keep this one in the bundle
    /// until it expires, so certificates it signed stay trusted meanwhile.
    Rotate(CertInfo),
}

/// Plans the CA at `now`.
#[must_use]
pub fn plan_ca(found: Option<&Pem>, now: Timestamp) -> CaPlan {
    let Some(found) = found else {
        return CaPlan::Create;
    };
    let Ok(info) = parse(&found.cert) else {
        return CaPlan::Create;
    };
    if !key_matches(&found.cert, &found.key) || now >= info.not_after {
        return CaPlan::Create;
    }
    if now >= renewal_time(info.not_before, info.not_after, None) {
        CaPlan::Rotate(info)
    } else {
        CaPlan::Keep(info)
    }
}

/// The TLS policy the tenant's front services apply (R1): a minimum version and the cipher
/// suites the policy names (AES-GCM and ChaCha20-Poly1305, ECDHE key exchange only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Oldest version accepted.
    pub min_version: TlsVersion,
}

/// TLS 1.2 suites the policy allows, by their IANA names: ECDHE only, AEAD only.
pub const TLS12_SUITES: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];
/// The same suites by their OpenSSL names (nginx `ssl_ciphers`, `HAProxy` `ciphers`).
pub const TLS12_OPENSSL: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/// TLS 1.3 suites (all AEAD, all ephemeral key exchange).
pub const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

impl Policy {
    /// Protocol names as nginx and `OpenSSL` write them.
    #[must_use]
    pub fn protocols(self) -> &'static str {
        match self.min_version {
            TlsVersion::Tls12 => "TLSv1.2 TLSv1.3",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// The suites allowed, by IANA name.
    #[must_use]
    pub fn suites(self) -> Vec<&'static str> {
        let mut suites: Vec<&str> = TLS13_SUITES.to_vec();
        if self.min_version == TlsVersion::Tls12 {
            suites.extend(TLS12_SUITES);
        }
        suites
    }

    /// A rustls server configuration applying this policy with `serving`.
    ///
    /// # Errors
    /// When the certificate or key cannot be read.
    pub fn server_config(self, serving: &Pem) -> Result<rustls::ServerConfig, TlsError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let unreadable = |e: &dyn std::fmt::Display| TlsError::Unreadable(e.to_string());
        let certs = CertificateDer::pem_slice_iter(serving.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(serving.key.as_bytes()).map_err(|e| unreadable(&e))?;
        let mut provider = rustls::crypto::ring::default_provider();
        let allowed = self.suites();
        // rustls names TLS 1.3 suites `TLS13_*`; IANA names them `TLS_*`.
        provider.cipher_suites.retain(|s| {
            s.suite().as_str().is_some_and(|name| {
                allowed.contains(&str::replace(name, "TLS13_", "TLS_").as_str())
            })
        });
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(|e| unreadable(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| unreadable(&e))
    }
}

#[cfg(test)]
mod tests;
