use super::*;
use crate::desired::fixtures::tenant;
use enclave_crds::{Backup, BackupDestination, TenantExportSpec, TenantRestoreSpec, Volume};

fn backed_up() -> Tenant {
    let mut t = tenant("acme");
    let volume = |name: &str, zone: &str| Volume {
        name: name.into(),
        zone: zone.into(),
        size: "1Gi".into(),
        replicas: 3,
        ..Volume::default()
    };
    t.spec.volumes = vec![
        volume("db", "data"),
        volume("files", "data"),
        volume("cache", "app"),
    ];
    t.spec.backup = Some(Backup {
        schedule: "0 2 * * *".into(),
        retention: enclave_crds::BackupRetention::default(),
        destination: BackupDestination {
            endpoint: "https://s3.example".into(),
            bucket: "backups".into(),
            credentials_secret: "acme-s3".into(),
        },
    });
    t
}

#[test]
fn a_restore_runs_in_each_zone_of_the_volumes_asked_with_the_snapshot() {
    let t = backed_up();
    let identity = Identity::of(&t).expect("identity");
    let request = TenantRestore::new(
        "r1",
        TenantRestoreSpec {
            tenant: "acme".into(),
            volumes: vec!["db".into()],
            snapshot: "1a2b3c4d".into(),
        },
    );
    let jobs =
        restore_jobs(&request, &t, &identity, &BackupConfig::default(), None).expect("valid");
    assert_eq!(jobs.len(), 1, "only the zone of db");
    assert_eq!(jobs[0].metadata.namespace.as_deref(), Some("acme-data"));
    let pod = jobs[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let env: BTreeMap<_, _> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        (env["CLAIMS"].as_str(), env["SNAPSHOT"].as_str()),
        ("db", "1a2b3c4d")
    );
    // Written to: the claim is mounted read-write.
    let claim = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .expect("claim");
    assert_eq!((claim.claim_name.as_str(), claim.read_only), ("db", None));
    let all = TenantRestore::new(
        "all",
        TenantRestoreSpec {
            tenant: "acme".into(),
            volumes: vec![],
            snapshot: "latest".into(),
        },
    );
    let all = restore_jobs(&all, &t, &identity, &BackupConfig::default(), None)
        .expect("valid")
        .len();
    assert_eq!(all, 2, "no volume named: every zone with volumes");
    let unknown = TenantRestore::new(
        "r2",
        TenantRestoreSpec {
            tenant: "acme".into(),
            volumes: vec!["nope".into()],
            snapshot: "latest".into(),
        },
    );
    assert_eq!(
        restore_jobs(&unknown, &t, &identity, &BackupConfig::default(), None)
            .expect_err("unknown")
            .reason,
        "UnknownVolume"
    );
}

#[test]
fn an_export_reads_the_repository_from_the_operator_namespace() {
    let t = backed_up();
    let identity = Identity::of(&t).expect("identity");
    let request = TenantExport::new(
        "e1",
        TenantExportSpec {
            tenant: "acme".into(),
        },
    );
    let job = export_job(
        &request,
        &t,
        &identity,
        &BackupConfig::default(),
        "enclave-system",
    )
    .expect("valid");
    assert_eq!(job.metadata.namespace.as_deref(), Some("enclave-system"));
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .all(|v| v.persistent_volume_claim.is_none())
    );
    let env: BTreeMap<_, _> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.clone()?)))
        .collect();
    assert_eq!(env["ZONES"], "app data");
    assert_eq!(
        env["EXPORT_REPOSITORY"],
        "s3:https://s3.example/backups/enclave-exports/uid-acme/e1"
    );
    let mut no_backup = t.clone();
    no_backup.spec.backup = None;
    assert_eq!(
        export_job(
            &request,
            &no_backup,
            &identity,
            &BackupConfig::default(),
            "x"
        )
        .expect_err("no backups")
        .reason,
        "NoBackups"
    );
}
