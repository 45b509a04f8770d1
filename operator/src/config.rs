//! The operator's configuration: what the platform team decides for every tenant.

use std::collections::BTreeMap;
use std::time::Duration;

/// Settings of one operator process.
#[derive(Clone, Debug)]
pub struct Config {
    /// Tenants reconciled at once; kube-runtime's default is unbounded.
    pub concurrency: u16,
    /// How often a settled tenant is looked at again, to catch what no watch reports.
    pub resync: Duration,
    /// How soon a tenant waiting on the cluster (a terminating namespace) is looked at again.
    pub poll: Duration,
    /// Name reported as the source of Events.
    pub reporter: String,
    /// Network settings of every tenant.
    pub network: NetworkConfig,
    /// Default images, by key: a workload's `image: default:<key>` runs the image here, so
    /// changing an entry rolls every tenant that uses it (R7).
    pub images: BTreeMap<String, String>,
    /// Storage profiles, by name: how a volume's replicas and encryption become StorageClass
    /// parameters (R8, R9).
    pub storage_profiles: BTreeMap<String, StorageProfile>,
    /// The operator's own namespace (the protected zone): where encryption keys are kept.
    pub namespace: String,
    /// The built-in certificate authorities.
    pub tls: TlsConfig,
    /// The backup Jobs.
    pub backup: BackupConfig,
    /// The CA of the operator's own endpoint (the guard's), published to the backup pods so
    /// they can trust it; `None` when the guard is off.
    pub operator_ca: Option<String>,
    /// Where backup pods reach the credentials broker, from the guard's settings, unless
    /// `backup.credentialsUrl` says otherwise.
    pub broker_url: Option<String>,
    /// How incidents reach people beyond the Tenant's Events and metrics.
    pub notifications: NotificationsConfig,
}

/// How incidents (R14) reach the tenants' contacts and the platform team.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsConfig {
    /// A URL (`http://` or `https://`) receiving each incident as JSON in a POST when it opens
    /// and when it resolves; an incident's `notifiedAt` is when the receiver accepted it (any
    /// 2xx). Unset: incidents are announced by the Tenant's Events and metrics alone.
    pub webhook_url: Option<String>,
    /// A PEM CA bundle the receiver's certificate must chain to; unset: the public web PKI.
    pub webhook_ca: Option<String>,
    /// Keep an `AlertmanagerConfig` per tenant in the operator's namespace (when
    /// prometheus-operator's CRD is served) that routes alerts labelled with the tenant to its
    /// security and operations contacts by e-mail.
    pub alertmanager_config: bool,
    /// How long a workload may run short of N+1, a volume wait for its binding or a
    /// certificate for its issuer before it is an incident (`3m`): a replaced pod or a tenant
    /// being set up opens none. Broken isolation and failing backups open one at once.
    pub incident_grace: String,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_ca: None,
            alertmanager_config: true,
            incident_grace: "3m".into(),
        }
    }
}

impl NotificationsConfig {
    /// The incident grace; the default when it does not parse (the file's loader refuses that).
    #[must_use]
    pub fn incident_grace(&self) -> Duration {
        enclave_crds::duration::parse(&self.incident_grace)
            .unwrap_or(crate::status::incidents::DEGRADED_GRACE)
    }
}

/// What the backup Jobs run, and where they fetch their credentials.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupConfig {
    /// The restic image.
    pub image: String,
    /// The image of the operator, whose `credentials` command fetches the repository password
    /// and the store's credentials.
    pub credentials_image: String,
    /// The operator's credentials endpoint as the backup pods reach it; by default the
    /// guard's Service (or URL) at `/credentials`.
    pub credentials_url: Option<String>,
    /// Where the object store is, as the backup pods' egress policy opens it: CIDRs (by
    /// default anywhere, `0.0.0.0/0`; name the store's own range to close the rest) and port.
    pub store_cidrs: Vec<String>,
    /// The object store's port (443).
    pub store_port: i32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            image: "docker.io/restic/restic:0.19.1".into(),
            credentials_image: concat!(
                "ghcr.io/enclave-dev/enclave-operator:",
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            credentials_url: None,
            store_cidrs: vec!["0.0.0.0/0".into()],
            store_port: 443,
        }
    }
}

/// Settings of the built-in issuer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Validity of each tenant's CA (such as `43800h`, the default: 5 years); it rotates once
    /// two thirds have passed, both CAs trusted until the old one expires.
    pub ca_validity: String,
    /// The cluster's DNS domain, for the in-cluster names of Services.
    pub cluster_domain: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_validity: "43800h".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl TlsConfig {
    /// The CA validity; the default when it does not parse (the file's loader refuses that).
    #[must_use]
    pub fn ca_validity(&self) -> Duration {
        enclave_crds::duration::parse(&self.ca_validity)
            .unwrap_or(Duration::from_secs(5 * 365 * 86_400))
    }
}

