#![allow(clippy::panic, clippy::needless_pass_by_value)]

use super::*;
use enclave_crds::Tenant;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhook;
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

/// The guard's decision, with what the handler looked up first.
fn review(guard: &Guard, lookup: &Lookup, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    super::review(guard, request, lookup)
}

/// A request in one of acme's zone namespaces (`app`, internal).
fn acme() -> Lookup {
    zone_of("acme", "Internal")
}

fn zone_of(tenant: &str, exposure: &str) -> Lookup {
    Lookup {
        namespace_labels: Some(
            [
                ("app.kubernetes.io/managed-by", "enclave-operator"),
                ("enclave.dev/tenant", tenant),
                ("enclave.dev/exposure", exposure),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
        parent: None,
        tenant: None,
    }
}

const POLICY: (&str, &str) = ("networking.k8s.io", "NetworkPolicy");
const NAMESPACE: (&str, &str) = ("", "Namespace");

#[test]
fn tenant_admin_cannot_touch_managed_objects() {
    let guard = Guard::default();
    for op in ["UPDATE", "DELETE"] {
        let verdict = review(
            &guard,
            &acme(),
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
        &acme(),
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
        "system:serviceaccount:enclave-system:enclave-operator",
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
    ] {
        let verdict = review(
            &guard,
            &acme(),
            &request(POLICY, "DELETE", user, &[], Some(managed(json!({}))), None),
        );
        assert_eq!(verdict, Verdict::Allow, "{user}");
    }
}

#[test]
fn only_the_operators_own_service_account_is_the_operator() {
    let guard = Guard::default();
    for user in [
        "enclave-operator",
        "system:serviceaccount:acme-app:enclave-operator",
    ] {
        let verdict = review(
            &guard,
            &acme(),
            &request(POLICY, "DELETE", user, &[], Some(managed(json!({}))), None),
        );
        assert!(matches!(verdict, Verdict::Deny { .. }), "{user} passed");
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
        review(&Guard::default(), &acme(), &req),
        Verdict::Deny { .. }
    ));
    let guard = Guard {
        exempt_groups: vec!["system:masters".into()],
        ..Guard::default()
    };
    assert_eq!(review(&guard, &acme(), &req), Verdict::Allow);
}

#[test]
fn objects_enclave_does_not_manage_pass() {
    let theirs = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "mine", "labels": {"app": "web"}}});
    let verdict = review(
        &Guard::default(),
        &acme(),
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
        &acme(),
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
            &acme(),
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
            &acme(),
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
        &acme(),
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
        "enclave-system",
    );
    let hooks = config.webhooks.expect("webhooks");
    // kube-system never waits on the guard; the operator's namespace only for what Enclave
    // manages there (its keys).
    let excluded = |hook: &ValidatingWebhook| {
        let requirement = hook
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_expressions.clone())
            .expect("namespace selector")
            .remove(0);
        assert_eq!(requirement.operator, "NotIn");
        requirement.values.unwrap_or_default()
    };
    assert_eq!(excluded(&hooks[0]), ["kube-system"]);
    assert_eq!(excluded(&hooks[1]), ["kube-system", "enclave-system"]);
    // The chart's configuration gets only its caBundles from the operator, one per webhook.
    let bundle = ca_bundle("ValidatingWebhookConfiguration", "enclave", &WEBHOOKS, "CA");
    let names: Vec<&str> = bundle["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    let hook_names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, hook_names);
    assert_eq!(bundle["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=");
    assert_eq!(
        bundle["webhooks"][0].as_object().map(serde_json::Map::len),
        Some(2)
    );
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
        condition.contains("'system:serviceaccount:enclave-system:enclave-operator'")
            && condition.contains("generic-garbage-collector"),
        "{condition}"
    );
    let tenant_namespaces = &hooks[1];
    assert_eq!(tenant_namespaces.failure_policy.as_deref(), Some("Fail"));
    assert!(
        tenant_namespaces
            .rules
            .iter()
            .flatten()
            .any(|r| r.operations.as_deref() == Some(&["CONNECT".to_string()][..])),
        "exec and port-forward are reviewed"
    );
    let reviewed = |hook: &ValidatingWebhook, resource: &str| {
        hook.rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|x| x == resource))
    };
    for resource in [
        "pods",
        "pods/exec",
        "deployments/scale",
        "services",
        "rolebindings",
        "ingresses",
        "jobs",
        "cronjobs",
    ] {
        assert!(
            reviewed(tenant_namespaces, resource),
            "{resource} in tenant namespaces"
        );
    }
    for resource in [
        "namespaces",
        "deployments",
        "statefulsets",
        "poddisruptionbudgets",
        "services",
        "serviceaccounts",
        "cronjobs",
        "jobs",
        "persistentvolumeclaims",
        "secrets",
        "configmaps",
        "networkpolicies",
        "certificates",
    ] {
        assert!(reviewed(managed, resource), "managed {resource}");
    }
    assert_eq!(hooks[2].failure_policy.as_deref(), Some("Ignore"));
    // A Tenant's deletion fails closed: unconfirmed deletions wait for the guard.
    assert_eq!(hooks[3].failure_policy.as_deref(), Some("Fail"));
    assert_eq!(
        hooks[3].rules.as_ref().expect("rules")[0]
            .operations
            .as_deref(),
        Some(&["DELETE".to_string()][..])
    );
    assert_eq!(
        managed.client_config.ca_bundle,
        Some(ByteString(b"CA".to_vec()))
    );
}

