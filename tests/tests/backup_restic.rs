//! The backup Jobs' exact scripts and environment, run with a real restic (built from its Go
//! module by `hack/build-restic.sh`) against a real S3-compatible server (`rclone serve s3`,
//! built by `hack/build-rclone.sh`) over TLS, at the repository URL the operator builds and
//! with the store's keys as the Jobs receive them: a first backup, an incremental second one,
//! retention applied, a restore giving identical bytes, an export, a purge, and a repository
//! that cannot be read without the password nor reached without the store's keys.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result, bail};
use enclave_crds::{Tenant, TenantExport, TenantExportSpec, TenantRestore, TenantRestoreSpec};
use enclave_operator::config::BackupConfig;
use enclave_operator::desired::Identity;
use enclave_operator::desired::backup::{self, ACCESS_KEY_FILE, PASSWORD_FILE, SECRET_KEY_FILE};
use enclave_operator::desired::requests;
use enclave_tests::pki::Authority;
use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UID: &str = "0b4c7a52-uid";

fn acme(endpoint: &str) -> Result<Tenant> {
    let mut tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {
            "volumes": [{"name": "db", "zone": "data", "size": "1Gi"}, {"name": "files", "zone": "data", "size": "1Gi"}],
            "backup": {"schedule": "0 2 * * *", "retention": {"daily": 7, "weekly": 4, "monthly": 6},
                       "destination": {"endpoint": endpoint, "bucket": "backups", "credentialsSecret": "acme-s3"}}
        }
    }))?;
    tenant.metadata.uid = Some(UID.into());
    Ok(tenant)
}

/// The tenant's credentials Secret, `acme-s3`: the store's keys, which the server is given too.
/// The broker writes them to the backup pods' credentials directory; the Jobs of the operator's
/// namespace read them as env.
const ACCESS_KEY: &str = "acme-backups";
const SECRET_KEY: &str = "acme-s3-secret-key";

fn credential(key: &str) -> Option<&'static str> {
    match key {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET_KEY),
        _ => None,
    }
}

/// A container's command and environment.
type Script = (Vec<String>, BTreeMap<String, String>);

/// The command and environment of a container, its Secret references resolved from `acme-s3`.
fn command_and_env(container: Container) -> Result<Script> {
    let command = container.command.context("command")?;
    let mut env = BTreeMap::new();
    for e in container.env.unwrap_or_default() {
        let from = e.value_from.and_then(|f| f.secret_key_ref);
        let value = match (e.value, from) {
            (Some(value), _) => value,
            (None, Some(r)) if r.name == "acme-s3" => credential(&r.key)
                .with_context(|| format!("{}: no key {} in acme-s3", e.name, r.key))?
                .into(),
            (None, from) => bail!("{}: neither a value nor a key of acme-s3: {from:?}", e.name),
        };
        env.insert(e.name, value);
    }
    Ok((command, env))
}

