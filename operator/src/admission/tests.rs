#![allow(clippy::panic, clippy::needless_pass_by_value)]

use super::*;
use serde_json::{Value, json};

fn request(
    kind: (&str, &str),
    operation: &str,
    user: &str,
    groups: &[&str],
    old: Option<Value>,
    new: Option<Value>,
) -> AdmissionRequest<DynamicObject> {
    let (group, kind) = kind;
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "name": "enclave-default-deny",
            "namespace": "acme-app",
            "operation": operation,
            "userInfo": {"username": user, "groups": groups},
            "object": new,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .expect("review");
    review.try_into().expect("request")
}

fn managed(extra: Value) -> Value {
    let mut labels = json!({"app.kubernetes.io/managed-by": "enclave-operator", "enclave.dev/tenant": "acme", "enclave.dev/tenant-uid": "u1", "enclave.dev/zone": "app"});
    if let (Some(l), Some(e)) = (labels.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x", "labels": labels}})
}

const POLICY: (&str, &str) = ("networking.k8s.io", "NetworkPolicy");
const NAMESPACE: (&str, &str) = ("", "Namespace");

#[test]
fn tenant_admin_cannot_touch_managed_objects() {
    let guard = Guard::default();
    for op in ["UPDATE", "DELETE"] {
        let verdict = review(
            &guard,
            &request(
                POLICY,
                op,
                "alice",
                &["acme-admins"],
                Some(managed(json!({}))),
                Some(managed(json!({}))),
            ),
        );
        match verdict {
            Verdict::Deny { message, tenant } => {
                assert_eq!(tenant.as_deref(), Some("acme"));
                assert!(
                    message.contains("managed by Enclave")
                        && message.contains("acme-app/enclave-default-deny"),
                    "{message}"
                );
            }
            Verdict::Allow => panic!("{op} allowed"),
        }
    }
}

#[test]
fn creating_an_object_disguised_as_managed_is_refused() {
    let verdict = review(
        &Guard::default(),
        &request(
            POLICY,
            "CREATE",
            "alice",
            &[],
            None,
            Some(managed(json!({}))),
        ),
    );
    assert!(matches!(verdict, Verdict::Deny { .. }));
}

#[test]
fn the_operator_and_system_controllers_pass() {
    let guard = Guard::default();
    for user in [
        "enclave-operator",
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
    ] {
        let verdict = review(
            &guard,
            &request(POLICY, "DELETE", user, &[], Some(managed(json!({}))), None),
        );
        assert_eq!(verdict, Verdict::Allow, "{user}");
    }
}

#[test]
fn break_glass_group_passes_only_when_configured() {
    let req = request(
        POLICY,
        "DELETE",
        "root",
        &["system:masters"],
        Some(managed(json!({}))),
        None,
    );
    assert!(matches!(
        review(&Guard::default(), &req),
        Verdict::Deny { .. }
    ));
    let guard = Guard {
        exempt_groups: vec!["system:masters".into()],
        ..Guard::default()
    };
    assert_eq!(review(&guard, &req), Verdict::Allow);
}

#[test]
fn objects_enclave_does_not_manage_pass() {
    let theirs = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "mine", "labels": {"app": "web"}}});
    let verdict = review(
        &Guard::default(),
        &request(POLICY, "DELETE", "alice", &[], Some(theirs), None),
    );
    assert_eq!(verdict, Verdict::Allow);
}

#[test]
fn namespace_isolation_labels_are_the_operators_alone() {
    let guard = Guard::default();
    let old = managed(json!({}));
    let relabelled = managed(json!({"pod-security.kubernetes.io/enforce": "privileged"}));
    match review(
        &guard,
        &request(
            NAMESPACE,
            "UPDATE",
            "alice",
            &[],
            Some(old.clone()),
            Some(relabelled),
        ),
    ) {
        Verdict::Deny { message, .. } => assert!(
            message.contains("pod-security.kubernetes.io/enforce"),
            "{message}"
        ),
        Verdict::Allow => panic!("relabel allowed"),
    }
    let mut annotated = old.clone();
    annotated["metadata"]["annotations"] = json!({"note": "hello"});
    assert_eq!(
        review(
            &guard,
            &request(
                NAMESPACE,
                "UPDATE",
                "alice",
                &[],
                Some(old.clone()),
                Some(annotated)
            )
        ),
        Verdict::Allow
    );
    let mut unmanaged = old.clone();
    unmanaged["metadata"]["labels"] = json!({});
    assert!(matches!(
        review(
            &guard,
            &request(
                NAMESPACE,
                "UPDATE",
                "alice",
                &[],
                Some(old),
                Some(unmanaged)
            )
        ),
        Verdict::Deny { .. }
    ));
}

#[test]
fn tenant_with_an_internet_port_outside_the_allowed_set_is_refused() {
    let tenant = json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"zones": [{"name": "dmz", "exposure": "Internet", "ports": [{"port": 443}, {"port": 22}]}]}});
    match review(
        &Guard::default(),
        &request(
            (enclave_crds::GROUP, "Tenant"),
            "CREATE",
            "platform",
            &[],
            None,
            Some(tenant),
        ),
    ) {
        Verdict::Deny { message, .. } => assert!(
            message.contains("port 22 may not face the internet") && message.contains("443"),
            "{message}"
        ),
        Verdict::Allow => panic!("port 22 allowed"),
    }
}

#[test]
fn webhook_configuration_excludes_trusted_users_and_scopes_to_managed_objects() {
    let config = webhook_configuration(
        WebhookClientConfig {
            url: Some("https://127.0.0.1:9443/validate".into()),
            ..Default::default()
        },
        "CA",
        &Guard::default(),
    );
    let hooks = config.webhooks.expect("webhooks");
    let managed = &hooks[0];
    assert_eq!(managed.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(managed.timeout_seconds, Some(5));
    let selector = managed
        .object_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .expect("selector");
    assert_eq!(selector["app.kubernetes.io/managed-by"], "enclave-operator");
    let condition = &managed.match_conditions.as_ref().expect("conditions")[0].expression;
    assert!(
        condition.contains("'enclave-operator'") && condition.contains("generic-garbage-collector"),
        "{condition}"
    );
    assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(
        managed.client_config.ca_bundle,
        Some(ByteString(b"CA".to_vec()))
    );
}
