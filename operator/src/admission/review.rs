//! The guard's decision on one request. Pure: what it needs from the API server (the labels of
//! the request's namespace, the object a subresource acts on) is looked up by the handler and
//! passed in a [`Lookup`].
//!
//! The rules, for anyone but the operator and the system controllers:
//! - an Enclave-managed object (one carrying the managed-by label, before or after) is neither
//!   created, changed nor deleted; a managed claim may change only where the storage
//!   controllers write (binding, finalizers), never its labels, `enclave.dev/` annotations,
//!   owner references or size; a tenant namespace only keeps its isolation labels;
//! - the scale subresource of a managed Deployment or StatefulSet is refused like the object;
//! - nothing in a tenant namespace runs as the backup identity: no pod or pod template with
//!   the `enclave-backup` service account or the backup label, and no exec, attach,
//!   port-forward or ephemeral container into a backup pod;
//! - a tenant's own Services are neither `ExternalName` nor given `externalIPs`, and open a
//!   node port or a load balancer only in an internet-facing zone;
//! - a tenant's own RoleBindings grant only Enclave's member or viewer roles;
//! - a tenant's own Ingresses serve only its `spec.tls.dnsNames`, never every host.
//!
//! The Tenant an attempt is recorded on is read from the namespace's labels (which only the
//! operator writes), never from the submitted object.

use super::{Guard, Verdict, ingress};
use crate::desired::backup::{BACKUP, NAME as BACKUP_SERVICE_ACCOUNT};
use crate::desired::network;
use crate::labels::{self, MANAGER};
use enclave_crds::Tenant;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::Value;
use std::collections::BTreeMap;

pub use crate::labels::EXPOSURE;

/// Roles a tenant's own RoleBindings may grant: those a tenant admin may hand out.
pub const GRANTABLE_ROLES: [&str; 2] = ["enclave-tenant-member", "enclave-tenant-viewer"];

/// What the handler looked up for a request.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// Labels of the request's namespace, when it has one.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The object a subresource request acts on (the pod of an exec, the Deployment scaled).
    pub parent: Option<DynamicObject>,
    /// The Tenant owning the request's namespace, for the rules that read its spec (the names
    /// an Ingress may serve).
    pub tenant: Option<Tenant>,
}

fn object_labels(object: Option<&DynamicObject>) -> BTreeMap<String, String> {
    object
        .and_then(|o| o.metadata.labels.clone())
        .unwrap_or_default()
}

fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(labels::MANAGED_BY).map(String::as_str) == Some(MANAGER)
}

/// Labels of a namespace that isolate its tenant: only the operator may change them.
fn isolation_label(key: &str) -> bool {
    key.starts_with("enclave.dev/")
        || key.starts_with("pod-security.kubernetes.io/")
        || key == labels::MANAGED_BY
}

/// The names Enclave keeps for what it publishes in a tenant's namespaces: taken first by a
/// tenant, one would block Enclave's own (it never takes an object over) or pass for it.
pub const RESERVED_PREFIX: &str = "enclave-";

