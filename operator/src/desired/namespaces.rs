//! One namespace per zone: `<tenant>-<zone>`, tied to the tenant by uid, Pod Security
//! `restricted` enforced, owned by the Tenant so its watch brings drift back.

use super::{Identity, labels};
use enclave_crds::Tenant;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Pod Security admission labels: `restricted` enforced, and reported on audit and warn so a
/// refused pod says why.
pub const POD_SECURITY: [(&str, &str); 4] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
    ("pod-security.kubernetes.io/audit", "restricted"),
    ("pod-security.kubernetes.io/warn", "restricted"),
];

/// The namespaces of every zone of the tenant.
#[must_use]
pub fn zone_namespaces(tenant: &Tenant, identity: &Identity) -> Vec<Namespace> {
    tenant
        .spec
        .zones
        .iter()
        .map(|zone| {
            let mut labels = identity.labels();
            labels.insert(labels::ZONE.to_string(), zone.name.clone());
            // The guard reads it: node ports and load balancers only in internet-facing zones.
            let exposure = match zone.exposure {
                enclave_crds::Exposure::Internet => "Internet",
                enclave_crds::Exposure::Internal => "Internal",
            };
            labels.insert(labels::EXPOSURE.to_string(), exposure.to_string());
            for (key, value) in POD_SECURITY {
                labels.insert(key.to_string(), value.to_string());
            }
            Namespace {
                metadata: ObjectMeta {
                    name: Some(tenant.zone_namespace(&zone.name)),
                    labels: Some(labels),
                    // No owner reference: a namespace holds the tenant's data, which the
                    // garbage collector must never delete (a foreground deletion of the Tenant
                    // would). The operator deletes it at its purge deadline.
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::{TenantFixture, tenant};

    #[test]
    fn one_namespace_per_zone_named_after_tenant_and_zone() {
        let t = tenant("acme");
        let names: Vec<_> = zone_namespaces(&t, &Identity::of(&t).expect("identity"))
            .into_iter()
            .filter_map(|ns| ns.metadata.name)
            .collect();
        assert_eq!(names, ["acme-dmz", "acme-app", "acme-data"]);
    }

    #[test]
    fn namespaces_carry_uid_zone_and_restricted_pod_security() {
        let t = tenant("acme");
        let ns = &zone_namespaces(&t, &Identity::of(&t).expect("identity"))[1];
        let labels = ns.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[labels::TENANT_UID], "uid-acme");
        assert_eq!(labels[labels::ZONE], "app");
        assert_eq!(labels[labels::MANAGED_BY], "enclave-operator");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    }

    #[test]
    fn namespaces_are_never_left_to_the_garbage_collector() {
        let t = tenant("acme");
        let ns = &zone_namespaces(&t, &Identity::of(&t).expect("identity"))[0];
        assert_eq!(ns.metadata.owner_references, None);
    }

    #[test]
    fn custom_zones_give_their_own_namespaces() {
        let t = tenant("beta").with_zones(&["web", "db"]);
        let names: Vec<_> = zone_namespaces(&t, &Identity::of(&t).expect("identity"))
            .into_iter()
            .filter_map(|ns| ns.metadata.name)
            .collect();
        assert_eq!(names, ["beta-web", "beta-db"]);
    }
}
