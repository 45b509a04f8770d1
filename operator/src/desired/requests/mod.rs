//! The Jobs of on-demand requests (R12): a restore runs restic in each zone of the volumes it
//! restores; an export dumps the latest backup of every zone and the tenant's objects into one
//! archive, encrypted with a password of its own.

use super::backup::{self, DATA_ROOT, restic_pod};
use super::{Identity, Invalid, storage};
use crate::config::BackupConfig;
use enclave_crds::{Tenant, TenantExport, TenantRestore};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Label naming the request a Job works for.
pub const REQUEST: &str = "enclave.dev/request";

/// What a restore Job runs, after the credentials are fetched: each claim restored from the
/// snapshot (the latest of its zone unless an id is given), files not in it deleted, so the
/// volume holds exactly what was backed up.
pub const RESTORE_SCRIPT: &str = r#"set -eu
AWS_ACCESS_KEY_ID=$(cat "$CREDENTIALS_DIR/aws-access-key-id")
AWS_SECRET_ACCESS_KEY=$(cat "$CREDENTIALS_DIR/aws-secret-access-key")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
for claim in $CLAIMS; do
  restic restore --retry-lock 30m --host "$BACKUP_HOST" --tag "$BACKUP_TAG" --delete \
    --target "$BACKUP_ROOT/$claim" "$SNAPSHOT:$BACKUP_ROOT/$claim"
done
"#;

/// What the export Job runs: the latest snapshot of each zone as a tar, the tenant's objects,
/// all in one tar whose SHA-256 is reported, stored encrypted (a restic repository of its own,
/// under the export's password) at `EXPORT_REPOSITORY`.
pub const EXPORT_SCRIPT: &str = r#"set -eu
mkdir -p "$WORK/export"
for zone in $ZONES; do
  restic dump --retry-lock 30m --host "$BACKUP_HOST" --tag "$zone" --archive tar latest "$BACKUP_ROOT" > "$WORK/export/$zone.tar"
done
cp "$OBJECTS" "$WORK/export/objects.yaml"
tar -C "$WORK/export" -cf "$WORK/export.tar" .
sum=$(sha256sum "$WORK/export.tar" | cut -d' ' -f1)
RESTIC_REPOSITORY="$EXPORT_REPOSITORY" RESTIC_PASSWORD_FILE="$EXPORT_PASSWORD_FILE" restic init
RESTIC_REPOSITORY="$EXPORT_REPOSITORY" RESTIC_PASSWORD_FILE="$EXPORT_PASSWORD_FILE" \
  restic backup --stdin --stdin-filename export.tar < "$WORK/export.tar"
printf 'sha256=%s\n' "$sum" > "$TERMINATION_LOG"
"#;

/// The name of the Secret, in the operator's namespace, holding an export's password.
#[must_use]
pub fn export_password_name(export: &str) -> String {
    format!("enclave-export-{export}")
}

/// The name of the Secret, in the operator's namespace, holding the objects an export takes.
#[must_use]
pub fn export_objects_name(export: &str) -> String {
    format!("enclave-export-{export}-objects")
}

/// Where an export's encrypted archive goes.
///
/// # Errors
/// [`Invalid`] when the tenant has no backups to export from.
pub fn export_location(tenant: &Tenant, uid: &str, export: &str) -> Result<String, Invalid> {
    let backup = tenant.spec.backup.as_ref().ok_or_else(no_backups)?;
    Ok(format!(
        "s3:{}/{}/enclave-exports/{uid}/{export}",
        backup.destination.endpoint.trim_end_matches('/'),
        backup.destination.bucket
    ))
}

fn no_backups() -> Invalid {
    Invalid {
        reason: "NoBackups",
        message: "the tenant has no spec.backup: there is nothing to restore or export from".into(),
    }
}

