//! cert-manager as the issuer, on the real control plane: without its CRDs a tenant naming a
//! cert-manager issuer gets a clear condition (and nothing crashes); once cert-manager's CRDs
//! are installed and its controller (built from its Go module) runs, the operator's
//! `Certificate` becomes Ready and the Tenant reports it; without `spec.tls` the Certificate and
//! the CA bundle go.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Phase, Tenant};
use enclave_operator::pki as tls;
use enclave_tests::controlplane::{cert_manager, kubectl_output};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const ISSUER_NAMESPACE: &str = "cert-manager";

#[tokio::test]
async fn cert_manager_issues_when_named_and_its_absence_is_reported() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "cm"},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}],
            "tls": {"dnsNames": ["cm.example"], "issuer": {"name": "enclave-test-ca", "kind": "ClusterIssuer"}}
        }
    }))?;
    tenants.create(&PostParams::default(), &tenant).await?;

    // Without cert-manager's CRDs: a condition that says so, the tenant otherwise in place.
    let errors_before = env()
        .metrics
        .errors
        .get_or_create(&enclave_operator::telemetry::ErrorLabels { kind: "api".into() })
        .get();
    let message = eventually("CertManagerNotInstalled", WAIT, || async {
        let status = tenants.get("cm").await?.status.unwrap_or_default();
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "CertificateReady" && c.reason == "CertManagerNotInstalled")
            .map(|c| c.message.clone());
        Ok(condition.filter(|_| status.phase == Some(Phase::Degraded)))
    })
    .await?;
    assert!(message.contains("install cert-manager"), "{message}");
    let errors_after = env()
        .metrics
        .errors
        .get_or_create(&enclave_operator::telemetry::ErrorLabels { kind: "api".into() })
        .get();
    assert_eq!(errors_before, errors_after, "no failing reconcile loop");

    // cert-manager: its CRDs, a CA ClusterIssuer, and its controller.
    let dir = cert_manager()?;
    let cp = env()
        .control_plane
        .as_ref()
        .context("this test starts cert-manager next to the local control plane")?;
    let kubectl = cp.bin_dir.join("kubectl");
    let crds = dir.join("crds").display().to_string();
    kubectl_output(
        &kubectl,
        &env().kubeconfig,
        &["apply", "--server-side", "-f", &crds],
    )?;
    kubectl_output(
        &kubectl,
        &env().kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &crds,
        ],
    )?;
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ISSUER_NAMESPACE}}))?,
        )
        .await?;
    let ca = tls::new_ca("test-issuer", Timestamp::now(), Duration::from_secs(86_400))?;
    let ca_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "enclave-test-ca", "namespace": ISSUER_NAMESPACE},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": ca.cert, "tls.key": ca.key}
    }))?;
    Api::<Secret>::namespaced(client.clone(), ISSUER_NAMESPACE)
        .create(&PostParams::default(), &ca_secret)
        .await?;
    let issuers: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "ClusterIssuer",
        )),
    );
    issuers
        .patch(
            "enclave-test-ca",
            &PatchParams::apply("enclave-tests"),
            &Patch::Apply(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
                "metadata": {"name": "enclave-test-ca"},
                "spec": {"ca": {"secretName": "enclave-test-ca"}}
            })),
        )
        .await?;
    let mut controller = cp.start_extra(
        "cert-manager",
        std::process::Command::new(dir.join("bin/controller"))
            .arg(format!("--kubeconfig={}", env().kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg(format!("--cluster-resource-namespace={ISSUER_NAMESPACE}"))
            .arg("--controllers=issuers,clusterissuers,certificaterequests-approver,certificaterequests-issuer-ca,certificates-trigger,certificates-issuing,certificates-key-manager,certificates-request-manager,certificates-readiness,certificates-revision-manager")
            .arg("--metrics-listen-address=127.0.0.1:0")
            .arg("--internal-healthz-listen-address=127.0.0.1:0"),
    )?;

    // The operator's Certificate becomes Ready; the Tenant says so with the serial.
    let result = eventually("CertificateReady from cert-manager", WAIT, || async {
        let status = tenants.get("cm").await?.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "CertificateReady" && c.status == "True");
        Ok(ready.then_some(status.certificate).flatten())
    })
    .await;
    let certificate = match result {
        Ok(certificate) => certificate,
        Err(e) => {
            let log = std::fs::read_to_string(cp.dir.join("cert-manager.log")).unwrap_or_default();
            let _ = controller.kill();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{e}\ncert-manager log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
    };
    assert_eq!(
        certificate.issuer.as_deref(),
        Some("ClusterIssuer/enclave-test-ca")
    );
    let secret = Api::<Secret>::namespaced(client.clone(), "cm-dmz")
        .get("enclave-tls")
        .await?;
    let pem = enclave_operator::desired::tls::pem_of(&secret).context("tls.crt")?;
    let info = tls::parse(&pem.cert)?;
    assert_eq!(certificate.serial.as_deref(), Some(info.serial.as_str()));
    assert!(info.dns_names.contains("cm.example"));
    assert!(
        tls::signed_by(&pem.cert, &ca.cert),
        "signed by the ClusterIssuer's CA"
    );
    // The issuer's CA is the tenant's bundle.
    let bundle = Api::<ConfigMap>::namespaced(client.clone(), "cm-dmz")
        .get("enclave-ca-bundle")
        .await?;
    assert_eq!(
        bundle
            .data
            .unwrap_or_default()
            .get("ca.crt")
            .map(|c| c.trim()),
        Some(ca.cert.trim())
    );
    let _ = controller.kill();
    let _ = controller.wait();

    // Without spec.tls, the Certificate and the CA bundle go; the TLS policy is still published.
    tenants
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tls": null}})),
        )
        .await?;
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "cm-dmz",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "cert-manager.io",
            "v1",
            "Certificate",
        )),
    );
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "cm-dmz");
    eventually("the Certificate removed with spec.tls", WAIT, || async {
        Ok(certificates
            .get_opt("enclave-tls")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    eventually("the CA bundle removed with spec.tls", WAIT, || async {
        Ok(config_maps
            .get_opt("enclave-ca-bundle")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    assert!(
        config_maps.get_opt("enclave-tls-policy").await?.is_some(),
        "the TLS policy stays"
    );
    Ok(())
}