/// Decides one admission request.
#[must_use]
pub fn review(
    guard: &Guard,
    request: &AdmissionRequest<DynamicObject>,
    lookup: &Lookup,
) -> Verdict {
    let user = request.user_info.username.clone().unwrap_or_default();
    let groups = request.user_info.groups.clone().unwrap_or_default();
    let exempt = guard.operator_users.contains(&user)
        || guard.exempt_users.contains(&user)
        || groups.iter().any(|g| guard.exempt_groups.contains(g));
    if request.kind.group == enclave_crds::GROUP && request.kind.kind == "Tenant" {
        return review_tenant(guard, request, exempt);
    }
    if exempt {
        return Verdict::Allow;
    }
    let old = object_labels(request.old_object.as_ref());
    let new = object_labels(request.object.as_ref());
    // The tenant of a namespaced request is the namespace's; of a namespace, its own.
    let tenant = lookup
        .namespace_labels
        .as_ref()
        .filter(|l| is_managed(l))
        .or((request.kind.kind == "Namespace" && is_managed(&old)).then_some(&old))
        .and_then(|l| l.get(labels::TENANT))
        .cloned();
    let deny = |message: String| Verdict::Deny {
        message,
        tenant: tenant.clone(),
    };
    let what = format!(
        "{} {}{}",
        request.kind.kind,
        request
            .namespace
            .as_ref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        request.name
    );
    let whose = tenant
        .as_deref()
        .map_or_else(|| "tenants".to_string(), |t| format!("tenant {t}"));
    let managed_refusal = |verb: &str| {
        deny(format!(
            "{what} is managed by Enclave and keeps {whose} isolated: only the operator may {verb} it; change the Tenant instead"
        ))
    };

    match request.sub_resource.as_deref() {
        Some("scale") => {
            return if lookup
                .parent
                .as_ref()
                .is_none_or(|p| is_managed(&object_labels(Some(p))))
            {
                managed_refusal("scale")
            } else {
                Verdict::Allow
            };
        }
        Some(sub @ ("exec" | "attach" | "portforward")) => {
            // A pod the guard could not look at is not let through on trust.
            return if lookup.parent.as_ref().is_none_or(is_backup_pod) {
                deny(format!(
                    "{what} runs Enclave's backups with the tenant's backup credentials: nobody may {sub} into it"
                ))
            } else {
                Verdict::Allow
            };
        }
        Some("ephemeralcontainers") => {
            return if request.old_object.as_ref().is_some_and(is_backup_pod)
                || request.object.as_ref().is_some_and(is_backup_pod)
            {
                deny(format!(
                    "{what} runs Enclave's backups with the tenant's backup credentials: no ephemeral container may join it"
                ))
            } else {
                Verdict::Allow
            };
        }
        Some(_) => return Verdict::Allow,
        None => {}
    }

    if is_managed(&old) || is_managed(&new) {
        return match (request.kind.kind.as_str(), &request.operation) {
            ("Namespace", Operation::Update) => {
                // A tenant namespace may change in other ways (controllers annotate it); only
                // the labels that isolate it are the operator's alone.
                let changed: Vec<&str> = old
                    .keys()
                    .chain(new.keys())
                    .filter(|k| isolation_label(k) && old.get(*k) != new.get(*k))
                    .map(String::as_str)
                    .collect();
                if changed.is_empty() {
                    Verdict::Allow
                } else {
                    deny(format!(
                        "{what} is isolated by Enclave: only the operator may change its labels {}",
                        changed.join(", ")
                    ))
                }
            }
            ("PersistentVolumeClaim", Operation::Update) => {
                let changed = claim_changes(request.old_object.as_ref(), request.object.as_ref());
                if changed.is_empty() {
                    Verdict::Allow
                } else {
                    deny(format!(
                        "{what} holds data Enclave keeps until its deadline: only the operator may change its {}",
                        changed.join(", ")
                    ))
                }
            }
            (_, operation) => managed_refusal(verb(operation)),
        };
    }

    // The tenant's own objects, in a tenant namespace.
    let Some(object) = request.object.as_ref() else {
        return Verdict::Allow;
    };
    if tenant.is_some()
        && matches!(request.operation, Operation::Create)
        && matches!(request.kind.kind.as_str(), "ConfigMap" | "Secret")
        && request.name.starts_with(RESERVED_PREFIX)
    {
        return deny(format!(
            "{what}: names starting with {RESERVED_PREFIX} are Enclave's in a tenant's namespaces (its report, security options, TLS policy and certificates); choose another name"
        ));
    }
    if let Some(place) = forged_template(&request.kind.kind, object) {
        return deny(format!(
            "{what}: {place} carries Enclave's managed-by label: only the operator makes what it manages"
        ));
    }
    if let Some(reason) = backup_identity(&request.kind.kind, object) {
        return deny(format!(
            "{what} would run as Enclave's backup identity ({reason}), which holds the tenant's backup credentials: only Enclave's backup Jobs may"
        ));
    }
    let data = serde_json::to_value(object).unwrap_or_default();
    match request.kind.kind.as_str() {
        "Service" => {
            let internet = lookup
                .namespace_labels
                .as_ref()
                .and_then(|l| l.get(EXPOSURE))
                .is_some_and(|e| e == "Internet");
            match service_problem(&data["spec"], internet) {
                Some(problem) => deny(format!("{what}: {problem}")),
                None => Verdict::Allow,
            }
        }
        "Ingress" => {
            let names: Vec<String> = lookup
                .tenant
                .as_ref()
                .and_then(|t| t.spec.tls.as_ref())
                .map(|tls| tls.dns_names.clone())
                .unwrap_or_default();
            // In every zone of the tenant: the controller merges canaries and paths by host
            // across namespaces, so an internal zone's Ingress could lend its filter (none).
            let firewall = lookup
                .tenant
                .as_ref()
                .map(|tenant| network::ingress_firewall(tenant, &guard.network))
                .unwrap_or_default();
            let old = request
                .old_object
                .as_ref()
                .map(|o| serde_json::to_value(o).unwrap_or_default());
            let class = guard
                .network
                .ingress_firewall
                .as_ref()
                .and_then(|f| f.ingress_class.as_deref())
                .filter(|_| lookup.tenant.is_some());
            let problem = ingress::ingress_problem(&data, &names)
                .or_else(|| ingress::firewall_problem(old.as_ref(), &data, &firewall))
                .or_else(|| ingress::class_problem(&data, class?));
            match problem {
                Some(problem) => deny(format!("{what}: {problem}")),
                None => Verdict::Allow,
            }
        }
        "RoleBinding" => {
            let role = &data["roleRef"];
            let grantable =
                role["kind"] == "ClusterRole" && GRANTABLE_ROLES.iter().any(|r| role["name"] == *r);
            if grantable {
                Verdict::Allow
            } else {
                deny(format!(
                    "{what}: roleRef may name only the ClusterRoles {} in a tenant namespace, not {} {}; admins are granted through the Tenant's spec.access",
                    GRANTABLE_ROLES.join(" or "),
                    role["kind"].as_str().unwrap_or("?"),
                    role["name"].as_str().unwrap_or("?"),
                ))
            }
        }
        _ => Verdict::Allow,
    }
}