/// How one provisioner is asked for replicas and encryption. See `docs/storage-profiles.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageProfile {
    /// The CSI driver (`StorageClass.provisioner`).
    pub provisioner: String,
    /// Which parameter carries the replica count.
    pub replicas: ReplicasParameter,
    /// Fixed extra StorageClass parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// How an encrypted volume's class differs; `None` when the provisioner cannot encrypt.
    #[serde(default)]
    pub encryption: Option<EncryptionParameters>,
}

/// The StorageClass parameter carrying the replica count.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicasParameter {
    /// Parameter name (such as Longhorn's `numberOfReplicas`).
    pub parameter: String,
    /// Value template; `{replicas}` is replaced by the count. Default `{replicas}`.
    #[serde(default = "replicas_template")]
    pub value: String,
}

fn replicas_template() -> String {
    "{replicas}".into()
}

/// What makes a class encrypt, and where its per-tenant key is found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionParameters {
    /// Parameters added to an encrypted class (such as `encrypted: "true"`).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// CSI secret parameter prefixes (such as `csi.storage.k8s.io/node-stage-secret`): each
    /// gets `<prefix>-name` and `<prefix>-namespace` pointing at the key Secret of the claim's
    /// namespace, kept in the operator's namespace.
    #[serde(default)]
    pub key_secret_parameters: Vec<String>,
    /// Entry of the key Secret holding the generated key.
    #[serde(default = "key_field")]
    pub key_field: String,
    /// Fixed extra entries of every key Secret (such as `CRYPTO_KEY_PROVIDER: secret`).
    #[serde(default)]
    pub secret_data: BTreeMap<String, String>,
}

fn key_field() -> String {
    "CRYPTO_KEY_VALUE".into()
}

/// Where the cluster's shared network services are, and what may face the internet.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkConfig {
    /// The cluster DNS: namespace labels and pod labels every zone may reach on port 53.
    pub dns: PeerSelector,
    /// The ingress controller: namespace labels of what may reach internet-facing zones.
    pub ingress_controller: PeerSelector,
    /// Ports an internet-facing zone may open (R17): by default the services the policy
    /// names (HTTP(S), SMTP(S), IMAP(S), POP3(S)).
    pub internet_ports: Vec<i32>,
    /// Namespaces no tenant zone may be named (`<tenant>-<zone>`), besides those the DNS and
    /// ingress selectors name: the platform's own. A tenant zone named like the ingress
    /// controller's namespace would be let into every internet-facing zone.
    pub reserved_namespaces: Vec<String>,
    /// The cluster's pod and Service ranges, left out (`except`) of every ipBlock Enclave
    /// writes, so that no CIDR rule reaches another tenant's pods under a network plugin that
    /// matches ipBlocks against pod addresses; a tenant CIDR inside one of them is refused. By
    /// default every private range (RFC 1918, shared address space, IPv6 unique local): name
    /// your cluster's own to let tenants reach private third parties. See the README for how to
    /// find them.
    pub cluster_cidrs: Vec<String>,
    /// How the shared ingress controller is told each tenant's firewall: the annotations it
    /// reads on an Ingress (ingress-nginx's by default). `null` for a controller without them.
    pub ingress_firewall: Option<IngressFirewall>,
}

/// The Ingress annotations through which an ingress controller filters client addresses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressFirewall {
    /// Annotation holding the allowed source ranges, comma-separated
    /// (`nginx.ingress.kubernetes.io/whitelist-source-range`).
    pub allow_annotation: String,
    /// Annotation holding the denied source ranges, comma-separated
    /// (`nginx.ingress.kubernetes.io/denylist-source-range`).
    pub deny_annotation: String,
    /// The IngressClass of the controller that reads them (`nginx`): a tenant's Ingress
    /// without a class is given it, and one naming another class is refused, since another
    /// controller would serve it without the filter. `null` leaves classes alone.
    #[serde(default = "nginx_class")]
    pub ingress_class: Option<String>,
}

#[allow(clippy::unnecessary_wraps)] // serde's default for an optional field
fn nginx_class() -> Option<String> {
    Some("nginx".into())
}

