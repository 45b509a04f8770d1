//! ConfigMaps as the caches hold them: long values (the published reports) as digests.

use k8s_openapi::api::core::v1::ConfigMap;
use std::any::Any;
use std::collections::BTreeMap;

/// Marks a cached ConfigMap whose long values are digests ([`digest_value`]): the applier
/// compares the desired ConfigMap's values digested the same way.
pub const DIGESTED: &str = "enclave.dev/cached-digests";

/// Values longer than this are cached as a digest.
const DIGEST_ABOVE: usize = 64;

/// What a cached ConfigMap holds of a value: the value itself when short, its SHA-256 when
/// longer than [`DIGEST_ABOVE`] (the published reports, a few KB per zone, are most of what a
/// thousand minimal tenants cost the operator's memory). A digest is itself longer than that
/// bound, so a value made to look like one is digested again, never taken for one.
#[must_use]
pub fn digest_value(value: &str) -> Option<String> {
    (value.len() > DIGEST_ABOVE).then(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        format!("sha256:{}", crate::units::hex(digest.as_ref()))
    })
}

/// Of a ConfigMap, [`digest_data`]; other kinds are kept whole.
pub(super) fn digest<K: 'static>(object: &mut K) {
    if let Some(config_map) = (object as &mut dyn Any).downcast_mut::<ConfigMap>() {
        digest_data(config_map);
    }
}

/// Replaces a ConfigMap's long values by their digests and marks it [`DIGESTED`] (its keys,
/// and so what someone added, stay visible).
fn digest_data(config_map: &mut ConfigMap) {
    for value in config_map
        .data
        .iter_mut()
        .flat_map(|data| data.values_mut())
    {
        if let Some(digest) = digest_value(value) {
            *value = digest;
        }
    }
    config_map
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DIGESTED.into(), "true".into());
}
