//! The guard going down must not stop the operator: its own writes skip the guard, while
//! everyone else's changes to managed objects fail closed.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::Result;
use enclave_crds::{Phase, Tenant};
use enclave_tests::harness::{env, eventually};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn operator_reconciles_while_the_guard_is_down() -> Result<()> {
    let client = env().client().await?;
    let before: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "out-before"},
        "spec": {"access": {"admins": [{"kind": "User", "name": "frank@out.example"}]}}}),
    )?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenants.create(&PostParams::default(), &before).await?;
    let ready = |name: &'static str| {
        let tenants = tenants.clone();
        async move {
            eventually(
                &format!("{name} Ready"),
                Duration::from_secs(60),
                || async {
                    let t = tenants.get(name).await?;
                    Ok((t.status.and_then(|s| s.phase) == Some(Phase::Ready)).then_some(()))
                },
            )
            .await
        }
    };
    ready("out-before").await?;

    env().operator.stop_guard();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The operator still creates and repairs: a new tenant becomes Ready...
    let after: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "out-after"}, "spec": {}}),
    )?;
    tenants.create(&PostParams::default(), &after).await?;
    ready("out-after").await?;
    // ...and changes the objects it manages: a new admin is bound in every zone.
    let patch = json!({"spec": {"access": {"admins": [{"kind": "User", "name": "frank@out.example"}, {"kind": "User", "name": "grace@out.example"}]}}});
    tenants
        .patch("out-before", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), "out-before-data");
    eventually("grace bound", Duration::from_secs(20), || async {
        let binding = bindings.get("enclave-admins").await?;
        Ok(binding
            .subjects
            .unwrap_or_default()
            .iter()
            .any(|s| s.name == "grace@out.example")
            .then_some(()))
    })
    .await?;

    // Meanwhile everyone else's changes to managed objects fail closed, even a break-glass
    // admin's: isolation is not lifted by an outage.
    let result = Api::<NetworkPolicy>::namespaced(client.clone(), "out-before-app")
        .delete("enclave-default-deny", &DeleteParams::default())
        .await;
    assert!(
        matches!(result, Err(kube::Error::Api(ref s)) if s.message.contains("failed calling webhook")),
        "{result:?}"
    );
    let frank = env()
        .client_as("frank@out.example", &["system:authenticated"])
        .await?;
    let result = Api::<RoleBinding>::namespaced(frank, "out-before-app")
        .delete("enclave-admins", &DeleteParams::default())
        .await;
    match result {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("failed calling webhook"),
            "{}",
            status.message
        ),
        other => panic!("a managed object changed while the guard was down: {other:?}"),
    }
    Api::<RoleBinding>::namespaced(client, "out-before-app")
        .get("enclave-admins")
        .await?;
    Ok(())
}
