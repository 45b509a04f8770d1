//! Certificates of the local control plane, made with rcgen: one CA, the API server's serving
//! certificate, and a client certificate per component and user.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate and its key, written as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The local cluster's certificate authority.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_file: PathBuf,
    dir: PathBuf,
}

impl Authority {
    /// A new CA, written to `dir/ca.crt`.
    ///
    /// # Errors
    /// When key generation or writing fails.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "enclave-local-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, issuer.pem())?;
        Ok(Self {
            issuer,
            ca_file,
            dir: dir.to_path_buf(),
        })
    }

    /// A serving certificate for `names` (DNS names or IP addresses).
    ///
    /// # Errors
    /// When signing or writing fails.
    pub fn serving(&self, file: &str, names: &[&str]) -> anyhow::Result<CertFiles> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(file, &params)
    }

    /// A client certificate for user `user` in `groups`.
    ///
    /// # Errors
    /// When signing or writing fails.
    pub fn client(&self, file: &str, user: &str, groups: &[&str]) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(file, &params)
    }

    fn sign(&self, file: &str, params: &CertificateParams) -> anyhow::Result<CertFiles> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// The service-account signing key pair: `(private, public)` PEM files.
///
/// # Errors
/// When key generation or writing fails.
pub fn service_account_keys(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let private = dir.join("sa.key");
    let public = dir.join("sa.pub");
    std::fs::write(&private, key.serialize_pem())?;
    std::fs::write(&public, key.public_key_pem())?;
    Ok((private, public))
}