fn pod(labels: Value, account: Option<&str>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels},
        "spec": {"serviceAccountName": account, "containers": [{"name": "c", "image": "x"}]}})
}

#[test]
fn nothing_a_tenant_makes_runs_as_the_backup_identity() {
    let guard = Guard::default();
    for (kind, object) in [
        (("", "Pod"), pod(json!({}), Some("enclave-backup"))),
        (
            ("", "Pod"),
            pod(json!({"enclave.dev/backup": "true"}), None),
        ),
        (
            ("batch", "Job"),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                "spec": {"template": {"spec": {"serviceAccountName": "enclave-backup", "containers": []}}}}),
        ),
        (
            ("batch", "CronJob"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "j"},
                "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"enclave.dev/backup": "true"}}, "spec": {"containers": []}}}}}}),
        ),
    ] {
        match review(
            &guard,
            &acme(),
            &request(kind, "CREATE", "alice", &[], None, Some(object)),
        ) {
            Verdict::Deny { message, tenant } => {
                assert!(message.contains("backup identity"), "{message}");
                assert_eq!(tenant.as_deref(), Some("acme"));
            }
            Verdict::Allow => panic!("{kind:?} with the backup identity allowed"),
        }
    }
    assert_eq!(
        review(
            &guard,
            &acme(),
            &request(
                ("", "Pod"),
                "CREATE",
                "alice",
                &[],
                None,
                Some(pod(json!({"app": "web"}), Some("default")))
            )
        ),
        Verdict::Allow
    );
    // The job controller makes the pods of the operator's backup Jobs.
    assert_eq!(
        review(
            &guard,
            &acme(),
            &request(
                ("", "Pod"),
                "CREATE",
                "system:serviceaccount:kube-system:job-controller",
                &[],
                None,
                Some(pod(
                    json!({"enclave.dev/backup": "true"}),
                    Some("enclave-backup")
                ))
            )
        ),
        Verdict::Allow
    );
}

fn subresource(
    kind: (&str, &str),
    resource: &str,
    sub: &str,
    operation: &str,
) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "subResource": sub,
            "name": "target", "namespace": "acme-app", "operation": operation,
            "userInfo": {"username": "alice", "groups": ["acme-admins"]},
            "object": {"apiVersion": "v1", "kind": kind.1, "metadata": {"name": "target"}},
            "dryRun": false
        }
    }))
    .expect("review");
    review.try_into().expect("request")
}