/// The restic container of the backup CronJob the operator builds for acme.
fn backup_container(endpoint: &str) -> Result<Script> {
    let tenant = acme(endpoint)?;
    let identity = Identity::of(&tenant).map_err(|e| anyhow::anyhow!(e.message))?;
    let config = BackupConfig::default();
    let objects = backup::backup_objects(
        &tenant,
        &identity,
        &config,
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
    let restic = pod.containers.into_iter().find(|c| c.name == "restic");
    command_and_env(restic.context("restic container")?)
}

/// The container of the Job that purges acme's repository (`purge`), or of the one a
/// `TenantRestore` (`restore`) or `TenantExport` (`export`) of acme runs.
fn job_container(endpoint: &str, job: &str) -> Result<Script> {
    let tenant = acme(endpoint)?;
    let identity = Identity::of(&tenant).map_err(|e| anyhow::anyhow!(e.message))?;
    let (config, ns) = (BackupConfig::default(), "enclave-system");
    let job = match job {
        "purge" => requests::purge_job(&tenant, &identity, &config, ns),
        "export" => {
            let spec = TenantExportSpec {
                tenant: "acme".into(),
            };
            let request = TenantExport::new("e1", spec);
            requests::export_job(&request, &tenant, &identity, &config, ns)
        }
        _ => {
            let spec = TenantRestoreSpec {
                tenant: "acme".into(),
                volumes: vec![],
                snapshot: "latest".into(),
            };
            let request = TenantRestore::new("r1", spec);
            requests::restore_jobs(&request, &tenant, &identity, &config, None)
                .map(|mut jobs| jobs.remove(0))
        }
    }
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let pod = job.spec.and_then(|s| s.template.spec).context("pod")?;
    command_and_env(pod.containers.into_iter().next().context("container")?)
}

/// A Job's filesystem, and the S3 server its repository lives on: `rclone serve s3` of
/// `root/s3` (one top-level directory per bucket), over TLS, accepting only acme's keys.
struct Sandbox {
    root: PathBuf,
    restic: PathBuf,
    server: Child,
    /// The tenant's destination endpoint: `https://127.0.0.1:<port>`.
    endpoint: String,
}

impl Sandbox {
    fn new(name: &str) -> Result<Self> {
        let restic = enclave_tests::controlplane::restic()?.join("bin");
        let rclone = enclave_tests::controlplane::rclone()?.join("bin/rclone");
        let root =
            std::env::temp_dir().join(format!("enclave-restic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // The bucket exists beforehand, as a store's does: the server lists the served
        // directory once, so a bucket made on disk later would not be seen.
        for dir in "s3/backups data/db data/files credentials cache restore work pki".split(' ') {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let credentials = [
            (PASSWORD_FILE, "correct horse battery staple"),
            (ACCESS_KEY_FILE, ACCESS_KEY),
            (SECRET_KEY_FILE, SECRET_KEY),
        ];
        for (name, content) in credentials {
            std::fs::write(root.join("credentials").join(name), content)?;
        }
        std::fs::write(root.join("export-password"), "the export's own password")?;
        let objects = "kind: Tenant\nmetadata: {name: acme}\n";
        std::fs::write(root.join("objects.yaml"), objects)?;
        std::fs::write(root.join("rclone.conf"), "")?;
        // A CA of the test's own (restic is given it as RESTIC_CACERT) signs the server's
        // certificate for 127.0.0.1 (pki/s3.crt); the port is a free one, chosen here.
        Authority::create(&root.join("pki"))?.serving("s3", &["127.0.0.1"])?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let file = |p: &str| root.join(p).display().to_string();
        let auth = format!("{ACCESS_KEY},{SECRET_KEY}");
        let log = std::fs::File::create(root.join("rclone.log"))?;
        let server = Command::new(&rclone)
            .args(["serve", "s3", &file("s3"), "--config", &file("rclone.conf")])
            .args(["--addr", &format!("127.0.0.1:{port}"), "--auth-key", &auth])
            .args(["--cert", &file("pki/s3.crt"), "--key", &file("pki/s3.key")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", rclone.display()))?;
        let endpoint = format!("https://127.0.0.1:{port}");
        let mut sandbox = Self {
            root,
            restic,
            server,
            endpoint,
        };
        sandbox.wait_until_serving(port)?;
        Ok(sandbox)
    }

    /// Until the server's port answers, for 30 seconds at most.
    fn wait_until_serving(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = || std::fs::read_to_string(self.root.join("rclone.log")).unwrap_or_default();
            if let Some(status) = self.server.try_wait()? {
                bail!("rclone serve s3 exited ({status}):\n{}", log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("rclone serve s3 not answering after 30s:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The Job's environment, with its paths moved into the sandbox (the credentials
    /// directory, the password files, the cache, the data root, the export's files) and the
    /// server's CA given to restic. The repository URLs and the store's keys are the Job's own.
    fn env(&self, job_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = job_env.clone();
        let path = |p: &str| self.root.join(p).display().to_string();
        for (key, value) in [
            ("CREDENTIALS_DIR", path("credentials")),
            // The backup pods' (in the credentials directory) or, for the Jobs of the
            // operator's namespace, the one of its Secret, mounted there.
            ("RESTIC_PASSWORD_FILE", path("credentials/restic-password")),
            ("RESTIC_CACHE_DIR", path("cache")),
            ("BACKUP_ROOT", path("data")),
            ("EXPORT_PASSWORD_FILE", path("export-password")),
            ("OBJECTS", path("objects.yaml")),
            ("WORK", path("work")),
            ("TERMINATION_LOG", path("termination-log")),
        ] {
            if env.contains_key(key) {
                env.insert(key.into(), value);
            }
        }
        env.insert("RESTIC_CACERT".into(), path("pki/ca.crt"));
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

    /// restic run directly: with the store's keys of `env`, else acme's (the backup pods'
    /// scripts export them from their credentials directory).
    fn restic_command(&self, env: &BTreeMap<String, String>) -> Command {
        let mut command = Command::new(self.restic.join("restic"));
        command.env_clear().envs(env);
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            if !env.contains_key(key) {
                command.env(key, credential(key).unwrap_or_default());
            }
        }
        command
    }

    fn restic(&self, env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
        self.restic_command(env).args(args).output().unwrap()
    }

    /// Why the server refuses restic's first request with `env`'s keys. restic retries what
    /// the server refuses (for 15 minutes): it is stopped at its first retry, which says why.
    fn refusal(&self, env: &BTreeMap<String, String>) -> Result<String> {
        let said = self.root.join("refused.log");
        let mut child = (self.restic_command(env).args(["cat", "config"]))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&said)?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let refused = loop {
            let exited = child.try_wait()?.is_some();
            let text = std::fs::read_to_string(&said)?;
            if let Some(line) = text.lines().find(|l| l.contains("retrying")) {
                break Ok(line.to_string());
            }
            if exited || Instant::now() > deadline {
                break Err(anyhow::anyhow!(
                    "no refused request (restic exited, or 30s passed): {text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        refused
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
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
    let sandbox = Sandbox::new("backup")?;
    let (command, job_env) = backup_container(&sandbox.endpoint)?;
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert_eq!(command[2], backup::BACKUP_SCRIPT);
    assert_eq!(
        job_env["RESTIC_REPOSITORY"],
        format!("s3:{}/backups/enclave/{UID}", sandbox.endpoint)
    );
    let env = sandbox.env(&job_env);
    let data = sandbox.root.join("data");
    std::fs::write(data.join("db/base.sql"), bytes(1, 512 * 1024))?;
    std::fs::write(data.join("files/logo.png"), bytes(2, 256 * 1024))?;

    // First run: the repository is created and everything is new.
    let first = summary(&Sandbox::run(&command, &env)?)?;
    println!("first backup: {first}");
    assert_eq!(first["files_new"], 2);
    let first_added = first["data_added"].as_u64().context("data_added")?;
    assert!(first_added >= 768 * 1024, "{first_added}");

    // Second run, one file added: incremental, only the new bytes are added.
    std::fs::write(data.join("files/report.pdf"), bytes(3, 64 * 1024))?;
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
    let target = sandbox.root.join("restore");
    let (from, to) = (
        format!("latest:{}", data.display()),
        target.display().to_string(),
    );
    let restored = sandbox.restic(&env, &["restore", &from, "--target", &to]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let original = files_under(&data)?;
    let back = files_under(&target)?;
    assert_eq!(original.len(), 3);
    for (path, content) in &original {
        let relative = path.strip_prefix(&data)?;
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
    // Nor reached without the store's keys: the server refuses a wrong secret key, and an
    // access key it does not know.
    let mut bad = env.clone();
    bad.insert("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into());
    bad.insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret-key".into());
    let refused = sandbox.refusal(&bad)?;
    println!("wrong secret key: {refused}");
    assert!(refused.contains("signature we calculated does not match"));
    bad.insert("AWS_ACCESS_KEY_ID".into(), "someone-else".into());
    let refused = sandbox.refusal(&bad)?;
    assert!(refused.contains("Access Key Id you provided does not exist"));
    // And the repository's objects hold none of the data in the clear.
    let needle = &bytes(1, 512 * 1024)[..64];
    let repository = sandbox.root.join("s3/backups/enclave").join(UID);
    for (_, content) in files_under(&repository)? {
        assert!(
            !content.windows(needle.len()).any(|w| w == needle),
            "plaintext in the repository"
        );
    }
    Ok(())
}

#[test]
fn restore_and_export_round_trip_with_restic() -> Result<()> {
    let sandbox = Sandbox::new("requests")?;
    let endpoint = sandbox.endpoint.clone();
    let (backup_command, backup_env) = backup_container(&endpoint)?;
    let data_root = sandbox.root.join("data");
    std::fs::write(data_root.join("db/base.sql"), bytes(4, 300 * 1024))?;
    std::fs::write(data_root.join("files/a.txt"), b"first version")?;
    let original = files_under(&data_root)?;
    Sandbox::run(&backup_command, &sandbox.env(&backup_env))?;

    // Damage: a file changed, one deleted, one added. The restore Job's script undoes all.
    std::fs::write(data_root.join("files/a.txt"), b"overwritten by mistake")?;
    std::fs::remove_file(data_root.join("db/base.sql"))?;
    std::fs::write(data_root.join("db/stray.tmp"), b"not in the backup")?;
    let (restore_command, restore_env) = job_container(&endpoint, "restore")?;
    assert_eq!(restore_env["CLAIMS"], "db files");
    assert_eq!(restore_command[2], requests::RESTORE_SCRIPT);
    Sandbox::run(&restore_command, &sandbox.env(&restore_env))?;
    assert_eq!(files_under(&data_root)?, original, "restored exactly");

    // Export: one archive, its SHA-256 reported, stored encrypted under its own password.
    let (export_command, export_env) = job_container(&endpoint, "export")?;
    assert_eq!(export_env["ZONES"], "data");
    Sandbox::run(&export_command, &sandbox.env(&export_env))?;
    let reported = std::fs::read_to_string(sandbox.root.join("termination-log"))?;
    let sha256 = reported
        .trim()
        .strip_prefix("sha256=")
        .context("sha256= line")?
        .to_string();
    assert_eq!(
        export_env["EXPORT_REPOSITORY"],
        format!("s3:{endpoint}/backups/enclave-exports/{UID}/e1")
    );
    let mut export = sandbox.env(&export_env);
    export.insert(
        "RESTIC_REPOSITORY".into(),
        export_env["EXPORT_REPOSITORY"].clone(),
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
    let repository_password = sandbox.env(&backup_env)["RESTIC_PASSWORD_FILE"].clone();
    wrong.insert("RESTIC_PASSWORD_FILE".into(), repository_password);
    assert_eq!(
        sandbox.restic(&wrong, &["snapshots"]).status.code(),
        Some(12)
    );

    // The purge Job's script: every snapshot forgotten and pruned, and checked.
    let (purge_command, purge_env) = job_container(&endpoint, "purge")?;
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
    // Of the repository's objects (the files of the served directory) under `enclave/<uid>`,
    // no pack, index, snapshot or lock is left: only its config and key (restic has no command
    // that deletes a repository), both encrypted under the repository password, which the
    // tenant's purge destroys with its keys: nothing left can be decrypted.
    let repository = sandbox.root.join("s3/backups/enclave").join(UID);
    let left: Vec<String> = (files_under(&repository)?.into_keys())
        .filter_map(|p| Some(p.strip_prefix(&repository).ok()?.display().to_string()))
        .collect();
    println!("objects left after the purge: {left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0] == "config" && left[1].starts_with("keys/"),
        "{left:?}"
    );
    // And on a repository that was never made, it has nothing to do.
    let mut never = purge.clone();
    never.insert(
        "RESTIC_REPOSITORY".into(),
        format!("s3:{endpoint}/backups/enclave/never-made"),
    );
    assert!(Sandbox::run(&purge_command, &never)?.contains("nothing to purge"));
    Ok(())
}