impl Default for IngressFirewall {
    fn default() -> Self {
        Self {
            allow_annotation: "nginx.ingress.kubernetes.io/whitelist-source-range".into(),
            deny_annotation: "nginx.ingress.kubernetes.io/denylist-source-range".into(),
            ingress_class: nginx_class(),
        }
    }
}

/// The private address ranges: the default of `network.clusterCidrs`.
pub const PRIVATE_RANGES: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// Namespace and pod labels that select peers outside the tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerSelector {
    /// Labels of the peer's namespace.
    pub namespace_labels: BTreeMap<String, String>,
    /// Labels of the peer's pods; empty: every pod of the namespace.
    pub pod_labels: BTreeMap<String, String>,
}

impl PeerSelector {
    fn of(namespace: &[(&str, &str)], pods: &[(&str, &str)]) -> Self {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        Self {
            namespace_labels: map(namespace),
            pod_labels: map(pods),
        }
    }
}

/// Ports the policy names for internet-facing services: HTTP, HTTPS, SMTP, SMTPS,
/// submission, IMAP, IMAPS, POP3, POP3S.
pub const DEFAULT_INTERNET_PORTS: [i32; 9] = [80, 443, 25, 465, 587, 143, 993, 110, 995];

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            dns: PeerSelector::of(
                &[("kubernetes.io/metadata.name", "kube-system")],
                &[("k8s-app", "kube-dns")],
            ),
            ingress_controller: PeerSelector::of(
                &[("kubernetes.io/metadata.name", "ingress-nginx")],
                &[],
            ),
            internet_ports: DEFAULT_INTERNET_PORTS.to_vec(),
            reserved_namespaces: [
                "default",
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "ingress-nginx",
                "cert-manager",
                "enclave-system",
                "monitoring",
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
            cluster_cidrs: PRIVATE_RANGES.iter().map(ToString::to_string).collect(),
            ingress_firewall: Some(IngressFirewall::default()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 8,
            resync: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            reporter: crate::labels::MANAGER.to_string(),
            network: NetworkConfig::default(),
            images: BTreeMap::new(),
            storage_profiles: BTreeMap::new(),
            namespace: "enclave-system".into(),
            tls: TlsConfig::default(),
            backup: BackupConfig::default(),
            operator_ca: None,
            broker_url: None,
            notifications: NotificationsConfig::default(),
        }
    }
}

/// The operator's configuration file (`--config`): what the platform team sets for every
/// tenant. Every field is optional; see `examples/operator-config.yaml`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Network settings.
    pub network: NetworkConfig,
    /// Default images, by key (`image: default:<key>` in a workload).
    pub images: BTreeMap<String, String>,
    /// Storage profiles, by name (a volume's `profile`).
    pub storage_profiles: BTreeMap<String, StorageProfile>,
    /// The built-in issuer.
    pub tls: TlsConfig,
    /// The backup Jobs.
    pub backup: BackupConfig,
    /// Incident notifications.
    pub notifications: NotificationsConfig,
}

impl ConfigFile {
    /// `base` with the settings of this file.
    #[must_use]
    pub fn apply_to(self, base: &Config) -> Config {
        Config {
            network: self.network,
            images: self.images,
            storage_profiles: self.storage_profiles,
            tls: self.tls,
            backup: self.backup,
            notifications: self.notifications,
            ..base.clone()
        }
    }

    /// Parses the YAML of a configuration file.
    ///
    /// # Errors
    /// When it is not valid YAML or names a field that does not exist.
    pub fn parse(yaml: &str) -> Result<Self, serde_yaml::Error> {
        let file: Self = serde_yaml::from_str(yaml)?;
        let invalid = |message: String| <serde_yaml::Error as serde::de::Error>::custom(message);
        let not_network =
            |c: &&String| crate::desired::cidr::Cidr::parse(c).is_none_or(|c| !c.is_network());
        for (field, list) in [
            ("network.clusterCidrs", &file.network.cluster_cidrs),
            ("backup.storeCidrs", &file.backup.store_cidrs),
        ] {
            if let Some(bad) = list.iter().find(not_network) {
                return Err(invalid(format!(
                    "{field}: {bad:?} is not a network such as 10.244.0.0/16 (no host bits, IPv4 written as IPv4)"
                )));
            }
        }
        if let Some(keys) = &file.network.ingress_firewall {
            let qualified = |key: &str| {
                let name = key.rsplit('/').next().unwrap_or_default();
                !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && key.split('/').count() <= 2
            };
            if keys.allow_annotation == keys.deny_annotation
                || !qualified(&keys.allow_annotation)
                || !qualified(&keys.deny_annotation)
            {
                return Err(invalid(format!(
                    "network.ingressFirewall: {:?} and {:?} must be two different annotation names",
                    keys.allow_annotation, keys.deny_annotation
                )));
            }
        }
        if let Some(url) = &file.notifications.webhook_url
            && !url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            })
        {
            return Err(invalid(format!(
                "notifications.webhookUrl: {url:?} is not an http:// or https:// URL"
            )));
        }
        if enclave_crds::duration::parse(&file.notifications.incident_grace).is_none() {
            return Err(invalid(format!(
                "notifications.incidentGrace: {:?} is not a duration such as 3m",
                file.notifications.incident_grace
            )));
        }
        if enclave_crds::duration::parse(&file.tls.ca_validity).is_none() {
            return Err(<serde_yaml::Error as serde::de::Error>::custom(format!(
                "tls.caValidity: {:?} is not a duration such as 43800h",
                file.tls.ca_validity
            )));
        }
        Ok(file)
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path} is not a valid configuration: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: serde_yaml::Error,
    },
}

