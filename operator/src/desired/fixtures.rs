//! Tenant builders for unit tests: `tenant("acme").with_zones(&["web"])`.

use enclave_crds::{Tenant, TenantSpec, Zone};

/// A tenant as read from the API server: default spec, a name and a uid.
pub fn tenant(name: &str) -> Tenant {
    let spec: TenantSpec = serde_json::from_str("{}").expect("default spec");
    let mut t = Tenant::new(name, spec);
    t.metadata.uid = Some(format!("uid-{name}"));
    t.metadata.generation = Some(1);
    t
}

/// Fixture helpers.
pub trait TenantFixture {
    /// Replaces the zones by internal zones of these names.
    fn with_zones(self, names: &[&str]) -> Self;
}

impl TenantFixture for Tenant {
    fn with_zones(mut self, names: &[&str]) -> Self {
        self.spec.zones = names
            .iter()
            .map(|n| Zone {
                name: (*n).to_string(),
                ..Zone::default()
            })
            .collect();
        self
    }
}
