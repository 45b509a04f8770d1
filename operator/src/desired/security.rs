//! The tenant's security options (R4, R5) as a ConfigMap in every zone, `enclave-security`, for
//! its applications to read: the password policy as concrete parameters, with the Argon2id
//! hashing parameters it implies, and the download threshold in bytes. Changing them rolls
//! nothing; an application reads the mounted file again (a ConfigMap volume is updated in
//! place) or the API.

use super::{Identity, per_zone_config_maps};
use enclave_crds::{PasswordPolicy, Security, Tenant};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;

/// Name of the security options ConfigMap in every zone.
pub const NAME: &str = "enclave-security";

/// What a password policy level means, concretely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordRules {
    /// Shortest password accepted.
    pub min_length: u32,
    /// How many of the four classes (lower, upper, digit, symbol) a password must mix.
    pub min_classes: u32,
    /// Whether passwords found in a dictionary or a breach list are refused.
    pub reject_common: bool,
    /// Argon2id memory, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
}

/// The rules of each level. The hashing parameters follow OWASP's Password Storage Cheat
/// Sheet (Argon2id, m=19 MiB t=2 p=1 at least; m=46 MiB t=1 p=1 equivalent) and RFC 9106's
/// second recommended option (m=64 MiB, t=3, p=4) for the strictest.
#[must_use]
pub fn rules(level: PasswordPolicy) -> PasswordRules {
    match level {
        PasswordPolicy::Standard => PasswordRules {
            min_length: 8,
            min_classes: 3,
            reject_common: true,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
        },
        PasswordPolicy::Strong => PasswordRules {
            min_length: 12,
            min_classes: 3,
            reject_common: true,
            argon2_memory_kib: 47_104,
            argon2_iterations: 1,
            argon2_parallelism: 1,
        },
        PasswordPolicy::Strict => PasswordRules {
            min_length: 16,
            min_classes: 4,
            reject_common: true,
            argon2_memory_kib: 65_536,
            argon2_iterations: 3,
            argon2_parallelism: 4,
        },
    }
}

/// The ConfigMap's entries: one key per parameter, and the whole as `policy.json`.
#[must_use]
pub fn entries(security: &Security) -> BTreeMap<String, String> {
    let level = security.password_policy;
    let r = rules(level);
    let threshold = security
        .download_threshold
        .as_deref()
        .and_then(crate::units::quantity)
        .map(|nano| nano / 1_000_000_000);
    let json = serde_json::json!({
        "password": {
            "policy": format!("{level:?}"),
            "minLength": r.min_length,
            "characterClasses": ["lower", "upper", "digit", "symbol"],
            "minClasses": r.min_classes,
            "rejectCommon": r.reject_common,
            "hash": {
                "algorithm": "argon2id",
                "memoryKiB": r.argon2_memory_kib,
                "iterations": r.argon2_iterations,
                "parallelism": r.argon2_parallelism,
            },
        },
        "download": {"thresholdBytesPerHour": threshold},
    });
    let mut data = BTreeMap::from([
        ("password.policy".to_string(), format!("{level:?}")),
        ("password.minLength".to_string(), r.min_length.to_string()),
        (
            "password.characterClasses".to_string(),
            "lower,upper,digit,symbol".to_string(),
        ),
        ("password.minClasses".to_string(), r.min_classes.to_string()),
        (
            "password.rejectCommon".to_string(),
            r.reject_common.to_string(),
        ),
        (
            "password.hash.algorithm".to_string(),
            "argon2id".to_string(),
        ),
        (
            "password.hash.memoryKiB".to_string(),
            r.argon2_memory_kib.to_string(),
        ),
        (
            "password.hash.iterations".to_string(),
            r.argon2_iterations.to_string(),
        ),
        (
            "password.hash.parallelism".to_string(),
            r.argon2_parallelism.to_string(),
        ),
        ("policy.json".to_string(), format!("{json:#}\n")),
    ]);
    if let Some(bytes) = threshold {
        data.insert(
            "download.thresholdBytesPerHour".to_string(),
            bytes.to_string(),
        );
    }
    data
}

/// The security options in every zone; the defaults (a `Strong` password policy, no download
/// threshold) when the spec names none.
#[must_use]
pub fn config_maps(tenant: &Tenant, identity: &Identity) -> Vec<ConfigMap> {
    let security = tenant.spec.security.clone().unwrap_or_default();
    per_zone_config_maps(tenant, identity, NAME, &entries(&security))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::tenant;

    #[test]
    fn each_level_is_stricter_than_the_one_before() {
        let [standard, strong, strict] = [
            PasswordPolicy::Standard,
            PasswordPolicy::Strong,
            PasswordPolicy::Strict,
        ]
        .map(rules);
        assert!(standard.min_length < strong.min_length && strong.min_length < strict.min_length);
        assert!(strict.min_classes >= strong.min_classes);
        // OWASP's floor for Argon2id: 19 MiB with 2 passes, or more memory with fewer.
        for r in [standard, strong, strict] {
            assert!(u64::from(r.argon2_memory_kib) * u64::from(r.argon2_iterations) >= 38_912);
        }
    }

    #[test]
    fn every_zone_gets_the_options_with_the_threshold_in_bytes() {
        let mut t = tenant("acme");
        t.spec.security = Some(Security {
            password_policy: PasswordPolicy::Strict,
            download_threshold: Some("500Mi".into()),
        });
        let maps = config_maps(&t, &Identity::of(&t).expect("identity"));
        assert_eq!(maps.len(), t.spec.zones.len());
        let data = maps[0].data.clone().expect("data");
        assert_eq!(data["password.minLength"], "16");
        assert_eq!(data["password.hash.algorithm"], "argon2id");
        assert_eq!(data["password.hash.memoryKiB"], "65536");
        assert_eq!(data["download.thresholdBytesPerHour"], "524288000");
        let json: serde_json::Value =
            serde_json::from_str(&data["policy.json"]).expect("policy.json");
        assert_eq!(json["password"]["hash"]["parallelism"], 4);
        assert_eq!(json["download"]["thresholdBytesPerHour"], 524_288_000);
        assert_eq!(maps[0].metadata.name.as_deref(), Some(NAME));
    }

    #[test]
    fn without_options_the_defaults_are_published() {
        let t = tenant("acme");
        let maps = config_maps(&t, &Identity::of(&t).expect("identity"));
        let data = maps[0].data.clone().expect("data");
        assert_eq!(data["password.policy"], "Strong");
        assert_eq!(data["password.minLength"], "12");
        assert!(!data.contains_key("download.thresholdBytesPerHour"));
    }
}