#[test]
fn no_exec_into_a_backup_pod_and_no_scaling_a_managed_workload() {
    let guard = Guard::default();
    let backup: DynamicObject = serde_json::from_value(pod(
        json!({"enclave.dev/backup": "true"}),
        Some("enclave-backup"),
    ))
    .expect("pod");
    let theirs: DynamicObject =
        serde_json::from_value(pod(json!({"app": "web"}), None)).expect("pod");
    for sub in ["exec", "attach", "portforward"] {
        let request = subresource(("", "PodExecOptions"), "pods", sub, "CONNECT");
        let on = |parent: &DynamicObject| Lookup {
            parent: Some(parent.clone()),
            ..acme()
        };
        assert!(
            matches!(review(&guard, &on(&backup), &request), Verdict::Deny { .. }),
            "{sub}"
        );
        assert_eq!(
            review(&guard, &on(&theirs), &request),
            Verdict::Allow,
            "{sub}"
        );
    }
    let scale = subresource(("autoscaling", "Scale"), "deployments", "scale", "UPDATE");
    let deployment: DynamicObject = serde_json::from_value(managed(json!({}))).expect("deployment");
    let on = Lookup {
        parent: Some(deployment),
        ..acme()
    };
    assert!(matches!(review(&guard, &on, &scale), Verdict::Deny { .. }));
    assert_eq!(
        review(
            &guard,
            &Lookup {
                parent: Some(theirs),
                ..acme()
            },
            &scale
        ),
        Verdict::Allow
    );
}

#[test]
fn a_managed_claim_keeps_its_labels_marks_owners_and_size() {
    let guard = Guard::default();
    let claim = |patch: Value| {
        let mut c = managed(json!({}));
        c["kind"] = json!("PersistentVolumeClaim");
        c["spec"] = json!({"resources": {"requests": {"storage": "1Gi"}}});
        if let (Some(c), Some(p)) = (c.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if k == "metadata" {
                    for (mk, mv) in v.as_object().expect("metadata") {
                        c["metadata"][mk] = mv.clone();
                    }
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        c
    };
    let old = claim(json!({}));
    let pvc = ("", "PersistentVolumeClaim");
    for (what, new) in [
        (
            "ownerReferences",
            claim(
                json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "gone"}]}}),
            ),
        ),
        (
            "labels",
            claim(json!({"metadata": {"labels": {"app": "mine"}}})),
        ),
        (
            "enclave.dev/ annotations",
            claim(
                json!({"metadata": {"annotations": {"enclave.dev/purge-after": "2020-01-01T00:00:00Z"}}}),
            ),
        ),
        (
            "size",
            claim(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
        ),
    ] {
        match review(
            &guard,
            &acme(),
            &request(pvc, "UPDATE", "alice", &[], Some(old.clone()), Some(new)),
        ) {
            Verdict::Deny { message, .. } => assert!(message.contains(what), "{what}: {message}"),
            Verdict::Allow => panic!("{what} changed"),
        }
    }
    // The scheduler and the binder write elsewhere: allowed.
    let bound = claim(
        json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n1"}}, "spec": {"resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1"}}),
    );
    assert_eq!(
        review(
            &guard,
            &acme(),
            &request(pvc, "UPDATE", "alice", &[], Some(old.clone()), Some(bound))
        ),
        Verdict::Allow
    );
    assert!(matches!(
        review(
            &guard,
            &acme(),
            &request(pvc, "DELETE", "alice", &[], Some(old), None)
        ),
        Verdict::Deny { .. }
    ));
}

