//! The backup Job's exact script and environment, run with a real restic (built from its Go
//! module by `hack/build-restic.sh`) against a local repository: a first backup, an incremental
//! second one, retention applied, a restore giving identical bytes, and a repository that
//! cannot be read without the password.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result, bail};
use enclave_crds::{Tenant, TenantExport, TenantExportSpec, TenantRestore, TenantRestoreSpec};
use enclave_operator::config::BackupConfig;
use enclave_operator::desired::Identity;
use enclave_operator::desired::backup::{self, CREDENTIALS_DIR};
use enclave_operator::desired::requests;
use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn acme() -> Result<Tenant> {
    let mut tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}, {"name": "files", "zone": "data", "size": "1Gi"}],
            "backup": {"schedule": "0 2 * * *", "retention": {"daily": 7, "weekly": 4, "monthly": 6},
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": "acme-s3"}}
        }
    }))?;
    tenant.metadata.uid = Some("0b4c7a52-uid".into());
    Ok(tenant)
}

/// The command and plain environment of a container.
fn command_and_env(container: Container) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let command = container.command.context("command")?;
    let env = container
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    Ok((command, env))
}

/// The restic container of the backup CronJob the operator builds for a tenant.
fn backup_container() -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let tenant = acme()?;
    let identity = Identity::of(&tenant).map_err(|e| anyhow::anyhow!(e.message))?;
    let objects = backup::backup_objects(
        &tenant,
        &identity,
        &BackupConfig::default(),
        &[],
        "enclave-system",
        (None, None),
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let pod = objects.cron_jobs[0]
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|j| j.template.spec.clone())
        .context("pod")?;
    command_and_env(
        pod.containers
            .into_iter()
            .find(|c| c.name == "restic")
            .context("restic container")?,
    )
}

/// The container of the Job that purges acme's repository.
fn purge_container() -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let tenant = acme()?;
    let identity = Identity::of(&tenant).map_err(|e| anyhow::anyhow!(e.message))?;
    let job = requests::purge_job(
        &tenant,
        &identity,
        &BackupConfig::default(),
        "enclave-system",
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let pod = job.spec.and_then(|s| s.template.spec).context("pod")?;
    command_and_env(pod.containers.into_iter().next().context("container")?)
}

/// The container of the Job a `TenantRestore` or `TenantExport` of acme runs.
fn request_container(export: bool) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let tenant = acme()?;
    let identity = Identity::of(&tenant).map_err(|e| anyhow::anyhow!(e.message))?;
    let job = if export {
        let request = TenantExport::new(
            "e1",
            TenantExportSpec {
                tenant: "acme".into(),
            },
        );
        requests::export_job(
            &request,
            &tenant,
            &identity,
            &BackupConfig::default(),
            "enclave-system",
        )
    } else {
        let request = TenantRestore::new(
            "r1",
            TenantRestoreSpec {
                tenant: "acme".into(),
                volumes: vec![],
                snapshot: "latest".into(),
            },
        );
        requests::restore_jobs(&request, &tenant, &identity, &BackupConfig::default(), None)
            .map(|mut jobs| jobs.remove(0))
    }
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let pod = job.spec.and_then(|s| s.template.spec).context("pod")?;
    command_and_env(pod.containers.into_iter().next().context("container")?)
}