fn job(meta: ObjectMeta, pod: PodSpec) -> Job {
    Job {
        metadata: meta.clone(),
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(12 * 3600),
            ttl_seconds_after_finished: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: meta.labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The restore Jobs: one per zone holding a volume to restore.
///
/// # Errors
/// [`Invalid`] when the tenant has no backups, or a volume named is not in its spec.
pub fn restore_jobs(
    request: &TenantRestore,
    tenant: &Tenant,
    identity: &Identity,
    config: &BackupConfig,
    broker_url: Option<&str>,
) -> Result<Vec<Job>, Invalid> {
    let backup_spec = tenant.spec.backup.as_ref().ok_or_else(no_backups)?;
    if let Some(unknown) = request
        .spec
        .volumes
        .iter()
        .find(|v| !tenant.spec.volumes.iter().any(|t| &t.name == *v))
    {
        return Err(Invalid {
            reason: "UnknownVolume",
            message: format!("volume {unknown} is not in the tenant's spec.volumes"),
        });
    }
    let name = request.metadata.name.clone().unwrap_or_default();
    let mut claims_by_zone: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for volume in tenant
        .spec
        .volumes
        .iter()
        .filter(|v| request.spec.volumes.is_empty() || request.spec.volumes.contains(&v.name))
    {
        claims_by_zone
            .entry(volume.zone.as_str())
            .or_default()
            .extend(storage::claim_names(tenant, volume));
    }
    let url = backup::credentials_url(config, broker_url);
    Ok(claims_by_zone
        .into_iter()
        .map(|(zone, claims)| {
            let mut meta = identity.zone_object(tenant, zone, &format!("enclave-restore-{name}"));
            meta.owner_references = None;
            if let Some(labels) = meta.labels.as_mut() {
                labels.insert(REQUEST.into(), name.clone());
                // Selected by the zone's backup egress policy: it reaches the broker and the
                // store as the backup pods do.
                labels.insert(backup::BACKUP.into(), "true".into());
            }
            let mut env = backup::backup_env(backup_spec, identity, zone);
            env.push(("CLAIMS".into(), claims.join(" ")));
            env.push(("SNAPSHOT".into(), request.spec.snapshot.clone()));
            job(
                meta,
                restic_pod(config, &url, &claims, false, RESTORE_SCRIPT, env),
            )
        })
        .collect())
}

/// The export Job, in the operator's namespace (where the repository password and the store's
/// credentials are): it reads the repository, never a tenant's volume.
///
/// # Errors
/// [`Invalid`] when the tenant has no backups.
pub fn export_job(
    request: &TenantExport,
    tenant: &Tenant,
    identity: &Identity,
    config: &BackupConfig,
    namespace: &str,
) -> Result<Job, Invalid> {
    let name = request.metadata.name.clone().unwrap_or_default();
    let mut zones: Vec<&str> = tenant
        .spec
        .volumes
        .iter()
        .map(|v| v.zone.as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let env = vec![
        (
            "EXPORT_REPOSITORY",
            export_location(tenant, &identity.uid, &name)?,
        ),
        (
            "EXPORT_PASSWORD_FILE",
            "/run/enclave/export/password".into(),
        ),
        ("ZONES", zones.join(" ")),
        ("OBJECTS", "/run/enclave/objects/objects.yaml".into()),
        ("TERMINATION_LOG", "/dev/termination-log".into()),
    ];
    let secrets = [
        (
            "export-password",
            export_password_name(&name),
            "/run/enclave/export",
        ),
        (
            "objects",
            export_objects_name(&name),
            "/run/enclave/objects",
        ),
    ];
    repository_job(
        &format!("enclave-export-{name}"),
        Some(&name),
        EXPORT_SCRIPT,
        (tenant, identity),
        config,
        namespace,
        &env,
        &secrets,
    )
}

/// What the purge Job runs: every snapshot of the tenant's repository forgotten and pruned,
/// then checked: it fails while any snapshot remains.
pub const PURGE_SCRIPT: &str = r#"set -eu
if ! restic cat config >/dev/null 2>&1; then
  echo "no repository at $RESTIC_REPOSITORY: nothing to purge"
  exit 0
fi
restic unlock
ids=$(restic snapshots --retry-lock 30m --host "$BACKUP_HOST" --json | grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4)
if [ -n "$ids" ]; then
  restic forget --retry-lock 30m --prune $ids
fi
left=$(restic snapshots --host "$BACKUP_HOST" --json | grep -o '"id":"[0-9a-f]\{64\}"' | wc -l)
if [ "$left" -ne 0 ]; then
  echo "$left snapshot(s) remain" >&2
  exit 1
fi
echo "no snapshot of $BACKUP_HOST remains"
"#;

/// The name of the Job purging a tenant's backup repository.
#[must_use]
pub fn purge_job_name(tenant: &str) -> String {
    format!("enclave-purge-{tenant}")
}

/// The Job that destroys a tenant's backups at its purge deadline, in the operator's namespace.
///
/// # Errors
/// [`Invalid`] when the tenant has no backups.
pub fn purge_job(
    tenant: &Tenant,
    identity: &Identity,
    config: &BackupConfig,
    namespace: &str,
) -> Result<Job, Invalid> {
    repository_job(
        &purge_job_name(&identity.name),
        None,
        PURGE_SCRIPT,
        (tenant, identity),
        config,
        namespace,
        &[],
        &[],
    )
}

/// A Job in the operator's namespace working on the tenant's repository: the password and the
/// store's credentials come from the Secrets there, never through a tenant namespace.
#[allow(clippy::too_many_arguments)] // one call per request kind, each naming what it adds
fn repository_job(
    job_name: &str,
    request: Option<&str>,
    script: &str,
    (tenant, identity): (&Tenant, &Identity),
    config: &BackupConfig,
    namespace: &str,
    env: &[(&str, String)],
    secrets: &[(&str, String, &str)],
) -> Result<Job, Invalid> {
    let backup_spec = tenant.spec.backup.as_ref().ok_or_else(no_backups)?;
    let mut labels = identity.labels();
    if let Some(request) = request {
        labels.insert(REQUEST.into(), request.into());
    }
    let meta = ObjectMeta {
        name: Some(job_name.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels),
        ..ObjectMeta::default()
    };
    let secret_env = |env: &str, secret: &str, key: &str| EnvVar {
        name: env.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    };
    let secret_volume = |volume: &str, secret: String| Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = |volume: &str, path: &str| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut all_env = vec![
        value(
            "RESTIC_REPOSITORY",
            backup::repository(backup_spec, &identity.uid),
        ),
        value(
            "RESTIC_PASSWORD_FILE",
            "/run/enclave/repository/password".into(),
        ),
        value("RESTIC_CACHE_DIR", "/work/cache".into()),
        value("BACKUP_HOST", identity.name.clone()),
        value("BACKUP_ROOT", DATA_ROOT.into()),
        value("WORK", "/work".into()),
    ];
    all_env.extend(env.iter().map(|(k, v)| value(k, v.clone())));
    all_env.push(secret_env(
        "AWS_ACCESS_KEY_ID",
        &backup_spec.destination.credentials_secret,
        "AWS_ACCESS_KEY_ID",
    ));
    all_env.push(secret_env(
        "AWS_SECRET_ACCESS_KEY",
        &backup_spec.destination.credentials_secret,
        "AWS_SECRET_ACCESS_KEY",
    ));
    let mut volumes = vec![
        secret_volume("repository", backup::password_secret_name(&identity.name)),
        Volume {
            name: "work".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("repository", "/run/enclave/repository"),
        VolumeMount {
            name: "work".into(),
            mount_path: "/work".into(),
            ..VolumeMount::default()
        },
    ];
    for (volume, secret, path) in secrets {
        volumes.push(secret_volume(volume, secret.clone()));
        mounts.push(mount(volume, path));
    }
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        restart_policy: Some("Never".into()),
        security_context: Some(backup::pod_security()),
        containers: vec![Container {
            name: "restic".into(),
            image: Some(config.image.clone()),
            command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            env: Some(all_env),
            volume_mounts: Some(mounts),
            security_context: Some(super::restricted_container()),
            ..Container::default()
        }],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    Ok(job(meta, pod))
}

#[cfg(test)]
mod tests;