#[test]
fn a_tenants_services_and_bindings_stay_inside_it() {
    let guard = Guard::default();
    let service = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec});
    let svc = ("", "Service");
    for (spec, lookup) in [
        (
            json!({"type": "ExternalName", "externalName": "kubernetes.default"}),
            zone_of("acme", "Internet"),
        ),
        (
            json!({"externalIPs": ["10.0.0.1"], "ports": [{"port": 443}]}),
            zone_of("acme", "Internet"),
        ),
        (
            json!({"type": "NodePort", "ports": [{"port": 443}]}),
            acme(),
        ),
        (
            json!({"type": "LoadBalancer", "ports": [{"port": 443}]}),
            acme(),
        ),
    ] {
        assert!(
            matches!(
                review(
                    &guard,
                    &lookup,
                    &request(
                        svc,
                        "CREATE",
                        "alice",
                        &[],
                        None,
                        Some(service(spec.clone()))
                    )
                ),
                Verdict::Deny { .. }
            ),
            "{spec}"
        );
    }
    for (spec, lookup) in [
        (json!({"ports": [{"port": 443}]}), acme()),
        (
            json!({"type": "NodePort", "ports": [{"port": 443}]}),
            zone_of("acme", "Internet"),
        ),
    ] {
        assert_eq!(
            review(
                &guard,
                &lookup,
                &request(
                    svc,
                    "CREATE",
                    "alice",
                    &[],
                    None,
                    Some(service(spec.clone()))
                )
            ),
            Verdict::Allow,
            "{spec}"
        );
    }
    let binding = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}]})
    };
    let rb = ("rbac.authorization.k8s.io", "RoleBinding");
    assert!(matches!(
        review(
            &guard,
            &acme(),
            &request(
                rb,
                "CREATE",
                "alice",
                &[],
                None,
                Some(binding("enclave-tenant-admin"))
            )
        ),
        Verdict::Deny { .. }
    ));
    assert_eq!(
        review(
            &guard,
            &acme(),
            &request(
                rb,
                "CREATE",
                "alice",
                &[],
                None,
                Some(binding("enclave-tenant-viewer"))
            )
        ),
        Verdict::Allow
    );
}

#[test]
fn the_tenant_on_record_is_the_namespaces_not_the_objects() {
    let forged = managed(json!({"enclave.dev/tenant": "victim"}));
    match review(
        &Guard::default(),
        &acme(),
        &request(
            ("", "ConfigMap"),
            "CREATE",
            "alice",
            &[],
            None,
            Some(forged),
        ),
    ) {
        Verdict::Deny { tenant, .. } => assert_eq!(tenant.as_deref(), Some("acme")),
        Verdict::Allow => panic!("forged ConfigMap allowed"),
    }
}

#[test]
fn enclaves_names_are_kept_free_in_tenant_namespaces() {
    let object = |kind: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "enclave-default-deny"}});
    for kind in ["ConfigMap", "Secret"] {
        // `request` names every object `enclave-default-deny`: a squatter of Enclave's names.
        let squat = request(("", kind), "CREATE", "alice", &[], None, Some(object(kind)));
        match review(&Guard::default(), &acme(), &squat) {
            Verdict::Deny { message, .. } => assert!(message.contains("enclave-"), "{message}"),
            Verdict::Allow => panic!("{kind} squatting Enclave's name allowed"),
        }
        // Outside tenant namespaces, the name is anyone's.
        assert_eq!(
            review(&Guard::default(), &Lookup::default(), &squat),
            Verdict::Allow
        );
    }
    let mut own = request(
        ("", "ConfigMap"),
        "CREATE",
        "alice",
        &[],
        None,
        Some(object("ConfigMap")),
    );
    own.name = "app-settings".into();
    assert_eq!(review(&Guard::default(), &acme(), &own), Verdict::Allow);
}

#[test]
fn deleting_a_tenant_needs_its_confirmation_and_retention_a_minimum() {
    let guard = Guard::default();
    let tenant = |annotations: Value, retention: &str| {
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "annotations": annotations}, "spec": {"lifecycle": {"retention": retention}}})
    };
    let kind = (enclave_crds::GROUP, "Tenant");
    let mut delete = request(
        kind,
        "DELETE",
        "platform",
        &[],
        Some(tenant(json!({}), "7d")),
        None,
    );
    delete.name = "acme".into();
    match review(&guard, &Lookup::default(), &delete) {
        Verdict::Deny { message, .. } => assert!(
            message.contains("enclave.dev/confirm-delete=acme"),
            "{message}"
        ),
        Verdict::Allow => panic!("unconfirmed delete allowed"),
    }
    let mut confirmed = request(
        kind,
        "DELETE",
        "platform",
        &[],
        Some(tenant(json!({"enclave.dev/confirm-delete": "acme"}), "7d")),
        None,
    );
    confirmed.name = "acme".into();
    assert_eq!(
        review(&guard, &Lookup::default(), &confirmed),
        Verdict::Allow
    );
    match review(
        &guard,
        &Lookup::default(),
        &request(
            kind,
            "UPDATE",
            "platform",
            &[],
            None,
            Some(tenant(json!({}), "0s")),
        ),
    ) {
        Verdict::Deny { message, .. } => {
            assert!(message.starts_with("spec.lifecycle.retention"), "{message}");
        }
        Verdict::Allow => panic!("retention 0s allowed"),
    }
}

