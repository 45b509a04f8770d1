//! The tenant's CA rotating, on the real control plane with a short CA validity in the
//! operator's configuration: a new CA at two thirds of the old one's life, both in the bundle
//! while the old one lives, the serving certificate re-issued by the new one, an Event naming
//! both serials.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::Tenant;
use enclave_operator::pki as tls;
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_ca_rotates_with_both_cas_trusted_during_the_overlap() -> Result<()> {
    // A CA lives 60 s here (5 years by default), so it rotates after 40 s.
    let config = std::fs::read_to_string(&env().config_file)?;
    std::fs::write(
        &env().config_file,
        format!("{config}\ntls:\n  caValidity: 60s\n"),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the operator re-reads it every 500 ms
    let client = env().client().await?;
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "rot-ca"},
        "spec": {
            "zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}]}],
            "tls": {"dnsNames": ["rot-ca.example"], "duration": "50s"}
        }
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    let cas = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let ca_of = |secret: &Secret| enclave_operator::desired::tls::pem_of(secret).context("CA");
    let first = eventually("the CA", Duration::from_secs(60), || async {
        Ok(cas.get_opt("enclave-ca-rot-ca").await?)
    })
    .await?;
    let first = ca_of(&first)?;
    let first_info = tls::parse(&first.cert)?;
    assert_eq!(
        first_info.not_after.as_second() - first_info.not_before.as_second(),
        60
    );

    // Rotated at two thirds: a new CA, the old one kept as `previous.crt`.
    let rotated = eventually("the CA rotated", Duration::from_secs(90), || async {
        let secret = cas.get("enclave-ca-rot-ca").await?;
        let pem = ca_of(&secret)?;
        Ok((tls::parse(&pem.cert)?.serial != first_info.serial).then_some((secret, pem)))
    })
    .await?;
    let seen = k8s_openapi::jiff::Timestamp::now();
    assert!(
        seen < first_info.not_after,
        "rotated before the old CA expired"
    );
    assert_eq!(
        enclave_operator::desired::tls::previous_of(&rotated.0).map(|p| p.trim().to_string()),
        Some(first.cert.trim().to_string())
    );
    let new_serial = tls::parse(&rotated.1.cert)?.serial;

    // Both CAs in the bundle while the old one lives; the serving certificate re-issued by the
    // new one.
    let bundle = eventually("a bundle of both CAs", Duration::from_secs(60), || async {
        let cm = Api::<ConfigMap>::namespaced(client.clone(), "rot-ca-dmz")
            .get("enclave-ca-bundle")
            .await?;
        let bundle = cm
            .data
            .and_then(|d| d.get("ca.crt").cloned())
            .unwrap_or_default();
        Ok((tls::certificates(&bundle)?.len() == 2).then_some(bundle))
    })
    .await?;
    let serials: Vec<String> = tls::certificates(&bundle)?
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(serials, [new_serial.clone(), first_info.serial.clone()]);
    let serving = eventually(
        "re-issued by the new CA",
        Duration::from_secs(60),
        || async {
            let secret = Api::<Secret>::namespaced(client.clone(), "rot-ca-dmz")
                .get("enclave-tls")
                .await?;
            let pem = enclave_operator::desired::tls::pem_of(&secret).context("serving")?;
            Ok(tls::signed_by(&pem.cert, &rotated.1.cert).then_some(pem))
        },
    )
    .await?;
    // (The bundle's first certificate is the new CA.)
    assert!(
        tls::signed_by(&serving.cert, &bundle),
        "the new serving certificate verifies against the bundle"
    );
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields("involvedObject.name=rot-ca"))
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CARotated")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains(&new_serial) && m.contains(&first_info.serial))),
        "a CARotated Event names both serials"
    );
    Ok(())
}
