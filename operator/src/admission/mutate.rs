//! The guard's one mutation: the tenant's firewall set on an Ingress as it is created or
//! changed, so that the shared ingress controller never serves a tenant's Ingress without it,
//! not even for the moment before the operator would patch it. Pure, like [`super::review`].

use super::{Guard, Lookup};
use crate::desired::network::{firewall_patch, ingress_firewall};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::Value;

/// The annotation older Ingresses name their class by.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The JSON patch giving an Ingress of a tenant zone exactly the firewall's annotations, or
/// `None` when it needs none (another kind, not a tenant's namespace, the operator's own
/// request, or already carried).
#[must_use]
pub fn firewall_mutation(
    guard: &Guard,
    request: &AdmissionRequest<DynamicObject>,
    lookup: &Lookup,
) -> Option<Patch> {
    let user = request.user_info.username.clone().unwrap_or_default();
    if request.kind.kind != "Ingress"
        || !matches!(request.operation, Operation::Create | Operation::Update)
        || guard.operator_users.contains(&user)
    {
        return None;
    }
    let tenant = lookup.tenant.as_ref()?;
    let object = request.object.as_ref()?;
    let wanted = ingress_firewall(tenant, &guard.network);
    let mut operations = Vec::new();
    // No class: the class of the controller that reads the firewall, not the cluster's
    // default (which may be another controller's).
    let class = guard
        .network
        .ingress_firewall
        .as_ref()
        .and_then(|f| f.ingress_class.clone());
    let classless = object.data["spec"]["ingressClassName"].is_null()
        && object
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(CLASS_ANNOTATION));
    if let Some(class) = class.filter(|_| classless) {
        let spec = if object.data["spec"].is_object() {
            PointerBuf::parse("/spec/ingressClassName").ok()?
        } else {
            return None; // no spec: the API server refuses it anyway
        };
        operations.push(PatchOperation::Add(AddOperation {
            path: spec,
            value: Value::String(class),
        }));
    }
    let Some(changes) = firewall_patch(object.metadata.annotations.as_ref(), &wanted) else {
        return (!operations.is_empty()).then_some(Patch(operations));
    };
    let annotations = PointerBuf::parse("/metadata/annotations").ok()?;
    if object.metadata.annotations.is_none() {
        // No annotations yet: add the object whole, with only the values to set.
        let set: serde_json::Map<String, Value> = changes
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Value::String(v.clone()?))))
            .collect();
        operations.push(PatchOperation::Add(AddOperation {
            path: annotations,
            value: Value::Object(set),
        }));
    } else {
        for (key, value) in changes {
            let path = annotations.with_trailing_token(key.as_str());
            operations.push(match value {
                // `add` on an object member replaces it when present.
                Some(value) => PatchOperation::Add(AddOperation {
                    path,
                    value: Value::String(value),
                }),
                None => PatchOperation::Remove(RemoveOperation { path }),
            });
        }
    }
    Some(Patch(operations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(user: &str, annotations: Option<Value>) -> AdmissionRequest<DynamicObject> {
        let mut ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": "acme-web"},
            "spec": {"rules": [{"host": "shop.acme.example"}]}});
        if let Some(annotations) = annotations {
            ingress["metadata"]["annotations"] = annotations;
        }
        let review: kube::core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_value(json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "1",
                    "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
                    "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
                    "name": "shop", "namespace": "acme-web", "operation": "CREATE",
                    "userInfo": {"username": user}, "object": ingress, "dryRun": false}
            }))
            .expect("review");
        review.try_into().expect("request")
    }

    fn lookup() -> Lookup {
        let tenant = serde_json::from_value(json!({"apiVersion": "enclave.dev/v1alpha1",
            "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"firewall": {"allowCidrs": ["198.51.100.0/24"], "denyCidrs": ["198.51.100.0/28"]}}}))
        .expect("tenant");
        Lookup {
            tenant: Some(tenant),
            ..Lookup::default()
        }
    }

    /// The Ingress's annotations once `patch` is applied.
    fn patched(annotations: Option<Value>, patch: &Patch) -> Value {
        let mut doc = json!({"metadata": {}, "spec": {"rules": []}});
        if let Some(a) = annotations {
            doc["metadata"]["annotations"] = a;
        }
        json_patch::patch(&mut doc, patch).expect("applies");
        assert_eq!(
            doc["spec"]["ingressClassName"], "nginx",
            "the firewall's class given"
        );
        doc["metadata"]["annotations"].clone()
    }

    #[test]
    fn an_ingress_is_given_the_firewall_as_it_is_made() {
        let guard = Guard::default();
        let patch = firewall_mutation(&guard, &request("alice", None), &lookup()).expect("patch");
        assert_eq!(
            patched(None, &patch),
            json!({"nginx.ingress.kubernetes.io/whitelist-source-range": "198.51.100.0/24",
                   "nginx.ingress.kubernetes.io/denylist-source-range": "198.51.100.0/28"})
        );
        // A wider value and another spelling are replaced and removed.
        let mine = json!({"nginx.ingress.kubernetes.io/whitelist-source-range": "0.0.0.0/0",
            "nginx.ingress.kubernetes.io/allowlist-source-range": "0.0.0.0/0", "team": "web"});
        let patch = firewall_mutation(&guard, &request("alice", Some(mine.clone())), &lookup())
            .expect("patch");
        assert_eq!(
            patched(Some(mine), &patch),
            json!({"nginx.ingress.kubernetes.io/whitelist-source-range": "198.51.100.0/24",
                   "nginx.ingress.kubernetes.io/denylist-source-range": "198.51.100.0/28",
                   "team": "web"})
        );
    }

    #[test]
    fn nothing_to_change_no_patch() {
        let guard = Guard::default();
        let carried = json!({"nginx.ingress.kubernetes.io/whitelist-source-range": "198.51.100.0/24",
            "nginx.ingress.kubernetes.io/denylist-source-range": "198.51.100.0/28",
            "kubernetes.io/ingress.class": "nginx"});
        assert!(firewall_mutation(&guard, &request("alice", Some(carried)), &lookup()).is_none());
        // Outside a tenant's namespaces, and for the operator itself, nothing is changed.
        assert!(firewall_mutation(&guard, &request("alice", None), &Lookup::default()).is_none());
        let operator = guard.operator_users[0].clone();
        assert!(firewall_mutation(&guard, &request(&operator, None), &lookup()).is_none());
    }
}