/// Where an object's templates carry the managed-by label, if they do: the Jobs of a CronJob,
/// the pods of a controller, the claims of a StatefulSet would pass for Enclave's.
fn forged_template(kind: &str, object: &DynamicObject) -> Option<&'static str> {
    let data = serde_json::to_value(object).unwrap_or_default();
    let managed =
        |labels: &Value| labels.get(labels::MANAGED_BY).and_then(Value::as_str) == Some(MANAGER);
    if kind == "CronJob" {
        if managed(&data["spec"]["jobTemplate"]["metadata"]["labels"]) {
            return Some("spec.jobTemplate.metadata.labels");
        }
        if managed(&data["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]) {
            return Some("spec.jobTemplate.spec.template.metadata.labels");
        }
    }
    if managed(&data["spec"]["template"]["metadata"]["labels"]) {
        return Some("spec.template.metadata.labels");
    }
    let claims = data["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if claims.iter().any(|c| managed(&c["metadata"]["labels"])) {
        return Some("spec.volumeClaimTemplates[].metadata.labels");
    }
    None
}

/// True for a pod that runs as the backup identity.
fn is_backup_pod(pod: &DynamicObject) -> bool {
    backup_identity("Pod", pod).is_some()
}

/// Why an object's pods would run as the backup identity, if they would: its service account,
/// or the label the backup egress policy selects.
fn backup_identity(kind: &str, object: &DynamicObject) -> Option<String> {
    let data = serde_json::to_value(object).unwrap_or_default();
    let template = match kind {
        "Pod" => data.clone(),
        "CronJob" => data["spec"]["jobTemplate"]["spec"]["template"].clone(),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => data["spec"]["template"].clone(),
        _ => return None,
    };
    let account = template["spec"]["serviceAccountName"]
        .as_str()
        .or_else(|| template["spec"]["serviceAccount"].as_str());
    if account == Some(BACKUP_SERVICE_ACCOUNT) {
        return Some(format!("spec serviceAccountName {BACKUP_SERVICE_ACCOUNT}"));
    }
    if template["metadata"]["labels"].get(BACKUP).is_some() {
        return Some(format!("pod label {BACKUP}"));
    }
    None
}

