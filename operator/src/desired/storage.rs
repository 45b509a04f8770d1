//! Replicated, encrypted volumes (R8, R9): a StorageClass per (profile, replicas, encrypted),
//! a claim per volume (or per replica), and a key Secret per zone namespace kept in the
//! operator's namespace.

use super::{Identity, Invalid, labels};
use crate::config::{Config, StorageProfile};
use enclave_crds::{Tenant, Volume, VolumeAccessMode};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet};

/// Label naming the volume of the spec a claim implements.
pub const VOLUME: &str = "enclave.dev/volume";
/// Label set on a claim whose volume left the spec: kept until its purge deadline.
pub const RETAINED: &str = "enclave.dev/retained";
/// Label on a class naming the replica count it gives.
pub const REPLICAS: &str = "enclave.dev/replicas";
/// Label on a class saying whether it encrypts.
pub const ENCRYPTED: &str = "enclave.dev/encrypted";

/// The storage objects of one tenant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageObjects {
    /// The classes its volumes need (shared by every tenant asking for the same).
    pub storage_classes: Vec<StorageClass>,
    /// One claim per volume, and one per replica of a workload mounting a `perReplica`
    /// volume (the names its StatefulSet looks for).
    pub claims: Vec<PersistentVolumeClaim>,
    /// Key Secrets to create, once, in the operator's namespace: one per zone namespace
    /// holding an encrypted volume. `string_data` holds the fixed entries; the entries named
    /// in [`KeySecret::key_fields`] get a fresh random key when the Secret is created.
    pub keys: Vec<KeySecret>,
}

/// A key Secret to create once and never rewrite.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeySecret {
    /// The Secret, without its random entries.
    pub secret: Secret,
    /// Entries that hold the random key.
    pub key_fields: BTreeSet<String>,
}

/// The name of the class giving `replicas` copies on `profile`, encrypted or not.
#[must_use]
pub fn class_name(profile: &str, replicas: i32, encrypted: bool) -> String {
    let suffix = if encrypted { "-encrypted" } else { "" };
    format!("enclave-{profile}-r{replicas}{suffix}")
}

/// The name of the key Secret, in the operator's namespace, of the zone namespace `namespace`.
#[must_use]
pub fn key_secret_name(namespace: &str) -> String {
    format!("enclave-volume-key-{namespace}")
}

/// Every claim name a volume gives: the volume's own name, or one per replica of each workload
/// mounting a `perReplica` volume (`<volume>-<workload>-<ordinal>`, as a StatefulSet names
/// them).
#[must_use]
pub fn claim_names(tenant: &Tenant, volume: &Volume) -> Vec<String> {
    if !volume.per_replica {
        return vec![volume.name.clone()];
    }
    tenant
        .spec
        .workloads
        .iter()
        .filter(|w| w.volume_mounts.iter().any(|m| m.volume == volume.name))
        .flat_map(|w| (0..=w.capacity).map(move |i| format!("{}-{}-{i}", volume.name, w.name)))
        .collect()
}

/// The spec of a claim of `volume` on `class`.
#[must_use]
pub fn claim_spec(volume: &Volume, class: &str) -> PersistentVolumeClaimSpec {
    let mode = match volume.access_mode {
        VolumeAccessMode::ReadWriteOnce => "ReadWriteOnce",
        VolumeAccessMode::ReadWriteMany => "ReadWriteMany",
    };
    PersistentVolumeClaimSpec {
        access_modes: Some(vec![mode.into()]),
        storage_class_name: Some(class.into()),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(volume.size.clone()),
            )])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

/// The labels of the claims of `volume`.
#[must_use]
pub fn claim_labels(identity: &Identity, volume: &Volume) -> BTreeMap<String, String> {
    let mut claim_labels = identity.labels();
    claim_labels.insert(labels::ZONE.into(), volume.zone.clone());
    claim_labels.insert(VOLUME.into(), volume.name.clone());
    claim_labels
}

