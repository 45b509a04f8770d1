//! TLS from the built-in issuer on the real control plane: a rustls server with the issued
//! certificate and the tenant's policy, clients trusting only a tenant's bundle, rotation
//! before expiry, re-issue of deleted or edited Secrets, and private keys kept out of tenant
//! namespaces, logs and Events.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::{Tenant, TlsVersion};
use enclave_operator::pki::{self as tls, Pem, Policy};
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually, logs};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);

fn tenant(name: &str, tls: &Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}, {"name": "app", "allowFrom": ["dmz"]}],
            "workloads": [{"name": "web", "zone": "dmz", "image": "registry.example/web:1", "capacity": 1, "ports": [{"port": 443}]}],
            "tls": tls
        }
    }))
    .unwrap()
}

async fn certificate_ready(tenants: &Api<Tenant>, name: &str) -> Result<String> {
    eventually(&format!("{name} CertificateReady"), WAIT, || async {
        let status = tenants.get(name).await?.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "CertificateReady" && c.status == "True");
        Ok(ready
            .then(|| status.certificate.and_then(|c| c.serial))
            .flatten())
    })
    .await
}

async fn serving(client: &kube::Client, namespace: &str) -> Result<Pem> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get("enclave-tls")
        .await?;
    enclave_operator::desired::tls::pem_of(&secret).context("tls.crt and tls.key")
}

async fn bundle(client: &kube::Client, namespace: &str) -> Result<String> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get("enclave-ca-bundle")
        .await?;
    cm.data
        .and_then(|d| d.get("ca.crt").cloned())
        .context("ca.crt")
}

/// A TLS server on loopback with `config`, answering `ok` to each client.
async fn serve(config: rustls::ServerConfig) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream.write_all(b"ok").await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

/// Connects trusting only `bundle`, asking for `name`; the server's greeting on success.
async fn handshake(addr: std::net::SocketAddr, bundle: &str, name: &str) -> Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut stream = connector
        .connect(ServerName::try_from(name.to_string())?, tcp)
        .await?;
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting).await?;
    Ok(greeting)
}

