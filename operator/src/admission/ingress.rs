//! The guard's rules for a tenant's own Ingresses, at the shared ingress controller: only the
//! tenant's names, never every host, nothing that configures the controller, and the tenant's
//! firewall (set by [`super::mutate`]) kept as the operator set it, on the firewall's class.

use serde_json::Value;
use std::collections::BTreeMap;

/// What is wrong with the class of a tenant's Ingress, if anything: another controller than
/// the one reading the firewall's annotations (`class`) would serve it unfiltered.
pub(super) fn class_problem(ingress: &Value, class: &str) -> Option<String> {
    let named = [
        (
            "spec.ingressClassName",
            &ingress["spec"]["ingressClassName"],
        ),
        (
            "metadata.annotations[kubernetes.io/ingress.class]",
            &ingress["metadata"]["annotations"][super::mutate::CLASS_ANNOTATION],
        ),
    ];
    named.into_iter().find_map(|(field, value)| {
        let value = value.as_str()?;
        (value != class).then(|| {
            format!(
                "{field} {value} is refused: only the {class} controller enforces the tenant's firewall (network.ingressFirewall)"
            )
        })
    })
}

/// What is wrong with the firewall annotations of a tenant's Ingress, if anything: the operator keeps them from `spec.firewall`, so nobody else may give
/// them another value or remove them, and no other source-range annotation (another prefix,
/// the `allowlist-` spelling a controller might prefer) may stand beside them.
pub(super) fn firewall_problem(
    old: Option<&Value>,
    new: &Value,
    wanted: &BTreeMap<String, Option<String>>,
) -> Option<String> {
    // Room for the operator's values: beside them, the API server caps all annotations at
    // 256 KiB, and an Ingress that filled it could never be given the firewall.
    const ROOM: usize = 64 * 1024;
    if wanted.is_empty() {
        return None;
    }
    let others: usize = new["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !wanted.contains_key(*k))
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if others > ROOM {
        return Some(format!(
            "metadata.annotations hold {others} bytes: at most {ROOM} beside the firewall's, which the operator sets"
        ));
    }
    let annotation = |object: Option<&Value>, key: &str| -> Option<String> {
        object?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    };
    for key in new["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if key.contains("source-range") && !wanted.contains_key(key) {
            return Some(format!(
                "annotation {key} is refused: the tenant's firewall reaches the ingress controller only through {}, which the operator keeps from spec.firewall",
                wanted.keys().cloned().collect::<Vec<_>>().join(" and ")
            ));
        }
    }
    for (key, value) in wanted {
        let now = annotation(Some(new), key);
        let before = annotation(old, key);
        let refused = match (&now, value) {
            (Some(now), Some(value)) => now != value,
            (Some(_), None) => true,
            // Removing what the operator set; a value that must go anyway may go.
            (None, Some(_)) => before.is_some(),
            (None, None) => false,
        };
        if refused {
            let shown = value.as_deref().unwrap_or("absent");
            return Some(format!(
                "metadata.annotations[{key}] may only be the tenant's firewall ({shown}): the operator keeps it from spec.firewall; change the Tenant instead"
            ));
        }
    }
    None
}

/// What is wrong with a tenant's own Ingress, if anything: every host it serves must be one of
/// the tenant's `spec.tls.dnsNames`, and it may not catch every host (a rule without host, a
/// default backend), which would take other tenants' traffic at the shared controller.
pub(super) fn ingress_problem(ingress: &Value, names: &[String]) -> Option<String> {
    // Annotations that reach past the Ingress's own hosts, or put configuration (and so code)
    // into the shared controller, whose own token reads every Secret.
    // `ssl-passthrough` routes at layer 4, past every filter; `satisfy: any` lets a password
    // stand in for the source filter.
    const REACHING: [&str; 9] = [
        "snippet",
        "server-alias",
        "auth-url",
        "auth-signin",
        "upstream-vhost",
        "mirror-",
        "ssl-passthrough",
        "satisfy",
        // Injected into the controller's configuration (CVE-2025-1097).
        "auth-tls-match-cn",
    ];
    for key in ingress["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if REACHING.iter().any(|r| key.contains(r)) {
            return Some(format!(
                "annotation {key} is refused: it reaches past the Ingress's own hosts, or configures the shared ingress controller"
            ));
        }
    }
    let spec = &ingress["spec"];
    for (index, tls) in spec["tls"].as_array().into_iter().flatten().enumerate() {
        for host in tls["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !names.iter().any(|n| n == host) {
                return Some(format!(
                    "spec.tls[{index}].hosts {host} is not one of the tenant's names (spec.tls.dnsNames)"
                ));
            }
        }
    }
    if !spec["defaultBackend"].is_null() {
        return Some("spec.defaultBackend is refused: it would catch every host at the shared ingress controller".into());
    }
    for (index, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        match rule["host"].as_str() {
            None | Some("") => {
                return Some(format!(
                    "spec.rules[{index}] has no host: it would catch every host at the shared ingress controller"
                ));
            }
            Some(host) if !names.iter().any(|n| n == host) => {
                return Some(format!(
                    "spec.rules[{index}].host {host} is not one of the tenant's names (spec.tls.dnsNames: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            Some(_) => {}
        }
    }
    None
}
