//! Backups (R10): in each zone holding volumes, a CronJob runs restic over every claim of the
//! zone into the tenant's repository (`<bucket>/enclave/<tenant uid>`): incremental,
//! deduplicated, encrypted. The repository password and the store's credentials never land in
//! a tenant namespace: an init container fetches them from the operator with a short-lived,
//! audience-bound service account token, into memory shared with the restic container.

use super::{Identity, Invalid, storage};
use crate::config::BackupConfig;
use enclave_crds::{Backup, Tenant};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, SeccompProfile, ServiceAccount, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub mod now;

/// Name of the CronJob and of the service account its pods run as, in each zone.
pub const NAME: &str = "enclave-backup";
/// Audience of the token the backup pods present to the operator.
pub const AUDIENCE: &str = "enclave-backup";
/// Label on backup Jobs and pods.
pub const BACKUP: &str = "enclave.dev/backup";
/// ConfigMap holding the CA that signs the operator's endpoint, in each zone with backups.
pub const OPERATOR_CA: &str = "enclave-operator-ca";
/// Where the credentials are written (memory), for the restic container.
pub const CREDENTIALS_DIR: &str = "/run/enclave";
/// Where the claims are mounted, one directory each.
pub const DATA_ROOT: &str = "/data";
/// Entries the credentials directory holds.
pub const PASSWORD_FILE: &str = "restic-password";
/// The store's access key id.
pub const ACCESS_KEY_FILE: &str = "aws-access-key-id";
/// The store's secret access key.
pub const SECRET_KEY_FILE: &str = "aws-secret-access-key";

/// What the restic container runs, with the environment of [`backup_env`]. Initialises the
/// repository on first use, clears stale locks (a pod killed mid-run leaves one), backs up,
/// then applies the retention with `forget --prune`. `--retry-lock` waits out another zone's
/// prune instead of failing.
pub const BACKUP_SCRIPT: &str = r#"set -eu
AWS_ACCESS_KEY_ID=$(cat "$CREDENTIALS_DIR/aws-access-key-id")
AWS_SECRET_ACCESS_KEY=$(cat "$CREDENTIALS_DIR/aws-secret-access-key")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
restic cat config >/dev/null 2>&1 || restic init
restic unlock
restic backup --retry-lock 30m --json --host "$BACKUP_HOST" --tag "$BACKUP_TAG" "$BACKUP_ROOT"
restic forget --retry-lock 30m --host "$BACKUP_HOST" --tag "$BACKUP_TAG" --prune \
  --keep-daily "$KEEP_DAILY" --keep-weekly "$KEEP_WEEKLY" --keep-monthly "$KEEP_MONTHLY"
"#;

/// The objects of the tenant's backups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupObjects {
    /// One per zone with volumes: who the backup pods run as.
    pub service_accounts: Vec<ServiceAccount>,
    /// One per zone with volumes.
    pub cron_jobs: Vec<CronJob>,
    /// The CA of the operator's endpoint, per zone with volumes.
    pub operator_ca: Vec<ConfigMap>,
    /// The repository password, created once in the operator's namespace.
    pub password: Option<storage::KeySecret>,
    /// Egress of the backup pods: the operator (credentials) and the object store (HTTPS).
    pub network_policies: Vec<NetworkPolicy>,
}

/// The port of an `https://host[:port]/path` URL (443 when it names none).
#[must_use]
pub fn url_port(url: &str) -> i32 {
    url.trim_start_matches("https://")
        .split('/')
        .next()
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(443)
}

/// The name of the Secret, in the operator's namespace, holding a tenant's repository password.
#[must_use]
pub fn password_secret_name(tenant: &str) -> String {
    format!("enclave-backup-{tenant}")
}

/// The tenant's restic repository: one per tenant, keyed by its uid.
#[must_use]
pub fn repository(backup: &Backup, uid: &str) -> String {
    format!(
        "s3:{}/{}/enclave/{uid}",
        backup.destination.endpoint.trim_end_matches('/'),
        backup.destination.bucket
    )
}