/// What is wrong with a tenant's own Service, if anything.
fn service_problem(spec: &Value, internet: bool) -> Option<String> {
    match spec["type"].as_str() {
        Some("ExternalName") => {
            return Some(
                "spec.type ExternalName is refused: it would make the ingress controller a proxy to any name".into(),
            );
        }
        Some(kind @ ("NodePort" | "LoadBalancer")) if !internet => {
            return Some(format!(
                "spec.type {kind} is refused outside an internet-facing zone: it would open the zone to the outside"
            ));
        }
        _ => {}
    }
    if spec["externalIPs"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Some(
            "spec.externalIPs is refused: it can capture other tenants' traffic (CVE-2020-8554)"
                .into(),
        );
    }
    None
}

/// The protected parts of a managed claim that a request changes: its labels, its
/// `enclave.dev/` annotations, its owner references and its size.
fn claim_changes(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> Vec<&'static str> {
    let value = |o: Option<&DynamicObject>| serde_json::to_value(o).unwrap_or_default();
    let (old, new) = (value(old), value(new));
    let ours = |v: &Value| -> BTreeMap<String, Value> {
        v["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("enclave.dev/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut changed = Vec::new();
    if old["metadata"]["labels"] != new["metadata"]["labels"] {
        changed.push("labels");
    }
    if ours(&old) != ours(&new) {
        changed.push("enclave.dev/ annotations");
    }
    if old["metadata"]["ownerReferences"] != new["metadata"]["ownerReferences"] {
        changed.push("ownerReferences");
    }
    if old["spec"]["resources"] != new["spec"]["resources"] {
        changed.push("size (spec.resources)");
    }
    changed
}

/// Tenants: what only the operator knows (allowed ports), and a deletion only when confirmed.
fn review_tenant(
    guard: &Guard,
    request: &AdmissionRequest<DynamicObject>,
    exempt: bool,
) -> Verdict {
    if request.operation == Operation::Delete {
        let confirmed = request.old_object.as_ref().and_then(|o| {
            o.metadata
                .annotations
                .as_ref()?
                .get(CONFIRM_DELETE)
                .cloned()
        }) == Some(request.name.clone());
        return if confirmed || exempt {
            Verdict::Allow
        } else {
            Verdict::Deny {
                message: format!(
                    "deleting Tenant {name} decommissions it and destroys its data at its deadline: annotate it {CONFIRM_DELETE}={name} first",
                    name = request.name
                ),
                tenant: Some(request.name.clone()),
            }
        };
    }
    let Some(object) = &request.object else {
        return Verdict::Allow;
    };
    let Ok(tenant) = serde_json::to_value(object).and_then(serde_json::from_value::<Tenant>) else {
        return Verdict::Allow; // the schema refuses what does not parse
    };
    let schedule = tenant
        .spec
        .backup
        .as_ref()
        .map_or(Ok(()), crate::desired::backup::validate_schedule);
    let quota = crate::desired::quota::totals(&tenant).map(drop);
    if let Err(invalid) = network::validate(&tenant, &guard.network)
        .and(schedule)
        .and(quota)
    {
        // Every message names its field; those of a zone name it by its name.
        let message = if invalid.message.starts_with("spec.") {
            invalid.message
        } else {
            format!("spec.zones: {}", invalid.message)
        };
        return Verdict::Deny {
            message,
            tenant: None,
        };
    }
    let retention = tenant.spec.lifecycle.retention();
    if retention < guard.min_retention {
        return Verdict::Deny {
            message: format!(
                "spec.lifecycle.retention: {} is shorter than the platform's minimum of {}s",
                tenant.spec.lifecycle.retention,
                guard.min_retention.as_secs()
            ),
            tenant: None,
        };
    }
    Verdict::Allow
}

/// Annotation a Tenant must carry, with its own name, for a deletion to be accepted.
pub const CONFIRM_DELETE: &str = "enclave.dev/confirm-delete";

/// The verb of an operation, for messages.
#[must_use]
pub fn verb(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect to",
    }
}
