//! Where a tenant's incidents (R14) are kept and routed, beyond its status: the register, a
//! ConfigMap of the operator's namespace holding the last [`KEPT_IN_REGISTER`] incidents
//! (the status keeps 20), and the alert routing to the tenant's contacts, an
//! `AlertmanagerConfig` of prometheus-operator. Pure.

use super::Identity;
use crate::labels;
use enclave_crds::{ContactRole, Incident, Tenant};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How many incidents the register keeps, newest first.
pub const KEPT_IN_REGISTER: usize = 200;
/// The label naming the tenant of a register. Not the tenant's own labels: the register is
/// the operator's record, never swept nor purged with the tenant's objects, and it outlives
/// the tenant as the record of what happened to it.
pub const REGISTER_LABEL: &str = "enclave.dev/incident-register";
/// The annotation holding the uid of the tenant a register is about: a tenant made again
/// under the same name starts a register of its own.
pub const REGISTER_UID: &str = "enclave.dev/tenant-uid";
/// The register's entry: the incidents as a JSON list.
pub const REGISTER_KEY: &str = "incidents.json";

/// The register's name in the operator's namespace: the tenant's name and the start of its
/// uid, so that a tenant made again under the same name keeps the old one's register whole.
#[must_use]
pub fn register_name(identity: &Identity) -> String {
    let uid: String = identity
        .uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!(
        "enclave-incidents-{}-{}",
        identity.name,
        uid.to_ascii_lowercase()
    )
}

/// The security and operations contacts: who is told about incidents.
#[must_use]
pub fn contacts(tenant: &Tenant) -> Vec<String> {
    tenant
        .spec
        .contacts
        .iter()
        .filter(|c| matches!(c.role, ContactRole::Security | ContactRole::Operations))
        .map(|c| c.email.clone())
        .collect()
}

/// The incidents a register holds, when it is this tenant's (by uid); none otherwise.
#[must_use]
pub fn registered(live: Option<&ConfigMap>, identity: &Identity) -> Vec<Incident> {
    live.filter(|cm| {
        cm.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REGISTER_UID))
            == Some(&identity.uid)
    })
    .and_then(|cm| cm.data.as_ref()?.get(REGISTER_KEY))
    .and_then(|json| serde_json::from_str(json).ok())
    .unwrap_or_default()
}

/// The register after `latest` (the status's incidents): each incident by id, as the status
/// last showed it, newest first, at most [`KEPT_IN_REGISTER`].
#[must_use]
pub fn register(
    identity: &Identity,
    namespace: &str,
    kept: Vec<Incident>,
    latest: &[Incident],
) -> ConfigMap {
    let mut by_id: BTreeMap<String, Incident> =
        kept.into_iter().map(|i| (i.id.clone(), i)).collect();
    for incident in latest {
        by_id.insert(incident.id.clone(), incident.clone());
    }
    let mut incidents: Vec<Incident> = by_id.into_values().collect();
    incidents.sort_by(|a, b| {
        b.opened_at
            .0
            .cmp(&a.opened_at.0)
            .then_with(|| a.id.cmp(&b.id))
    });
    // Full: the oldest warnings go first, so that a flapping workload cannot push a critical
    // incident (broken isolation, failing backups) out of the record.
    while incidents.len() > KEPT_IN_REGISTER {
        let oldest_warning = incidents.iter().rposition(|i| i.severity != "critical");
        incidents.remove(oldest_warning.unwrap_or(incidents.len() - 1));
    }
    let json = serde_json::to_string_pretty(&incidents).unwrap_or_default();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(register_name(identity)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                (REGISTER_LABEL.to_string(), identity.name.clone()),
            ])),
            annotations: Some(BTreeMap::from([(
                REGISTER_UID.to_string(),
                identity.uid.clone(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(REGISTER_KEY.to_string(), json)])),
        ..ConfigMap::default()
    }
}

/// prometheus-operator's `AlertmanagerConfig`.
#[must_use]
pub fn alertmanager_config_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1alpha1", "AlertmanagerConfig"),
        "alertmanagerconfigs",
    )
}