#[test]
fn a_tenants_ingresses_serve_only_its_names() {
    let guard = Guard::default();
    let owner: Tenant = serde_json::from_value(
        json!({"apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme"}, "spec": {"tls": {"dnsNames": ["shop.acme.example"]}}}),
    )
    .expect("tenant");
    let lookup = Lookup {
        tenant: Some(owner),
        ..zone_of("acme", "Internet")
    };
    let ingress = |spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}, "spec": spec});
    let backend = json!({"service": {"name": "web", "port": {"number": 443}}});
    let kind = ("networking.k8s.io", "Ingress");
    let rule = |host: Option<&str>| json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}});
    assert_eq!(
        review(
            &guard,
            &lookup,
            &request(
                kind,
                "CREATE",
                "alice",
                &[],
                None,
                Some(ingress(json!({"rules": [rule(Some("shop.acme.example"))]})))
            )
        ),
        Verdict::Allow
    );
    let snippet = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i",
        "annotations": {"nginx.ingress.kubernetes.io/server-snippet": "location / { return 200; }"}},
        "spec": {"rules": [rule(Some("shop.acme.example"))]}});
    match review(
        &guard,
        &lookup,
        &request(kind, "CREATE", "alice", &[], None, Some(snippet)),
    ) {
        Verdict::Deny { message, .. } => assert!(message.contains("server-snippet"), "{message}"),
        Verdict::Allow => panic!("snippet allowed"),
    }
    for (spec, expected) in [
        (
            json!({"rules": [rule(Some("shop.acme.example"))], "tls": [{"hosts": ["shop.globex.example"], "secretName": "t"}]}),
            "spec.tls[0].hosts",
        ),
        (
            json!({"rules": [rule(Some("shop.globex.example"))]}),
            "not one of the tenant's names",
        ),
        (json!({"rules": [rule(None)]}), "no host"),
        (json!({"defaultBackend": backend}), "defaultBackend"),
    ] {
        match review(
            &guard,
            &lookup,
            &request(kind, "CREATE", "alice", &[], None, Some(ingress(spec))),
        ) {
            Verdict::Deny { message, .. } => assert!(message.contains(expected), "{message}"),
            Verdict::Allow => panic!("{expected}: allowed"),
        }
    }
}

