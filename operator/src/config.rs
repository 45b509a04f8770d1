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
}

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
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 8,
            resync: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            reporter: crate::build::MANAGER.to_string(),
            network: NetworkConfig::default(),
            images: BTreeMap::new(),
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
}

impl ConfigFile {
    /// Parses the YAML of a configuration file.
    ///
    /// # Errors
    /// When it is not valid YAML or names a field that does not exist.
    pub fn parse(yaml: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }
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
}
