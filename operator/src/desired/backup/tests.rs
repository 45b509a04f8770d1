use super::*;
use crate::desired::fixtures::tenant;
use enclave_crds::{BackupDestination, BackupRetention, LifecycleState, Volume};

fn backed_up() -> Tenant {
    let mut t = tenant("acme");
    t.spec.volumes = vec![
        Volume {
            name: "db".into(),
            zone: "data".into(),
            size: "1Gi".into(),
            replicas: 3,
            ..Volume::default()
        },
        Volume {
            name: "files".into(),
            zone: "data".into(),
            size: "1Gi".into(),
            replicas: 3,
            ..Volume::default()
        },
    ];
    t.spec.backup = Some(Backup {
        schedule: "0 2 * * *".into(),
        retention: BackupRetention {
            daily: 7,
            weekly: 4,
            monthly: 6,
        },
        destination: BackupDestination {
            endpoint: "https://s3.example/".into(),
            bucket: "backups".into(),
            credentials_secret: "acme-s3".into(),
        },
    });
    t
}

fn build(t: &Tenant) -> BackupObjects {
    backup_objects(
        t,
        &Identity::of(t).expect("identity"),
        &BackupConfig::default(),
        &crate::config::NetworkConfig::default().cluster_cidrs,
        "enclave-system",
        (Some("CA"), Some("https://127.0.0.1:9443/credentials")),
    )
    .expect("valid")
}

#[test]
fn one_cron_job_per_zone_with_volumes_backing_up_every_claim_read_only() {
    let objects = build(&backed_up());
    assert_eq!(objects.cron_jobs.len(), 1);
    let cron = &objects.cron_jobs[0];
    assert_eq!(cron.metadata.namespace.as_deref(), Some("acme-data"));
    let spec = cron.spec.as_ref().expect("spec");
    assert_eq!(spec.schedule, "0 2 * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.suspend, Some(false));
    let pod = spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
        .expect("pod");
    let claims: Vec<_> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| (c.claim_name.as_str(), c.read_only))
        .collect();
    assert_eq!(claims, [("db", Some(true)), ("files", Some(true))]);
    let mounts: Vec<_> = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/data/db") && mounts.contains(&"/data/files"));
    assert_eq!(
        objects.service_accounts[0].automount_service_account_token,
        Some(false)
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn repository_is_per_tenant_uid_and_no_secret_is_referenced() {
    let objects = build(&backed_up());
    let pod = objects.cron_jobs[0]
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|j| j.template.spec.as_ref())
        .expect("pod");
    let env: BTreeMap<_, _> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["RESTIC_REPOSITORY"],
        "s3:https://s3.example/backups/enclave/uid-acme"
    );
    assert_eq!(env["RESTIC_PASSWORD_FILE"], "/run/enclave/restic-password");
    assert_eq!(env["KEEP_DAILY"], "7");
    // Nothing comes from a Secret of the tenant's namespace.
    let all = serde_json::to_string(&objects.cron_jobs[0]).expect("json");
    assert!(!all.contains("secretKeyRef") && !all.contains("\"secret\":"));
    // Credentials live in memory, fetched with an audience-bound token.
    let credentials = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "credentials")
        .and_then(|v| v.empty_dir.as_ref())
        .and_then(|e| e.medium.as_deref());
    assert_eq!(credentials, Some("Memory"));
    let token = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.projected.as_ref())
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s[0].service_account_token.as_ref())
        .expect("token");
    assert_eq!(token.audience.as_deref(), Some(AUDIENCE));
    assert_eq!(token.expiration_seconds, Some(600));
}

#[test]
fn stopped_tenants_keep_their_last_backup_state() {
    let mut t = backed_up();
    t.spec.lifecycle.state = LifecycleState::Decommissioned;
    let objects = build(&t);
    assert_eq!(
        objects.cron_jobs[0].spec.as_ref().and_then(|s| s.suspend),
        Some(true)
    );
}

#[test]
fn the_password_is_generated_in_the_operator_namespace() {
    let objects = build(&backed_up());
    let password = objects.password.expect("password");
    assert_eq!(
        password.secret.metadata.namespace.as_deref(),
        Some("enclave-system")
    );
    assert_eq!(
        password.secret.metadata.name.as_deref(),
        Some("enclave-backup-acme")
    );
    assert_eq!(password.key_fields, ["password".to_string()].into());
    assert!(
        password.secret.string_data.is_none(),
        "no key material in the builder"
    );
}