#[test]
fn the_firewall_annotations_of_an_ingress_are_the_operators() {
    let guard = Guard::default();
    let owner: Tenant = serde_json::from_value(json!({"apiVersion": "enclave.dev/v1alpha1",
        "kind": "Tenant", "metadata": {"name": "acme"}, "spec": {
            "tls": {"dnsNames": ["shop.acme.example"]},
            "firewall": {"allowCidrs": ["198.51.100.0/24"]}}}))
    .expect("tenant");
    let internet = Lookup {
        tenant: Some(owner.clone()),
        ..zone_of("acme", "Internet")
    };
    let allow = "nginx.ingress.kubernetes.io/whitelist-source-range";
    let deny = "nginx.ingress.kubernetes.io/denylist-source-range";
    let ingress = |annotations: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "i", "annotations": annotations},
            "spec": {"rules": [{"host": "shop.acme.example"}]}})
    };
    let kind = ("networking.k8s.io", "Ingress");
    let verdict = |lookup: &Lookup, old: Option<Value>, new: Value| {
        let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
        review(
            &guard,
            lookup,
            &request(kind, operation, "alice", &[], old, Some(new)),
        )
    };
    // Created without them (the operator adds them at once), or with exactly the tenant's.
    assert_eq!(verdict(&internet, None, ingress(json!({}))), Verdict::Allow);
    let kept = ingress(json!({allow: "198.51.100.0/24"}));
    assert_eq!(verdict(&internet, None, kept.clone()), Verdict::Allow);
    for (old, new, field) in [
        // Widened,
        (None, ingress(json!({allow: "0.0.0.0/0"})), allow),
        // a deny list the tenant's firewall does not have,
        (
            None,
            ingress(json!({allow: "198.51.100.0/24", deny: "192.0.2.0/24"})),
            deny,
        ),
        // removed once the operator set it,
        (Some(kept.clone()), ingress(json!({})), allow),
        // or the same filter under another name the controller may read first.
        (
            None,
            ingress(json!({"nginx.ingress.kubernetes.io/allowlist-source-range": "0.0.0.0/0"})),
            "allowlist-source-range",
        ),
    ] {
        match verdict(&internet, old, new) {
            Verdict::Deny { message, .. } => assert!(message.contains(field), "{message}"),
            Verdict::Allow => panic!("{field}: allowed"),
        }
    }
    // In an internal zone too: a canary there, or a path of the same host, would lend the
    // internet zone its filter.
    let internal = Lookup {
        tenant: Some(owner),
        ..zone_of("acme", "Internal")
    };
    assert!(matches!(
        verdict(&internal, None, ingress(json!({allow: "0.0.0.0/0"}))),
        Verdict::Deny { .. }
    ));
    // No room left for the operator's values: refused.
    let stuffed = ingress(json!({"x": "y".repeat(200_000)}));
    match verdict(&internet, None, stuffed) {
        Verdict::Deny { message, .. } => {
            assert!(message.contains("metadata.annotations"), "{message}");
        }
        Verdict::Allow => panic!("stuffed annotations allowed"),
    }
    // Another controller would serve it without the filter.
    let mut other = ingress(json!({}));
    other["spec"]["ingressClassName"] = json!("alb");
    match verdict(&internet, None, other) {
        Verdict::Deny { message, .. } => {
            assert!(message.contains("spec.ingressClassName alb"), "{message}");
        }
        Verdict::Allow => panic!("another class allowed"),
    }
    let old_style = ingress(json!({"kubernetes.io/ingress.class": "traefik"}));
    assert!(matches!(
        verdict(&internet, None, old_style),
        Verdict::Deny { .. }
    ));
    let mut nginx = ingress(json!({}));
    nginx["spec"]["ingressClassName"] = json!("nginx");
    assert_eq!(verdict(&internet, None, nginx), Verdict::Allow);
    // Layer-4 passthrough and `satisfy: any` go past the filter.
    for key in [
        "nginx.ingress.kubernetes.io/ssl-passthrough",
        "nginx.ingress.kubernetes.io/satisfy",
    ] {
        assert!(
            matches!(
                verdict(&internet, None, ingress(json!({key: "true"}))),
                Verdict::Deny { .. }
            ),
            "{key}"
        );
    }
}

#[test]
fn managed_labels_cannot_ride_in_a_template() {
    let guard = Guard::default();
    let managed_labels =
        json!({"app.kubernetes.io/managed-by": "enclave-operator", "enclave.dev/tenant-uid": "u1"});
    for (kind, object) in [
        (
            ("batch", "CronJob"),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"metadata": {"labels": managed_labels}, "spec": {"template": {"spec": {"containers": []}}}}}}),
        ),
        (
            ("apps", "Deployment"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"labels": managed_labels}, "spec": {"containers": []}}}}),
        ),
        (
            ("apps", "StatefulSet"),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"template": {"spec": {"containers": []}}, "volumeClaimTemplates": [{"metadata": {"name": "x", "labels": managed_labels}}]}}),
        ),
    ] {
        match review(
            &guard,
            &acme(),
            &request(kind, "CREATE", "alice", &[], None, Some(object)),
        ) {
            Verdict::Deny { message, .. } => assert!(message.contains("managed-by"), "{message}"),
            Verdict::Allow => panic!("{kind:?} with a managed template allowed"),
        }
    }
}

#[test]
fn a_subresource_on_an_object_the_guard_could_not_see_is_refused() {
    let request = subresource(("", "PodExecOptions"), "pods", "exec", "CONNECT");
    assert!(matches!(
        review(&Guard::default(), &acme(), &request),
        Verdict::Deny { .. }
    ));
}
