//! The Helm chart (charts/enclave) in tests: rendered with the helm the project builds, and the
//! operator's identity taken from it. Every test binary runs the operator as the chart's
//! service account, with the chart's RBAC and webhook configuration only: a permission the
//! chart lacks fails the tests that need it.

use crate::controlplane::{built, repo_root};
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The release name the tests install the chart under: its objects are named `enclave`.
pub const RELEASE: &str = "enclave";
/// The chart's ValidatingWebhookConfiguration (the release's full name).
pub const WEBHOOK_CONFIGURATION: &str = "enclave";
/// The Secret the chart's operator keeps its serving certificate in.
pub const CERTIFICATE_SECRET: &str = "enclave-webhook-tls";
/// The chart's service account (the release's full name).
pub const SERVICE_ACCOUNT: &str = "enclave";

/// helm: `$ENCLAVE_HELM_DIR/bin/helm`, or what `hack/build-helm.sh` builds.
///
/// # Errors
/// When the build fails.
pub fn helm() -> anyhow::Result<PathBuf> {
    Ok(built("ENCLAVE_HELM_DIR", "hack/build-helm.sh")?.join("bin/helm"))
}

/// The chart's directory.
#[must_use]
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/enclave")
}

/// `helm template` of the chart into `namespace` with `--set` values `set`, only the templates
/// in `show_only` when any.
///
/// # Errors
/// When helm fails.
pub fn render(namespace: &str, set: &[&str], show_only: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(helm()?);
    cmd.args(["template", RELEASE]).arg(chart_dir()).args([
        "--namespace",
        namespace,
        "--kube-version",
        "1.37.2",
    ]);
    for value in set {
        cmd.args(["--set", value]);
    }
    for template in show_only {
        cmd.args(["--show-only", &format!("templates/{template}")]);
    }
    let out = cmd.output().context("running helm")?;
    if !out.status.success() {
        bail!("helm template: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `kubectl apply --server-side -f -` of `yaml`.
///
/// # Errors
/// When kubectl refuses it.
pub fn apply(kubectl: &Path, kubeconfig: &Path, yaml: &str) -> anyhow::Result<String> {
    apply_with(kubectl, kubeconfig, yaml, &["--force-conflicts"])
}

/// `kubectl apply --server-side -f -` of `yaml` with the further flags `flags`
/// (`--dry-run=server`).
///
/// # Errors
/// When kubectl refuses it.
pub fn apply_with(
    kubectl: &Path,
    kubeconfig: &Path,
    yaml: &str,
    flags: &[&str],
) -> anyhow::Result<String> {
    let mut child = Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["apply", "--server-side", "-f", "-"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The user name the API server knows the chart's operator by.
#[must_use]
pub fn operator_user(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}")
}

/// Installs the chart's service account, RBAC (and the admission policy that narrows it) and
/// webhook configuration (calling the guard at
/// `guard_url`, an operator outside the cluster) into `namespace`, and writes a kubeconfig
/// that acts as that service account, with a token from the TokenRequest API. Returns its
/// path.
///
/// # Errors
/// When helm or kubectl fails.
pub fn operator_identity(
    kubectl: &Path,
    kubeconfig: &Path,
    namespace: &str,
    guard_url: &str,
) -> anyhow::Result<PathBuf> {
    let url = format!("webhook.url={guard_url}");
    let objects = render(
        namespace,
        &[&url],
        &[
            "serviceaccount.yaml",
            "rbac.yaml",
            "operator-policy.yaml",
            "webhook.yaml",
            "mutatingwebhook.yaml",
        ],
    )?;
    apply(kubectl, kubeconfig, &objects)?;
    token_kubeconfig(kubectl, kubeconfig, namespace, SERVICE_ACCOUNT)
}

/// A kubeconfig beside `kubeconfig`, for its cluster, acting as the service account
/// `namespace/account` with a token of a day from the TokenRequest API.
///
/// # Errors
/// When the token cannot be made or the kubeconfig read or written.
pub fn token_kubeconfig(
    kubectl: &Path,
    kubeconfig: &Path,
    namespace: &str,
    account: &str,
) -> anyhow::Result<PathBuf> {
    let token = crate::controlplane::kubectl_output(
        kubectl,
        kubeconfig,
        &[
            "create",
            "token",
            account,
            "-n",
            namespace,
            "--duration=24h",
        ],
    )?;
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    let user = serde_yaml::to_value(serde_json::json!([
        {"name": account, "user": {"token": token.trim()}}
    ]))?;
    let context_name = config["current-context"]
        .as_str()
        .context("current-context")?
        .to_string();
    if let Some(contexts) = config["contexts"].as_sequence_mut() {
        for context in contexts {
            if context["name"].as_str() == Some(&context_name) {
                context["context"]["user"] = account.into();
            }
        }
    }
    config["users"] = user;
    let path = kubeconfig.with_file_name(format!("{namespace}-{account}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}