#[test]
fn a_schedule_that_is_not_cron_is_refused() {
    let mut t = backed_up();
    if let Some(b) = t.spec.backup.as_mut() {
        b.schedule = "every night".into();
    }
    let error = backup_objects(
        &t,
        &Identity::of(&t).expect("identity"),
        &BackupConfig::default(),
        &[],
        "x",
        (None, None),
    )
    .expect_err("invalid");
    assert_eq!(error.reason, "InvalidSchedule");
    // What croner accepts but the CronJob controller refuses, and what both accept.
    let check = |schedule: &str| {
        validate_schedule(&enclave_crds::Backup {
            schedule: schedule.into(),
            ..t.spec.backup.clone().expect("backup")
        })
    };
    for refused in ["0 2 L * *", "0 2 * * 5#3", "0 2 15W * *", "0 0 2 * * *"] {
        assert!(check(refused).is_err(), "{refused}");
    }
    for accepted in ["0 2 * * *", "*/15 * * * 1-5", "@daily"] {
        assert!(check(accepted).is_ok(), "{accepted}");
    }
}

#[test]
fn no_backup_section_no_objects() {
    let mut t = backed_up();
    t.spec.backup = None;
    assert_eq!(build(&t), BackupObjects::default());
}

#[test]
fn the_script_initialises_unlocks_backs_up_and_prunes() {
    let steps: Vec<&str> = BACKUP_SCRIPT
        .lines()
        .filter(|l| l.starts_with("restic "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
        .collect();
    assert_eq!(steps, ["cat", "unlock", "backup", "forget"]);
    assert!(BACKUP_SCRIPT.contains("--prune"));
}

#[test]
fn backup_pods_reach_only_the_brokers_port_and_the_stores_range() {
    assert_eq!(
        url_port("https://enclave-guard.enclave-system.svc:9443/credentials"),
        9443
    );
    assert_eq!(url_port("https://127.0.0.1:8443/credentials"), 8443);
    assert_eq!(url_port("https://broker.example/credentials"), 443);
    let config = BackupConfig {
        store_cidrs: vec!["198.51.100.0/24".into()],
        store_port: 9000,
        ..BackupConfig::default()
    };
    let objects = backup_objects(
        &backed_up(),
        &Identity::of(&backed_up()).expect("identity"),
        &config,
        &crate::config::NetworkConfig::default().cluster_cidrs,
        "enclave-system",
        (
            None,
            Some("https://enclave-guard.enclave-system.svc:9443/validate"),
        ),
    )
    .expect("objects");
    let policy = objects.network_policies[0].spec.clone().expect("spec");
    let egress = policy.egress.expect("egress");
    let ports = |i: usize| -> Vec<String> {
        egress[i]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| match &p.port {
                Some(IntOrString::Int(port)) => Some(port.to_string()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        ports(0),
        ["9443"],
        "the broker's port, not every port of the namespace"
    );
    assert_eq!(ports(1), ["9000"]);
    let cidrs: Vec<String> = egress[1]
        .to
        .iter()
        .flatten()
        .filter_map(|p| Some(p.ip_block.as_ref()?.cidr.clone()))
        .collect();
    assert_eq!(cidrs, ["198.51.100.0/24"]);
}

#[test]
fn volume_names_stay_dns_labels_whatever_the_claims_are_named() {
    let long = "a".repeat(63);
    let pod = restic_pod(
        &BackupConfig::default(),
        "https://127.0.0.1:9443/credentials",
        std::slice::from_ref(&long),
        true,
        BACKUP_SCRIPT,
        vec![],
    );
    let spec = pod;
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == long)
        })
        .expect("the claim's volume");
    assert!(volume.name.len() <= 63, "{}", volume.name);
    let mounted = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume.name)
        .expect("mounted");
    assert_eq!(mounted.mount_path, format!("/data/{long}"));
}

#[test]
fn a_store_inside_the_cluster_ranges_opens_nothing() {
    let config = BackupConfig {
        store_cidrs: vec!["10.20.0.0/16".into()],
        ..BackupConfig::default()
    };
    let objects = backup_objects(
        &backed_up(),
        &Identity::of(&backed_up()).expect("identity"),
        &config,
        &crate::config::NetworkConfig::default().cluster_cidrs,
        "enclave-system",
        (None, Some("https://127.0.0.1:9443/credentials")),
    )
    .expect("objects");
    let egress = objects.network_policies[0]
        .spec
        .clone()
        .and_then(|s| s.egress)
        .expect("egress");
    // Only the broker: an empty `to` would have let the backup pods reach anything.
    assert_eq!(egress.len(), 1);
    assert!(
        egress
            .iter()
            .all(|r| r.to.as_ref().is_some_and(|t| !t.is_empty()))
    );
}