/// `base` with the settings of the file at `path`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn load(path: &std::path::Path, base: &Config) -> Result<(Config, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file = ConfigFile::parse(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    Ok((file.apply_to(base), text))
}

/// Loads the file at `path`, then looks at it every `every`: when its content changes and
/// parses, the receiver gets the new configuration (and the controller re-reconciles every
/// tenant). A file that no longer parses is logged and the configuration in force stands.
/// A mounted ConfigMap is replaced by a symlink swap, which a content comparison sees.
///
/// # Errors
/// When the file cannot be read or parsed at start.
pub fn watch_file(
    path: std::path::PathBuf,
    base: Config,
    every: Duration,
) -> Result<tokio::sync::watch::Receiver<Config>, ConfigError> {
    let (config, mut text) = load(&path, &base)?;
    let (sender, receiver) = tokio::sync::watch::channel(config);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            if sender.is_closed() {
                return;
            }
            match load(&path, &base) {
                Ok((_, new_text)) if new_text == text => {}
                Ok((config, new_text)) => {
                    tracing::info!(path = %path.display(), "configuration reloaded");
                    text = new_text;
                    let _ = sender.send(config);
                }
                Err(error) => {
                    tracing::warn!(%error, "configuration not reloaded: keeping the one in force");
                }
            }
        }
    });
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configuration_parses() {
        let file = ConfigFile::parse(include_str!("../../examples/operator-config.yaml"))
            .expect("example parses");
        assert_eq!(file.network.dns.pod_labels["k8s-app"], "kube-dns");
        assert_eq!(
            file.network.ingress_controller.namespace_labels["kubernetes.io/metadata.name"],
            "ingress-nginx"
        );
        assert!(
            file.network.internet_ports.contains(&8443),
            "the example widens the allowed set"
        );
    }

    #[test]
    fn missing_fields_take_defaults_and_unknown_ones_are_refused() {
        let file = ConfigFile::parse("network: {internetPorts: [443]}").expect("parses");
        assert_eq!(file.network.internet_ports, [443]);
        assert_eq!(file.network.dns, NetworkConfig::default().dns);
        assert!(ConfigFile::parse("network: {dnss: {}}").is_err());
    }

    #[test]
    fn cluster_ranges_must_be_cidrs_and_the_ingress_firewall_may_be_off() {
        let error = ConfigFile::parse("network: {clusterCidrs: [10.244.0.0/16, pods]}")
            .expect_err("not a CIDR");
        assert!(
            error.to_string().contains("network.clusterCidrs"),
            "{error}"
        );
        let file =
            ConfigFile::parse("network: {clusterCidrs: [10.244.0.0/16], ingressFirewall: null}")
                .expect("parses");
        assert_eq!(file.network.cluster_cidrs, ["10.244.0.0/16"]);
        assert_eq!(file.network.ingress_firewall, None);
        for bad in [
            "network: {clusterCidrs: ['10.1.2.3/8']}",
            "network: {clusterCidrs: ['::ffff:10.0.0.0/104']}",
            "backup: {storeCidrs: ['203.0.113.9/24']}",
            "network: {ingressFirewall: {allowAnnotation: a/x, denyAnnotation: a/x}}",
            "network: {ingressFirewall: {allowAnnotation: '', denyAnnotation: a/x}}",
        ] {
            assert!(ConfigFile::parse(bad).is_err(), "{bad}");
        }
        let defaults = ConfigFile::parse("{}").expect("parses");
        assert_eq!(defaults.network.cluster_cidrs, PRIVATE_RANGES);
        assert!(defaults.network.ingress_firewall.is_some());
    }
}