/// The profile a volume names.
///
/// # Errors
/// [`Invalid`] when the configuration has no such profile, or it cannot encrypt an
/// encrypted volume.
pub fn profile<'a>(volume: &Volume, config: &'a Config) -> Result<&'a StorageProfile, Invalid> {
    let profile = config
        .storage_profiles
        .get(&volume.profile)
        .ok_or_else(|| Invalid {
            reason: "UnknownStorageProfile",
            message: format!(
                "volume {}: storage profile {:?} is not in the operator's configuration (known: {})",
                volume.name,
                volume.profile,
                config
                    .storage_profiles
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    if volume.encrypted && profile.encryption.is_none() {
        return Err(Invalid {
            reason: "EncryptionUnsupported",
            message: format!(
                "volume {}: storage profile {} cannot encrypt; choose another profile or set encrypted: false",
                volume.name, volume.profile
            ),
        });
    }
    Ok(profile)
}

/// The class giving `replicas` copies on `profile`.
#[must_use]
pub fn storage_class(
    name: &str,
    profile: &StorageProfile,
    replicas: i32,
    encrypted: bool,
    operator_namespace: &str,
) -> StorageClass {
    let mut parameters = profile.parameters.clone();
    parameters.insert(
        profile.replicas.parameter.clone(),
        str::replace(&profile.replicas.value, "{replicas}", &replicas.to_string()),
    );
    if let Some(encryption) = profile.encryption.as_ref().filter(|_| encrypted) {
        parameters.extend(encryption.parameters.clone());
        for prefix in &encryption.key_secret_parameters {
            // The CSI sidecars resolve `${pvc.namespace}`: each zone namespace has its own key.
            parameters.insert(
                format!("{prefix}-name"),
                key_secret_name("${pvc.namespace}"),
            );
            parameters.insert(
                format!("{prefix}-namespace"),
                operator_namespace.to_string(),
            );
        }
    }
    StorageClass {
        metadata: ObjectMeta {
            name: Some(class_name(name, replicas, encrypted)),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.into(), labels::MANAGER.into()),
                (REPLICAS.into(), replicas.to_string()),
                (ENCRYPTED.into(), encrypted.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        provisioner: profile.provisioner.clone(),
        parameters: Some(parameters),
        // A released volume is kept: only the operator deletes data, at its deadline.
        reclaim_policy: Some("Retain".into()),
        allow_volume_expansion: Some(true),
        // Provisioned where its first pod is scheduled, so zone spreading is respected.
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..StorageClass::default()
    }
}

/// The classes, claims and keys of every volume of the tenant.
///
/// # Errors
/// [`Invalid`] when a volume names an unknown profile or asks for encryption its profile
/// cannot give.
pub fn storage_objects(
    tenant: &Tenant,
    identity: &Identity,
    config: &Config,
) -> Result<StorageObjects, Invalid> {
    let mut classes = BTreeMap::new();
    let mut claims = Vec::new();
    let mut keys: BTreeMap<String, KeySecret> = BTreeMap::new();
    for volume in &tenant.spec.volumes {
        let profile = profile(volume, config)?;
        let class = class_name(&volume.profile, volume.replicas, volume.encrypted);
        classes.entry(class.clone()).or_insert_with(|| {
            storage_class(
                &volume.profile,
                profile,
                volume.replicas,
                volume.encrypted,
                &config.namespace,
            )
        });
        for name in claim_names(tenant, volume) {
            let mut meta = identity.zone_object(tenant, &volume.zone, &name);
            meta.labels = Some(claim_labels(identity, volume));
            // No owner reference: a claim holds data, and data is deleted by the operator at
            // its deadline, never by the garbage collector.
            meta.owner_references = None;
            claims.push(PersistentVolumeClaim {
                metadata: meta,
                spec: Some(claim_spec(volume, &class)),
                ..PersistentVolumeClaim::default()
            });
        }
        // A key only where the driver reads one (a KMS-backed driver keeps its own).
        if let Some(encryption) = profile
            .encryption
            .as_ref()
            .filter(|e| volume.encrypted && !e.key_secret_parameters.is_empty())
        {
            let namespace = tenant.zone_namespace(&volume.zone);
            let key = keys.entry(namespace.clone()).or_insert_with(|| {
                let mut key_labels = identity.labels();
                key_labels.insert(labels::ZONE.into(), volume.zone.clone());
                KeySecret {
                    secret: Secret {
                        metadata: ObjectMeta {
                            name: Some(key_secret_name(&namespace)),
                            namespace: Some(config.namespace.clone()),
                            labels: Some(key_labels),
                            ..ObjectMeta::default()
                        },
                        type_: Some("Opaque".into()),
                        ..Secret::default()
                    },
                    key_fields: BTreeSet::new(),
                }
            });
            key.key_fields.insert(encryption.key_field.clone());
            key.secret
                .string_data
                .get_or_insert_with(BTreeMap::new)
                .extend(encryption.secret_data.clone());
        }
    }
    Ok(StorageObjects {
        storage_classes: classes.into_values().collect(),
        claims,
        keys: keys.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncryptionParameters, ReplicasParameter};
    use crate::desired::fixtures::tenant;
    use enclave_crds::{VolumeMount, Workload};

    fn longhorn() -> StorageProfile {
        StorageProfile {
            provisioner: "driver.longhorn.io".into(),
            replicas: ReplicasParameter {
                parameter: "numberOfReplicas".into(),
                value: "{replicas}".into(),
            },
            parameters: BTreeMap::from([("dataLocality".into(), "disabled".into())]),
            encryption: Some(EncryptionParameters {
                parameters: BTreeMap::from([("encrypted".into(), "true".into())]),
                key_secret_parameters: vec!["csi.storage.k8s.io/node-stage-secret".into()],
                key_field: "CRYPTO_KEY_VALUE".into(),
                secret_data: BTreeMap::from([("CRYPTO_KEY_PROVIDER".into(), "secret".into())]),
            }),
        }
    }

    fn config() -> Config {
        Config {
            storage_profiles: BTreeMap::from([
                ("default".to_string(), longhorn()),
                (
                    "plain".to_string(),
                    StorageProfile {
                        encryption: None,
                        ..longhorn()
                    },
                ),
            ]),
            ..Config::default()
        }
    }

    fn volume(name: &str, zone: &str, replicas: i32, encrypted: bool) -> Volume {
        Volume {
            name: name.into(),
            zone: zone.into(),
            size: "10Gi".into(),
            replicas,
            encrypted,
            profile: "default".into(),
            ..Volume::default()
        }
    }

    fn build(t: &Tenant) -> Result<StorageObjects, Invalid> {
        storage_objects(t, &Identity::of(t).expect("identity"), &config())
    }

    #[test]
    fn classes_have_deterministic_names_and_carry_replicas_and_encryption() {
        let mut t = tenant("acme");
        t.spec.volumes = vec![
            volume("db", "data", 3, true),
            volume("files", "data", 3, true),
            volume("cache", "app", 5, false),
        ];
        let objects = build(&t).expect("valid");
        let names: Vec<_> = objects
            .storage_classes
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        // One class per (profile, replicas, encrypted), shared by the volumes asking for it.
        assert_eq!(
            names,
            ["enclave-default-r3-encrypted", "enclave-default-r5"]
        );
        let encrypted = &objects.storage_classes[0];
        let params = encrypted.parameters.as_ref().expect("parameters");
        assert_eq!(encrypted.provisioner, "driver.longhorn.io");
        assert_eq!(params["numberOfReplicas"], "3");
        assert_eq!(params["encrypted"], "true");
        assert_eq!(params["dataLocality"], "disabled");
        assert_eq!(
            params["csi.storage.k8s.io/node-stage-secret-name"],
            "enclave-volume-key-${pvc.namespace}"
        );
        assert_eq!(
            params["csi.storage.k8s.io/node-stage-secret-namespace"],
            "enclave-system"
        );
        assert_eq!(encrypted.reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(encrypted.allow_volume_expansion, Some(true));
        let plain = objects.storage_classes[1]
            .parameters
            .as_ref()
            .expect("parameters");
        assert_eq!(plain["numberOfReplicas"], "5");
        assert!(!plain.contains_key("encrypted"));
        assert!(!plain.keys().any(|k| k.contains("secret")));
    }

    #[test]
    fn replica_value_template_maps_counts_to_pools() {
        let profile = StorageProfile {
            provisioner: "rook-ceph.rbd.csi.ceph.com".into(),
            replicas: ReplicasParameter {
                parameter: "pool".into(),
                value: "replicapool-{replicas}".into(),
            },
            ..StorageProfile::default()
        };
        let class = storage_class("ceph", &profile, 3, false, "enclave-system");
        assert_eq!(
            class.parameters.as_ref().expect("parameters")["pool"],
            "replicapool-3"
        );
    }

    #[test]
    fn claims_live_in_the_zone_namespace_without_owner() {
        let mut t = tenant("acme");
        t.spec.volumes = vec![volume("db", "data", 3, true)];
        let objects = build(&t).expect("valid");
        let claim = &objects.claims[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("db"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("acme-data"));
        assert_eq!(claim.metadata.owner_references, None);
        let spec = claim.spec.as_ref().expect("spec");
        assert_eq!(
            spec.storage_class_name.as_deref(),
            Some("enclave-default-r3-encrypted")
        );
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(
            spec.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .expect("requests")["storage"],
            Quantity("10Gi".into())
        );
        let claim_labels = claim.metadata.labels.as_ref().expect("labels");
        assert_eq!(claim_labels[labels::TENANT_UID], "uid-acme");
        assert_eq!(claim_labels[VOLUME], "db");
    }

    #[test]
    fn keys_are_per_zone_namespace_in_the_operator_namespace() {
        let mut t = tenant("acme");
        t.spec.volumes = vec![
            volume("db", "data", 3, true),
            volume("files", "data", 3, true),
            volume("cache", "app", 3, false),
        ];
        let objects = build(&t).expect("valid");
        assert_eq!(objects.keys.len(), 1, "one key for the one encrypted zone");
        let mut kms = config();
        if let Some(e) = kms
            .storage_profiles
            .get_mut("default")
            .and_then(|p| p.encryption.as_mut())
        {
            e.key_secret_parameters.clear();
        }
        let kms_objects =
            storage_objects(&t, &Identity::of(&t).expect("identity"), &kms).expect("valid");
        assert!(
            kms_objects.keys.is_empty(),
            "no key where the driver's KMS keeps them"
        );
        let key = &objects.keys[0];
        assert_eq!(
            key.secret.metadata.name.as_deref(),
            Some("enclave-volume-key-acme-data")
        );
        assert_eq!(
            key.secret.metadata.namespace.as_deref(),
            Some("enclave-system")
        );
        assert_eq!(
            key.key_fields,
            BTreeSet::from(["CRYPTO_KEY_VALUE".to_string()])
        );
        // The builder holds no key material: the key is generated when the Secret is created.
        let data = key.secret.string_data.as_ref().expect("fixed entries");
        assert_eq!(data.len(), 1);
        assert_eq!(data["CRYPTO_KEY_PROVIDER"], "secret");
    }

    #[test]
    fn per_replica_volumes_give_a_claim_per_replica() {
        let mut t = tenant("acme");
        let mut v = volume("data", "data", 3, false);
        v.per_replica = true;
        t.spec.volumes = vec![v];
        t.spec.workloads = vec![Workload {
            name: "db".into(),
            zone: "data".into(),
            image: "x".into(),
            capacity: 2,
            volume_mounts: vec![VolumeMount {
                volume: "data".into(),
                mount_path: "/var/lib/db".into(),
                read_only: false,
            }],
            ..Workload::default()
        }];
        let names: Vec<_> = build(&t)
            .expect("valid")
            .claims
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["data-db-0", "data-db-1", "data-db-2"]);
    }

    #[test]
    fn unknown_profile_and_unencryptable_profile_are_refused() {
        let mut t = tenant("acme");
        let mut v = volume("db", "data", 3, true);
        v.profile = "fast".into();
        t.spec.volumes = vec![v.clone()];
        let error = build(&t).expect_err("unknown profile");
        assert_eq!(error.reason, "UnknownStorageProfile");
        assert!(
            error.message.contains("default, plain"),
            "{}",
            error.message
        );
        v.profile = "plain".into();
        t.spec.volumes = vec![v.clone()];
        assert_eq!(
            build(&t).expect_err("plain").reason,
            "EncryptionUnsupported"
        );
        v.encrypted = false;
        t.spec.volumes = vec![v];
        assert!(build(&t).is_ok());
    }
}