/// A TLS 1.1 ClientHello (record and handshake version 3.2, two CBC suites, no extensions):
/// what the server answers to it.
async fn tls11_hello(addr: std::net::SocketAddr) -> Result<Vec<u8>> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([0x5a; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend(u16::try_from(body.len())?.to_be_bytes());
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend(u16::try_from(handshake.len())?.to_be_bytes());
    record.extend(handshake);
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(&record).await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    Ok(answer)
}

#[tokio::test]
async fn issued_certificates_serve_tls_only_for_their_names_and_tenant() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &tenant(
                "tls-a",
                &json!({"dnsNames": ["shop.tls-a.example", "www.tls-a.example"]}),
            ),
        )
        .await?;
    tenants
        .create(
            &PostParams::default(),
            &tenant("tls-b", &json!({"dnsNames": ["shop.tls-b.example"]})),
        )
        .await?;
    let serial = certificate_ready(&tenants, "tls-a").await?;
    certificate_ready(&tenants, "tls-b").await?;

    let pem = serving(&client, "tls-a-dmz").await?;
    let info = tls::parse(&pem.cert)?;
    assert_eq!(info.serial, serial);
    let expected: Vec<&str> = vec![
        "shop.tls-a.example",
        "web.tls-a-dmz.svc",
        "web.tls-a-dmz.svc.cluster.local",
        "www.tls-a.example",
    ];
    assert_eq!(
        info.dns_names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        expected
    );
    assert!(pem.key.contains("BEGIN PRIVATE KEY"));
    // ECDSA P-256 by default, 90 days.
    assert_eq!(
        info.not_after.as_second() - info.not_before.as_second(),
        90 * 86_400
    );
    // The bundle is in every zone; the policy too.
    let bundle_a = bundle(&client, "tls-a-app").await?;
    assert_eq!(bundle_a, bundle(&client, "tls-a-dmz").await?);
    let bundle_b = bundle(&client, "tls-b-dmz").await?;
    let policy = Api::<ConfigMap>::namespaced(client.clone(), "tls-a-dmz")
        .get("enclave-tls-policy")
        .await?
        .data
        .unwrap_or_default();
    assert_eq!(policy["minVersion"], "TLSv1.2");
    assert!(policy["cipherSuites"].contains("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
    assert!(!policy["cipherSuites"].contains("CBC"));

    // A rustls server applying the published policy with the issued certificate.
    let min_version = if policy["minVersion"] == "TLSv1.3" {
        TlsVersion::Tls13
    } else {
        TlsVersion::Tls12
    };
    let addr = serve(Policy { min_version }.server_config(&pem)?).await?;
    for name in &expected {
        assert_eq!(handshake(addr, &bundle_a, name).await?, "ok", "{name}");
    }
    let unrequested = handshake(addr, &bundle_a, "evil.example").await;
    assert!(
        unrequested
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not valid for name")),
        "a name not requested must fail: {unrequested:?}"
    );
    let other_tenant = handshake(addr, &bundle_b, "shop.tls-a.example").await;
    assert!(
        other_tenant
            .as_ref()
            .is_err_and(|e| e.to_string().contains("UnknownIssuer")),
        "another tenant's bundle must not trust it: {other_tenant:?}"
    );
    // TLS 1.1 is refused: a fatal alert, never a ServerHello.
    let answer = tls11_hello(addr).await?;
    assert_ne!(
        answer.first(),
        Some(&0x16),
        "the server answered TLS 1.1 with a handshake"
    );
    assert_eq!(answer.first(), Some(&0x15), "an alert record: {answer:?}");
    // Fatal; rustls answers handshake_failure (40) when no version or suite is shared.
    assert_eq!(answer.get(5), Some(&2), "a fatal alert: {answer:?}");
    assert!(
        matches!(answer.get(6), Some(&(40 | 70))),
        "handshake_failure or protocol_version: {answer:?}"
    );

    // Its expiry is a metric.
    let metrics = {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(env().admin_addr)?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        body
    };
    let line = format!(
        "enclave_certificate_expiry_timestamp_seconds{{tenant=\"tls-a\"}} {}",
        info.not_after.as_second()
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");

    // The workload of the serving zone mounts the certificate, stamped with its serial.
    let deployment = Api::<Deployment>::namespaced(client.clone(), "tls-a-dmz")
        .get("web")
        .await?;
    let template = deployment.spec.context("spec")?.template;
    assert_eq!(
        template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default()
            .get("enclave.dev/certificate-serial"),
        Some(&serial)
    );
    Ok(())
}

#[tokio::test]
async fn certificates_renew_before_expiry_and_are_reissued_when_tampered_with() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &tenant(
                "tls-rot",
                &json!({"dnsNames": ["rot.example"], "duration": "45s"}),
            ),
        )
        .await?;
    let first = certificate_ready(&tenants, "tls-rot").await?;
    let old = tls::parse(&serving(&client, "tls-rot-dmz").await?.cert)?;
    assert_eq!(old.not_after.as_second() - old.not_before.as_second(), 45);

    // Renewed at two thirds (30 s), before the old one expires.
    let renewed = eventually("renewal", WAIT, || async {
        let pem = serving(&client, "tls-rot-dmz").await?;
        let info = tls::parse(&pem.cert)?;
        Ok((info.serial != first).then_some((pem, info)))
    })
    .await?;
    let seen_at = k8s_openapi::jiff::Timestamp::now();
    assert!(
        seen_at < old.not_after,
        "replaced at {seen_at}, after expiry {}",
        old.not_after
    );
    let bundle = bundle(&client, "tls-rot-dmz").await?;
    assert!(
        tls::signed_by(&renewed.0.cert, &bundle),
        "the new chain verifies"
    );
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("involvedObject.name=tls-rot"))
        .await?;
    let notes: Vec<String> = events
        .items
        .iter()
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&renewed.1.serial) && n.contains(&first)),
        "an Event names both serials: {notes:?}"
    );
    // The workload rolls onto it.
    eventually("web rolled onto the new serial", WAIT, || async {
        let d = Api::<Deployment>::namespaced(client.clone(), "tls-rot-dmz")
            .get("web")
            .await?;
        let serial = d
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("enclave.dev/certificate-serial").cloned());
        Ok((serial.is_some_and(|s| s != first)).then_some(()))
    })
    .await?;

    // Deleted by hand: re-issued at once.
    let secrets = Api::<Secret>::namespaced(client.clone(), "tls-rot-dmz");
    let before_delete = tls::parse(&serving(&client, "tls-rot-dmz").await?.cert)?.serial;
    secrets
        .delete("enclave-tls", &DeleteParams::default())
        .await?;
    eventually("re-issued after deletion", WAIT, || async {
        let Some(secret) = secrets.get_opt("enclave-tls").await? else {
            return Ok(None);
        };
        let serial = enclave_operator::desired::tls::pem_of(&secret)
            .and_then(|p| tls::parse(&p.cert).ok())
            .map(|i| i.serial);
        Ok(serial.filter(|s| *s != before_delete).map(|_| ()))
    })
    .await?;
    // Edited by hand: re-issued too.
    let before_edit = tls::parse(&serving(&client, "tls-rot-dmz").await?.cert)?.serial;
    secrets
        .patch(
            "enclave-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"tls.crt": "edited by hand"}})),
        )
        .await?;
    eventually("re-issued after an edit", WAIT, || async {
        let pem = serving(&client, "tls-rot-dmz").await?;
        Ok(tls::parse(&pem.cert)
            .ok()
            .filter(|i| i.serial != before_edit)
            .map(|_| ()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn private_keys_stay_out_of_tenant_namespaces_logs_and_events() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &tenant("tls-keys", &json!({"dnsNames": ["keys.example"]})),
        )
        .await?;
    certificate_ready(&tenants, "tls-keys").await?;
    let ca = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get("enclave-ca-tls-keys")
        .await?;
    let ca_pem = enclave_operator::desired::tls::pem_of(&ca).context("CA")?;
    let serving_pem = serving(&client, "tls-keys-dmz").await?;
    // The base64 body of a PEM key, without its armour: what a leak would contain.
    let body = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    let (ca_key, serving_key) = (body(&ca_pem.key), body(&serving_pem.key));
    assert!(ca_key.len() > 40 && serving_key.len() > 40);

    for namespace in ["tls-keys-dmz", "tls-keys-app"] {
        for secret in Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
        {
            let name = secret.metadata.name.clone().unwrap_or_default();
            for (entry, value) in secret.data.iter().flatten() {
                let text = String::from_utf8_lossy(&value.0);
                assert!(
                    !body(&text).contains(&ca_key),
                    "the CA key is in {namespace}/{name}"
                );
                let is_serving_key =
                    namespace == "tls-keys-dmz" && name == "enclave-tls" && entry == "tls.key";
                assert!(
                    is_serving_key || !text.contains("PRIVATE KEY"),
                    "a private key in {namespace}/{name}:{entry}"
                );
            }
        }
        for cm in Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
        {
            for value in cm.data.iter().flatten().map(|(_, v)| v) {
                assert!(
                    !value.contains("PRIVATE KEY"),
                    "a key in a ConfigMap of {namespace}"
                );
            }
        }
    }
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for event in &events.items {
        let text = serde_json::to_string(event)?;
        assert!(
            !text.contains("PRIVATE KEY")
                && !text.contains(&ca_key)
                && !text.contains(&serving_key)
        );
    }
    // At rest, the CA, the certificate, the bundles and the policies cost no write.
    let ours = |o: &Value| {
        !matches!(o["resource"].as_str(), Some("tenants" | "events"))
            && (o["namespace"]
                .as_str()
                .is_some_and(|n| n.starts_with("tls-keys-"))
                || o["name"] == "enclave-ca-tls-keys")
    };
    let (before, at_rest) = env().writes_at_rest(&client, "tls-keys", ours).await?;
    assert!(before > 0, "the audit log shows the operator's writes");
    assert!(at_rest.is_empty(), "no write at rest: {at_rest:?}");

    let log = logs();
    assert!(log.contains("tls-keys"), "the operator's log was captured");
    assert!(!log.contains("PRIVATE KEY") && !log.contains(&ca_key) && !log.contains(&serving_key));
    Ok(())
}