struct Sandbox {
    root: PathBuf,
    restic: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Result<Self> {
        let root =
            std::env::temp_dir().join(format!("enclave-restic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in [
            "repo",
            "data/db",
            "data/files",
            "credentials",
            "cache",
            "restore",
            "work",
            "export-repo",
        ] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        std::fs::write(
            root.join("credentials/restic-password"),
            "correct horse battery staple",
        )?;
        std::fs::write(root.join("credentials/aws-access-key-id"), "unused-locally")?;
        std::fs::write(
            root.join("credentials/aws-secret-access-key"),
            "unused-locally",
        )?;
        std::fs::write(root.join("export-password"), "the export's own password")?;
        std::fs::write(
            root.join("objects.yaml"),
            "kind: Tenant\nmetadata: {name: acme}\n",
        )?;
        Ok(Self {
            root,
            restic: enclave_tests::controlplane::restic()?.join("bin"),
        })
    }

    /// The Job's environment, with its paths moved into the sandbox: the repository (local
    /// instead of S3), the credentials directory, the cache and the data root.
    fn env(&self, job_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = job_env.clone();
        let path = |p: &str| self.root.join(p).display().to_string();
        env.insert("RESTIC_REPOSITORY".into(), path("repo"));
        env.insert("CREDENTIALS_DIR".into(), path("credentials"));
        env.insert(
            "RESTIC_PASSWORD_FILE".into(),
            job_env["RESTIC_PASSWORD_FILE"].replace(CREDENTIALS_DIR, &path("credentials")),
        );
        env.insert("RESTIC_CACHE_DIR".into(), path("cache"));
        env.insert("BACKUP_ROOT".into(), path("data"));
        // The export Job's own paths.
        for (key, value) in [
            ("EXPORT_REPOSITORY", path("export-repo")),
            ("EXPORT_PASSWORD_FILE", path("export-password")),
            ("OBJECTS", path("objects.yaml")),
            ("WORK", path("work")),
            ("TERMINATION_LOG", path("termination-log")),
        ] {
            if env.contains_key(key) {
                env.insert(key.into(), value);
            }
        }
        // Jobs of the operator's namespace read the password from its Secret, mounted there.
        if job_env["RESTIC_PASSWORD_FILE"].starts_with("/run/enclave/repository/") {
            env.insert(
                "RESTIC_PASSWORD_FILE".into(),
                path("credentials/restic-password"),
            );
        }
        env.insert(
            "PATH".into(),
            format!(
                "{}:{}",
                self.restic.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        env
    }

    fn run(command: &[String], env: &BTreeMap<String, String>) -> Result<String> {
        let output = Command::new(&command[0])
            .args(&command[1..])
            .env_clear()
            .envs(env)
            .output()?;
        if !output.status.success() {
            bail!(
                "backup script failed: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn restic(&self, env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
        Command::new(self.restic.join("restic"))
            .args(args)
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn summary(stdout: &str) -> Result<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .context("a backup summary line")
}

/// Deterministic, incompressible-enough bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn files_under(dir: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            for (p, b) in files_under(&path)? {
                out.insert(p, b);
            }
        } else {
            out.insert(path.clone(), std::fs::read(&path)?);
        }
    }
    Ok(out)
}

#[test]
fn the_backup_jobs_script_round_trips_with_restic() -> Result<()> {
    let (command, job_env) = backup_container()?;
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert_eq!(command[2], backup::BACKUP_SCRIPT);
    assert_eq!(
        job_env["RESTIC_REPOSITORY"],
        "s3:https://s3.example/backups/enclave/0b4c7a52-uid"
    );
    let sandbox = Sandbox::new("backup")?;
    let env = sandbox.env(&job_env);
    std::fs::write(sandbox.root.join("data/db/base.sql"), bytes(1, 512 * 1024))?;
    std::fs::write(
        sandbox.root.join("data/files/logo.png"),
        bytes(2, 256 * 1024),
    )?;

    // First run: the repository is created and everything is new.
    let first = summary(&Sandbox::run(&command, &env)?)?;
    println!("first backup: {first}");
    assert_eq!(first["files_new"], 2);
    let first_added = first["data_added"].as_u64().context("data_added")?;
    assert!(first_added >= 768 * 1024, "{first_added}");

    // Second run, one file added: incremental, only the new bytes are added.
    std::fs::write(
        sandbox.root.join("data/files/report.pdf"),
        bytes(3, 64 * 1024),
    )?;
    let second = summary(&Sandbox::run(&command, &env)?)?;
    println!("second backup: {second}");
    assert_eq!(
        (
            second["files_new"].as_u64(),
            second["files_unmodified"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let second_added = second["data_added"].as_u64().context("data_added")?;
    assert!(
        second_added >= 64 * 1024 && second_added < first_added / 4,
        "incremental: {second_added} bytes added after {first_added}"
    );
    // Third run, nothing changed: no file data added (only a little directory metadata).
    let third = summary(&Sandbox::run(&command, &env)?)?;
    println!("third backup: {third}");
    assert_eq!(
        (third["files_new"].as_u64(), third["files_changed"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        third["data_added"].as_u64().is_some_and(|b| b < 4096),
        "{third}"
    );

    // Retention ran after each backup: of three snapshots of one day, keep-daily keeps the
    // newest and restic the oldest; the middle one is forgotten.
    let listed = sandbox.restic(&env, &["snapshots", "--json"]);
    assert!(listed.status.success());
    let snapshots: Vec<Value> = serde_json::from_slice(&listed.stdout)?;
    let ids: Vec<&str> = snapshots.iter().filter_map(|s| s["id"].as_str()).collect();
    let expected: Vec<&str> = [&first, &third]
        .iter()
        .filter_map(|s| s["snapshot_id"].as_str())
        .collect();
    assert_eq!(ids, expected, "forget --prune applied the retention");
    assert_eq!(snapshots[0]["hostname"], "acme");
    assert_eq!(snapshots[0]["tags"], json!(["data"]));

    // Restore gives back identical bytes.
    let root = sandbox.root.join("data").display().to_string();
    let target = sandbox.root.join("restore");
    let restored = sandbox.restic(
        &env,
        &[
            "restore",
            &format!("latest:{root}"),
            "--target",
            &target.display().to_string(),
        ],
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let original = files_under(&sandbox.root.join("data"))?;
    let back = files_under(&target)?;
    assert_eq!(original.len(), 3);
    for (path, content) in &original {
        let relative = path.strip_prefix(sandbox.root.join("data"))?;
        assert_eq!(
            back.get(&target.join(relative)),
            Some(content),
            "{}",
            relative.display()
        );
    }

    // Without the password, nothing can be read.
    let wrong = sandbox.root.join("credentials/wrong-password");
    std::fs::write(&wrong, "not the password")?;
    let mut bad = env.clone();
    bad.insert("RESTIC_PASSWORD_FILE".into(), wrong.display().to_string());
    let refused = sandbox.restic(&bad, &["snapshots"]);
    assert_eq!(refused.status.code(), Some(12), "wrong password exit code");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong password"));
    // And the repository's files hold none of the data in the clear.
    let needle = &bytes(1, 512 * 1024)[..64];
    for (_, content) in files_under(&sandbox.root.join("repo"))? {
        assert!(
            !content.windows(needle.len()).any(|w| w == needle),
            "plaintext in the repository"
        );
    }
    Ok(())
}

#[test]
fn restore_and_export_round_trip_with_restic() -> Result<()> {
    let (backup_command, backup_env) = backup_container()?;
    let sandbox = Sandbox::new("requests")?;
    std::fs::write(sandbox.root.join("data/db/base.sql"), bytes(4, 300 * 1024))?;
    std::fs::write(sandbox.root.join("data/files/a.txt"), b"first version")?;
    let original = files_under(&sandbox.root.join("data"))?;
    Sandbox::run(&backup_command, &sandbox.env(&backup_env))?;

    // Damage: a file changed, one deleted, one added. The restore Job's script undoes all.
    std::fs::write(
        sandbox.root.join("data/files/a.txt"),
        b"overwritten by mistake",
    )?;
    std::fs::remove_file(sandbox.root.join("data/db/base.sql"))?;
    std::fs::write(sandbox.root.join("data/db/stray.tmp"), b"not in the backup")?;
    let (restore_command, restore_env) = request_container(false)?;
    assert_eq!(restore_env["CLAIMS"], "db files");
    assert_eq!(restore_command[2], requests::RESTORE_SCRIPT);
    Sandbox::run(&restore_command, &sandbox.env(&restore_env))?;
    assert_eq!(
        files_under(&sandbox.root.join("data"))?,
        original,
        "restored exactly"
    );

    // Export: one archive, its SHA-256 reported, stored encrypted under its own password.
    let (export_command, export_env) = request_container(true)?;
    assert_eq!(export_env["ZONES"], "data");
    Sandbox::run(&export_command, &sandbox.env(&export_env))?;
    let reported = std::fs::read_to_string(sandbox.root.join("termination-log"))?;
    let sha256 = reported
        .trim()
        .strip_prefix("sha256=")
        .context("sha256= line")?
        .to_string();
    let mut export = sandbox.env(&export_env);
    export.insert(
        "RESTIC_REPOSITORY".into(),
        sandbox.root.join("export-repo").display().to_string(),
    );
    export.insert(
        "RESTIC_PASSWORD_FILE".into(),
        sandbox.root.join("export-password").display().to_string(),
    );
    let dumped = sandbox.restic(&export, &["dump", "latest", "export.tar"]);
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let archive = sandbox.root.join("export.tar");
    std::fs::write(&archive, &dumped.stdout)?;
    let digest = Command::new("sha256sum").arg(&archive).output()?;
    let digest = String::from_utf8_lossy(&digest.stdout);
    assert_eq!(
        digest.split_whitespace().next(),
        Some(sha256.as_str()),
        "the archive decrypts to what was reported"
    );
    // It holds the tenant's objects and each zone's data, byte for byte.
    let unpacked = sandbox.root.join("unpacked");
    std::fs::create_dir_all(&unpacked)?;
    let untar = |file: &Path, into: &Path| {
        Command::new("tar")
            .arg("-xf")
            .arg(file)
            .arg("-C")
            .arg(into)
            .status()
            .map(|s| s.success())
    };
    assert!(untar(&archive, &unpacked)?);
    assert_eq!(
        std::fs::read_to_string(unpacked.join("objects.yaml"))?,
        "kind: Tenant\nmetadata: {name: acme}\n"
    );
    let zone = unpacked.join("zone-data");
    std::fs::create_dir_all(&zone)?;
    assert!(untar(&unpacked.join("data.tar"), &zone)?);
    let data_root = sandbox.root.join("data");
    let exported = files_under(&zone)?;
    for (path, content) in &original {
        let relative = path.strip_prefix(&data_root)?;
        let found = exported
            .iter()
            .find(|(p, _)| p.ends_with(relative))
            .map(|(_, c)| c);
        assert_eq!(found, Some(content), "{} in the export", relative.display());
    }
    // Without the export's password it is unreadable.
    let mut wrong = export.clone();
    wrong.insert(
        "RESTIC_PASSWORD_FILE".into(),
        sandbox
            .root
            .join("credentials/restic-password")
            .display()
            .to_string(),
    );
    assert_eq!(
        sandbox.restic(&wrong, &["snapshots"]).status.code(),
        Some(12)
    );

    // The purge Job's script: every snapshot forgotten and pruned, and checked.
    let (purge_command, purge_env) = purge_container()?;
    let purge = sandbox.env(&purge_env);
    let before: Vec<Value> =
        serde_json::from_slice(&sandbox.restic(&purge, &["snapshots", "--json"]).stdout)?;
    assert!(!before.is_empty());
    let said = Sandbox::run(&purge_command, &purge)?;
    assert!(said.contains("no snapshot of acme remains"), "{said}");
    let after: Vec<Value> =
        serde_json::from_slice(&sandbox.restic(&purge, &["snapshots", "--json"]).stdout)?;
    assert!(
        after.is_empty(),
        "snapshots left after the purge: {after:?}"
    );
    // And on a repository that was never made, it has nothing to do.
    let mut never = purge.clone();
    never.insert(
        "RESTIC_REPOSITORY".into(),
        sandbox.root.join("never-made").display().to_string(),
    );
    assert!(Sandbox::run(&purge_command, &never)?.contains("nothing to purge"));
    Ok(())
}