/// The tenant's alert routing, in the operator's namespace (where the operator's alerts come
/// from, so Alertmanager's namespace matcher keeps them): alerts labelled with the tenant go
/// to its security and operations contacts by e-mail, resolved ones too, and on to the
/// platform team's own routes (`continue`). Owned by the Tenant: it goes with it.
#[must_use]
pub fn alert_routing(tenant: &Tenant, identity: &Identity, namespace: &str) -> Value {
    let receiver = format!("tenant-{}", identity.name);
    let emails: Vec<Value> = contacts(tenant)
        .into_iter()
        .map(|to| json!({"to": to, "sendResolved": true}))
        .collect();
    let mut receiver_spec = json!({"name": receiver});
    if !emails.is_empty() {
        receiver_spec["emailConfigs"] = Value::Array(emails);
    }
    json!({
        "metadata": {
            "name": format!("enclave-tenant-{}", identity.name),
            "namespace": namespace,
            "labels": identity.labels(),
            "ownerReferences": identity.owner.iter().collect::<Vec<_>>(),
        },
        "spec": {
            "route": {
                "receiver": receiver,
                "groupBy": ["alertname", "tenant"],
                "matchers": [{"name": "tenant", "value": identity.name, "matchType": "="}],
                "continue": true,
            },
            "receivers": [receiver_spec],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn incident(id: &str, opened: i64, resolved: bool) -> Incident {
        let at = |s: i64| Time(Timestamp::from_second(1_764_633_600 + s).expect("time"));
        Incident {
            id: id.into(),
            type_: "RedundancyLost".into(),
            severity: "warning".into(),
            opened_at: at(opened),
            notified_at: None,
            resolved_at: resolved.then(|| at(opened + 60)),
            summary: "s".into(),
            contacts: vec![],
        }
    }

    #[test]
    fn the_register_keeps_what_the_status_dropped_and_updates_what_it_shows() {
        let t = tenant("acme");
        let identity = Identity::of(&t).expect("identity");
        let kept: Vec<Incident> = (0..i64::try_from(KEPT_IN_REGISTER).expect("small"))
            .map(|i| incident(&format!("old-{i:03}"), i, true))
            .collect();
        let mut reopened = incident("old-199", 199, false);
        reopened.resolved_at = None;
        let latest = vec![incident("new", 10_000, false), reopened.clone()];
        let cm = register(&identity, "enclave-system", kept.clone(), &latest);
        let back = registered(Some(&cm), &identity);
        assert_eq!(back.len(), KEPT_IN_REGISTER);
        assert_eq!(back[0].id, "new");
        assert_eq!(back[1], reopened, "the status's view wins");
        assert!(back.iter().all(|i| i.id != "old-000"), "the oldest goes");
        // A critical incident outlives newer warnings.
        let mut critical = incident("critical-old", -1, true);
        critical.severity = "critical".into();
        let mut with_critical = kept.clone();
        with_critical.push(critical);
        let cm = register(&identity, "enclave-system", with_critical, &latest);
        let back = registered(Some(&cm), &identity);
        assert_eq!(back.len(), KEPT_IN_REGISTER);
        assert!(back.iter().any(|i| i.id == "critical-old"));
        // Not the tenant's labels: never swept nor purged with its objects.
        let labels = cm.metadata.labels.clone().unwrap_or_default();
        assert!(!labels.contains_key(labels::TENANT_UID));
        assert!(!labels.contains_key(labels::TENANT));
        // Another tenant of the same name does not inherit it.
        let mut other = t.clone();
        other.metadata.uid = Some("another".into());
        let other = Identity::of(&other).expect("identity");
        assert!(registered(Some(&cm), &other).is_empty());
    }

    #[test]
    fn alerts_route_to_the_security_and_operations_contacts() {
        let mut t = tenant("acme");
        t.spec.contacts = serde_json::from_value(json!([
            {"email": "sec@acme.example", "role": "Security"},
            {"email": "ops@acme.example", "role": "Operations"},
            {"email": "bill@acme.example", "role": "Billing"},
        ]))
        .expect("contacts");
        let identity = Identity::of(&t).expect("identity");
        let routing = alert_routing(&t, &identity, "enclave-system");
        let route = &routing["spec"]["route"];
        assert_eq!(route["matchers"][0]["value"], "acme");
        assert_eq!(route["receiver"], routing["spec"]["receivers"][0]["name"]);
        let to: Vec<&str> = routing["spec"]["receivers"][0]["emailConfigs"]
            .as_array()
            .expect("emails")
            .iter()
            .filter_map(|e| e["to"].as_str())
            .collect();
        assert_eq!(to, ["sec@acme.example", "ops@acme.example"]);
    }
}