/// The environment of the restic container of `zone`.
#[must_use]
pub fn backup_env(backup: &Backup, identity: &Identity, zone: &str) -> Vec<(String, String)> {
    let r = &backup.retention;
    [
        ("RESTIC_REPOSITORY", repository(backup, &identity.uid)),
        (
            "RESTIC_PASSWORD_FILE",
            format!("{CREDENTIALS_DIR}/{PASSWORD_FILE}"),
        ),
        ("RESTIC_CACHE_DIR", "/cache".into()),
        ("CREDENTIALS_DIR", CREDENTIALS_DIR.into()),
        ("BACKUP_ROOT", DATA_ROOT.into()),
        ("BACKUP_HOST", identity.name.clone()),
        ("BACKUP_TAG", zone.into()),
        ("KEEP_DAILY", r.daily.to_string()),
        ("KEEP_WEEKLY", r.weekly.to_string()),
        ("KEEP_MONTHLY", r.monthly.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A pod running `script` with restic over `claims` (mounted at `/data/<claim>`, read-only
/// for backups), its credentials fetched first by the init container from the broker.
#[must_use]
pub fn restic_pod(
    config: &BackupConfig,
    credentials_url: &str,
    claims: &[String],
    read_only: bool,
    script: &str,
    env: Vec<(String, String)>,
) -> PodSpec {
    let mut volumes = vec![
        empty_dir("credentials", true),
        empty_dir("cache", false),
        empty_dir("tmp", false),
        Volume {
            name: "token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(AUDIENCE.into()),
                        expiration_seconds: Some(600),
                        path: "token".into(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "operator-ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: OPERATOR_CA.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut data_mounts = vec![
        mount("credentials", CREDENTIALS_DIR, true),
        mount("cache", "/cache", false),
        mount("tmp", "/tmp", false),
    ];
    // Volumes are named by position: a claim's name (a per-replica one, `<volume>-<workload>-<i>`)
    // can be longer than a volume name may be (a DNS label, 63 characters). The mount path
    // keeps the claim's name, which the scripts read.
    for (index, claim) in claims.iter().enumerate() {
        volumes.push(Volume {
            name: format!("data-{index}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: read_only.then_some(true),
            }),
            ..Volume::default()
        });
        data_mounts.push(mount(
            &format!("data-{index}"),
            &format!("{DATA_ROOT}/{claim}"),
            read_only,
        ));
    }
    let env = env
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..EnvVar::default()
        })
        .collect();
    PodSpec {
        service_account_name: Some(NAME.into()),
        automount_service_account_token: Some(false),
        restart_policy: Some("Never".into()),
        security_context: Some(pod_security()),
        init_containers: Some(vec![Container {
            name: "credentials".into(),
            image: Some(config.credentials_image.clone()),
            args: Some(vec![
                "credentials".into(),
                "--url".into(),
                credentials_url.into(),
                "--token".into(),
                "/var/run/secrets/enclave/token".into(),
                "--ca".into(),
                "/var/run/secrets/enclave-ca/ca.crt".into(),
                "--out".into(),
                CREDENTIALS_DIR.into(),
            ]),
            volume_mounts: Some(vec![
                mount("credentials", CREDENTIALS_DIR, false),
                mount("token", "/var/run/secrets/enclave", true),
                mount("operator-ca", "/var/run/secrets/enclave-ca", true),
            ]),
            security_context: Some(super::restricted_container()),
            ..Container::default()
        }]),
        containers: vec![Container {
            name: "restic".into(),
            image: Some(config.image.clone()),
            command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            env: Some(env),
            volume_mounts: Some(data_mounts),
            security_context: Some(super::restricted_container()),
            ..Container::default()
        }],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// The credentials URL the pods are given: the configuration's, else the guard's.
#[must_use]
pub fn credentials_url(config: &BackupConfig, broker_url: Option<&str>) -> String {
    config
        .credentials_url
        .as_deref()
        .or(broker_url)
        .unwrap_or("https://enclave-operator.enclave-system.svc:9443/credentials")
        .to_string()
}

/// The restricted pod security context of every restic pod: a fixed non-root user.
pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65_532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, memory: bool) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".into()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Refuses a schedule that is not a cron schedule (the guard at admission, the controller
/// before anything is applied).
///
/// # Errors
/// [`Invalid`] naming `spec.backup.schedule`.
pub fn validate_schedule(backup: &enclave_crds::Backup) -> Result<(), Invalid> {
    // As the CronJob controller reads it: five fields (or a macro such as @daily), none of
    // the extensions (L, W, #) croner would accept and the API server would refuse.
    let schedule = backup.schedule.trim();
    let fields = schedule.split_whitespace().count();
    let extended = schedule.contains(['L', 'W', '#']);
    if (!schedule.starts_with('@') && fields != 5)
        || extended
        || croner::Cron::new(schedule).parse().is_err()
    {
        return Err(Invalid {
            reason: "InvalidSchedule",
            message: format!(
                "spec.backup.schedule: {:?} is not a cron schedule such as \"0 2 * * *\"",
                backup.schedule
            ),
        });
    }
    Ok(())
}

/// The backup objects of every zone holding volumes; none without `spec.backup`. Backups are
/// suspended while the tenant is stopped, so the last state before a decommissioning stays.
///
/// # Errors
/// [`Invalid`] when the schedule is not a cron schedule.
pub fn backup_objects(
    tenant: &Tenant,
    identity: &Identity,
    config: &BackupConfig,
    cluster_cidrs: &[String],
    namespace: &str,
    operator: (Option<&str>, Option<&str>),
) -> Result<BackupObjects, Invalid> {
    let (operator_ca, broker_url) = operator;
    let credentials_url = credentials_url(config, broker_url);
    let mut objects = BackupObjects::default();
    let Some(backup) = &tenant.spec.backup else {
        return Ok(objects);
    };
    validate_schedule(backup)?;
    objects.password = Some(storage::KeySecret {
        secret: k8s_openapi::api::core::v1::Secret {
            metadata: ObjectMeta {
                name: Some(password_secret_name(&identity.name)),
                namespace: Some(namespace.into()),
                labels: Some(identity.labels()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            ..k8s_openapi::api::core::v1::Secret::default()
        },
        key_fields: ["password".to_string()].into(),
    });
    let mut claims_by_zone: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for volume in &tenant.spec.volumes {
        claims_by_zone
            .entry(volume.zone.as_str())
            .or_default()
            .extend(storage::claim_names(tenant, volume));
    }
    for (zone, claims) in claims_by_zone {
        let mut meta = identity.zone_object(tenant, zone, NAME);
        objects.service_accounts.push(ServiceAccount {
            metadata: meta.clone(),
            // The only token its pods get is the projected, audience-bound one below.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        });
        if let Some(ca) = operator_ca {
            objects.operator_ca.push(ConfigMap {
                metadata: identity.zone_object(tenant, zone, OPERATOR_CA),
                data: Some(BTreeMap::from([("ca.crt".to_string(), ca.to_string())])),
                ..ConfigMap::default()
            });
        }
        let mut pod_labels = meta.labels.clone().unwrap_or_default();
        pod_labels.insert(BACKUP.into(), "true".into());
        objects.network_policies.push(NetworkPolicy {
            metadata: identity.zone_object(tenant, zone, "enclave-backup-egress"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(BACKUP.to_string(), "true".to_string())])),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(backup_egress(
                    // The operator's credentials broker, on its port only.
                    NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(LabelSelector {
                                match_labels: Some(BTreeMap::from([(
                                    "kubernetes.io/metadata.name".to_string(),
                                    namespace.to_string(),
                                )])),
                                ..LabelSelector::default()
                            }),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![NetworkPolicyPort {
                            port: Some(IntOrString::Int(url_port(&credentials_url))),
                            protocol: Some("TCP".into()),
                            ..NetworkPolicyPort::default()
                        }]),
                    },
                    config,
                    cluster_cidrs,
                )),
                ..NetworkPolicySpec::default()
            }),
        });
        meta.labels = Some(pod_labels.clone());
        let env = backup_env(backup, identity, zone);
        let pod = restic_pod(config, &credentials_url, &claims, true, BACKUP_SCRIPT, env);
        objects.cron_jobs.push(CronJob {
            metadata: meta.clone(),
            spec: Some(CronJobSpec {
                schedule: backup.schedule.clone(),
                time_zone: Some("Etc/UTC".into()),
                // One backup of a zone at a time; a late one is skipped, not piled up.
                concurrency_policy: Some("Forbid".into()),
                starting_deadline_seconds: Some(3600),
                suspend: Some(!tenant.is_running()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels.clone()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(JobSpec {
                        backoff_limit: Some(2),
                        active_deadline_seconds: Some(6 * 3600),
                        template: PodTemplateSpec {
                            metadata: Some(ObjectMeta {
                                labels: Some(pod_labels),
                                ..ObjectMeta::default()
                            }),
                            spec: Some(pod),
                        },
                        ..JobSpec::default()
                    }),
                },
            }),
            ..CronJob::default()
        });
    }
    Ok(objects)
}

#[cfg(test)]
mod tests;

/// The backup pods' egress: the broker, and the object store where the configuration says it
/// is, never the cluster's own ranges (another tenant's pods). A rule with an empty `to` would
/// let them reach every destination: when every store range lies inside the cluster's, there is
/// no store rule at all.
fn backup_egress(
    broker: NetworkPolicyEgressRule,
    config: &BackupConfig,
    cluster_cidrs: &[String],
) -> Vec<NetworkPolicyEgressRule> {
    let store: Vec<NetworkPolicyPeer> = config
        .store_cidrs
        .iter()
        .filter_map(|cidr| crate::desired::network::outside_cluster(cidr, cluster_cidrs))
        .map(|block| NetworkPolicyPeer {
            ip_block: Some(block),
            ..NetworkPolicyPeer::default()
        })
        .collect();
    let mut rules = vec![broker];
    if !store.is_empty() {
        rules.push(NetworkPolicyEgressRule {
            to: Some(store),
            ports: Some(vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(config.store_port)),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            }]),
        });
    }
    rules
}
