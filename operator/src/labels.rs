//! The names every managed object carries: the field manager, the finalizer, and the labels and
//! annotations that tie an object to its tenant. A leaf: every other module may use it.

/// The one field manager of every server-side apply the operator makes.
pub const MANAGER: &str = "enclave-operator";
/// Finalizer holding a deleted Tenant while its data is retained.
pub const FINALIZER: &str = "enclave.dev/retain-data";

/// Standard label naming the manager.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The tenant's name, for people; never trusted for selection.
pub const TENANT: &str = "enclave.dev/tenant";
/// The tenant's uid: what ties an object to its tenant, since a name can be reused.
pub const TENANT_UID: &str = "enclave.dev/tenant-uid";
/// The zone a namespace implements.
pub const ZONE: &str = "enclave.dev/zone";
/// On a zone namespace: `Internet` when the zone faces the internet, else `Internal`.
pub const EXPOSURE: &str = "enclave.dev/exposure";
/// Set on a namespace or claim that left the spec: when its retained data is purged.
pub const PURGE_AFTER: &str = "enclave.dev/purge-after";

/// Selector of every object the operator manages.
#[must_use]
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}
