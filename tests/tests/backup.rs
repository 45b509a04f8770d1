//! Backups on the real control plane: the CronJob the operator keeps, its Jobs' outcomes (kwok
//! completes or fails the pods) in `status.backup` and `BackupHealthy`, and the credentials
//! broker answering only a tenant's backup service account, with a token the API server
//! reviews.
#![allow(clippy::unwrap_used, clippy::panic)]

use anyhow::{Context as _, Result};
use enclave_crds::Tenant;
use enclave_operator::credentials;
use enclave_tests::harness::{OPERATOR_NAMESPACE, env, eventually};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

async fn tenant_with_backups(client: &kube::Client, name: &str, zone: &str) -> Result<()> {
    let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let store: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-s3")},
        "stringData": {"AWS_ACCESS_KEY_ID": format!("{name}-key-id"), "AWS_SECRET_ACCESS_KEY": format!("{name}-secret")}
    }))?;
    secrets.create(&PostParams::default(), &store).await?;
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "zones": [{"name": zone}],
            "volumes": [{"name": "db", "zone": zone, "size": "1Gi"}],
            "backup": {"schedule": "* * * * *",
                       "destination": {"endpoint": "https://s3.example", "bucket": "backups", "credentialsSecret": format!("{name}-s3")}}
        }
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await?;
    // A volume for the claim, so backup pods can be scheduled.
    let namespace = format!("{name}-{zone}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("pv-{name}")},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "enclave-default-r3-encrypted",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": name},
                 "claimRef": {"namespace": namespace, "name": "db"}}
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    Ok(())
}

/// Runs the CronJob now, as `kubectl create job --from=cronjob/...` does.
async fn run_now(client: &kube::Client, namespace: &str, job: &str) -> Result<CronJob> {
    let crons = Api::<CronJob>::namespaced(client.clone(), namespace);
    let cron = eventually("the backup CronJob", WAIT, || async {
        Ok(crons.get_opt("enclave-backup").await?)
    })
    .await?;
    let template = cron.spec.clone().context("spec")?.job_template;
    // Owned by the CronJob, as kubectl makes it: only its runs count as backups.
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": job, "labels": template.metadata.and_then(|m| m.labels),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "enclave-backup",
                "uid": cron.metadata.uid.clone().context("uid")?, "controller": true}]},
        "spec": template.spec,
    }))?;
    Api::<Job>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await?;
    Ok(cron)
}

async fn token(
    client: &kube::Client,
    namespace: &str,
    account: &str,
    audience: &str,
) -> Result<String> {
    bound_token(client, namespace, account, audience, None).await
}

/// A token of `account` for `audience`, bound to `pod` (`(name, uid)`) when given, as the
/// kubelet makes it for a pod's projected volume.
async fn bound_token(
    client: &kube::Client,
    namespace: &str,
    account: &str,
    audience: &str,
    pod: Option<(&str, &str)>,
) -> Result<String> {
    let bound =
        pod.map(|(name, uid)| json!({"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid}));
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [audience], "expirationSeconds": 600, "boundObjectRef": bound}
    }))?;
    let api = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    let answer: TokenRequest = api
        .create_subresource("token", account, &PostParams::default(), &request)
        .await?;
    Ok(answer.status.context("token")?.token)
}

#[tokio::test]
async fn backup_jobs_are_reported_and_credentials_reach_only_the_backup_pods() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    tenant_with_backups(&client, "bk", "data").await?;
    let cron = run_now(&client, "bk-data", "bk-now").await?;
    let spec = cron.spec.clone().context("spec")?;
    assert_eq!(spec.schedule, "* * * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let uid = tenants.get("bk").await?.metadata.uid.context("uid")?;
    let pod = spec
        .job_template
        .spec
        .and_then(|j| j.template.spec)
        .context("pod")?;
    let restic = &pod.containers[0];
    let repository = restic
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "RESTIC_REPOSITORY")
        .and_then(|e| e.value.clone());
    assert_eq!(
        repository,
        Some(format!("s3:https://s3.example/backups/enclave/{uid}"))
    );
    let args = pod.init_containers.as_ref().context("init")?[0]
        .args
        .clone()
        .unwrap_or_default();
    let url = args
        .iter()
        .skip_while(|a| *a != "--url")
        .nth(1)
        .cloned()
        .context("--url")?;

    // The Job ran (kwok completes its pod): status and condition follow.
    let status = eventually("a successful backup in status", WAIT, || async {
        let status = tenants.get("bk").await?.status.unwrap_or_default();
        let healthy = status
            .conditions
            .iter()
            .any(|c| c.type_ == "BackupHealthy" && c.status == "True");
        Ok(status
            .backup
            .filter(|b| healthy && b.last_successful_time.is_some()))
    })
    .await?;
    assert!(status.last_failure_time.is_none());

    // The broker: the backup service account's token, for the right audience, gets this
    // tenant's password and store credentials...
    let password = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get("enclave-backup-bk")
        .await?;
    let password = String::from_utf8(
        password
            .data
            .context("data")?
            .get("password")
            .context("password")?
            .0
            .clone(),
    )?;
    assert_eq!(password.len(), 64);
    let ca = Api::<ConfigMap>::namespaced(client.clone(), "bk-data")
        .get("enclave-operator-ca")
        .await?
        .data
        .and_then(|d| d.get("ca.crt").cloned())
        .context("ca.crt")?;
    // A token of the backup service account that no pod holds: refused.
    let unbound = token(&client, "bk-data", "enclave-backup", "enclave-backup").await?;
    let refused = credentials::fetch(&url, &unbound, &ca).await;
    assert!(
        matches!(
            refused,
            Err(credentials::FetchError::Refused { status: 403, .. })
        ),
        "{refused:?}"
    );
    // The token of the backup Job's pod, as the kubelet projects it.
    let pod = eventually("the backup Job's pod", WAIT, || async {
        Ok(
            Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), "bk-data")
                .list(&kube::api::ListParams::default().labels("job-name=bk-now"))
                .await?
                .items
                .into_iter()
                .next(),
        )
    })
    .await?;
    let (pod_name, pod_uid) = (
        pod.metadata.name.context("name")?,
        pod.metadata.uid.context("uid")?,
    );
    let good = bound_token(
        &client,
        "bk-data",
        "enclave-backup",
        "enclave-backup",
        Some((&pod_name, &pod_uid)),
    )
    .await?;
    let got = credentials::fetch(&url, &good, &ca).await?;
    assert_eq!(got.restic_password, password);
    assert_eq!(
        (got.access_key_id.as_str(), got.secret_access_key.as_str()),
        ("bk-key-id", "bk-secret")
    );
    // ...and nothing of it is stored in the tenant's namespace.
    for secret in Api::<Secret>::namespaced(client.clone(), "bk-data")
        .list(&kube::api::ListParams::default())
        .await?
    {
        for value in secret.data.iter().flatten().map(|(_, v)| v) {
            assert_ne!(value.0, password.as_bytes(), "the password is in bk-data");
        }
    }
    // Another audience, or another service account of the namespace: refused.
    let wrong_audience = token(
        &client,
        "bk-data",
        "enclave-backup",
        "https://kubernetes.default.svc",
    )
    .await?;
    let refused = credentials::fetch(&url, &wrong_audience, &ca).await;
    assert!(
        matches!(
            refused,
            Err(credentials::FetchError::Refused { status: 401, .. })
        ),
        "{refused:?}"
    );
    // At rest, a tenant with volumes, backups and its CronJob costs no write: a reconcile finds
    // everything as it should be.
    // (Status, Events and the zone's report, which shows the last backup's time, may change
    // legitimately: a Job of the every-minute schedule ends.)
    let ours = |o: &serde_json::Value| {
        !matches!(o["resource"].as_str(), Some("tenants" | "events"))
            && o["name"] != "enclave-report"
            && (o["namespace"] == "bk-data"
                || o["name"].as_str().is_some_and(|n| n.ends_with("-bk")))
    };
    let (settled, at_rest) = env().writes_at_rest(&client, "bk", ours).await?;
    assert!(settled > 0, "the audit log shows the operator's writes");
    assert!(at_rest.is_empty(), "writes at rest: {at_rest:?}");

    let intruder: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "intruder"}}))?;
    Api::<ServiceAccount>::namespaced(client.clone(), "bk-data")
        .create(&PostParams::default(), &intruder)
        .await?;
    let other = token(&client, "bk-data", "intruder", "enclave-backup").await?;
    let refused = credentials::fetch(&url, &other, &ca).await;
    assert!(
        matches!(
            refused,
            Err(credentials::FetchError::Refused { status: 403, .. })
        ),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn failing_backups_turn_backup_healthy_false() -> Result<()> {
    let client = env().client().await?;
    let tenants = Api::<Tenant>::all(client.clone());
    // Job pods in a namespace ending in `-failing` fail (tests/kwok/stages.yaml).
    tenant_with_backups(&client, "bkf", "failing").await?;
    run_now(&client, "bkf-failing", "bkf-now").await?;
    eventually("a failed backup in status", WAIT, || async {
        let status = tenants.get("bkf").await?.status.unwrap_or_default();
        Ok(status.backup.and_then(|b| b.last_failure_time))
    })
    .await?;
    // Every minute's run fails: once two runs have passed since the tenant was made, the last
    // success (none) is too old.
    let condition = eventually("BackupHealthy=False", Duration::from_secs(180), || async {
        let status = tenants.get("bkf").await?.status.unwrap_or_default();
        Ok(status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "BackupHealthy" && c.status == "False"))
    })
    .await?;
    assert_eq!(condition.reason, "Overdue");
    assert!(
        condition.message.contains("last successful backup: never"),
        "{}",
        condition.message
    );
    Ok(())
}

#[tokio::test]
async fn restore_and_export_requests_run_their_jobs_and_report() -> Result<()> {
    use enclave_crds::{RequestPhase, TenantExport, TenantRestore};
    let client = env().client().await?;
    tenant_with_backups(&client, "bkr", "data").await?;
    let uid = eventually("tenant uid", WAIT, || async {
        Ok(Api::<Tenant>::all(client.clone())
            .get("bkr")
            .await?
            .metadata
            .uid)
    })
    .await?;
    // An export is of a tenant in place: its claim exists.
    let claims = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        client.clone(),
        "bkr-data",
    );
    eventually("the claim", WAIT, || async {
        Ok(claims.get_opt("db").await?)
    })
    .await?;
    let restores = Api::<TenantRestore>::all(client.clone());
    let exports = Api::<TenantExport>::all(client.clone());
    let restore: TenantRestore = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "TenantRestore", "metadata": {"name": "bkr-all"},
        "spec": {"tenant": "bkr"}
    }))?;
    restores.create(&PostParams::default(), &restore).await?;
    let bad: TenantRestore = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "TenantRestore", "metadata": {"name": "bkr-bad"},
        "spec": {"tenant": "bkr", "volumes": ["nope"]}
    }))?;
    restores.create(&PostParams::default(), &bad).await?;
    let export: TenantExport = serde_json::from_value(json!({
        "apiVersion": "enclave.dev/v1alpha1", "kind": "TenantExport", "metadata": {"name": "bkr-x"},
        "spec": {"tenant": "bkr"}
    }))?;
    exports.create(&PostParams::default(), &export).await?;

    // The restore's Job runs in the zone of the volume (kwok completes it).
    let status = eventually("restore succeeded", WAIT, || async {
        let status = restores.get("bkr-all").await?.status.unwrap_or_default();
        Ok((status.phase == Some(RequestPhase::Succeeded)).then_some(status))
    })
    .await?;
    assert_eq!(status.jobs, ["bkr-data/enclave-restore-bkr-all"]);
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let status = eventually("bad restore failed", WAIT, || async {
        let status = restores.get("bkr-bad").await?.status.unwrap_or_default();
        Ok((status.phase == Some(RequestPhase::Failed)).then_some(status))
    })
    .await?;
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("volume nope")),
        "{status:?}"
    );
    // A request is immutable.
    let changed = restores
        .patch(
            "bkr-all",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"snapshot": "deadbeef"}})),
        )
        .await;
    assert!(
        changed.is_err_and(|e| e.to_string().contains("immutable")),
        "a restore request cannot be edited"
    );

    // The export's Job runs in the operator's namespace, with the tenant's objects and its own
    // password kept there; its location is in status.
    let status = eventually("export succeeded", WAIT, || async {
        let status = exports.get("bkr-x").await?.status.unwrap_or_default();
        Ok((status.phase == Some(RequestPhase::Succeeded)).then_some(status))
    })
    .await?;
    assert_eq!(
        status.jobs,
        [format!("{OPERATOR_NAMESPACE}/enclave-export-bkr-x")]
    );
    assert_eq!(
        status.location.as_deref(),
        Some(format!("s3:https://s3.example/backups/enclave-exports/{uid}/bkr-x").as_str())
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let objects = secrets.get("enclave-export-bkr-x-objects").await?;
    let yaml = String::from_utf8(
        objects
            .data
            .context("data")?
            .get("objects.yaml")
            .context("objects.yaml")?
            .0
            .clone(),
    )?;
    assert!(
        yaml.contains("kind: Tenant") && yaml.contains("name: bkr"),
        "{yaml}"
    );
    assert!(
        yaml.contains("kind: PersistentVolumeClaim"),
        "the claims are exported"
    );
    assert!(!yaml.contains("managedFields"));
    let password = secrets.get("enclave-export-bkr-x").await?;
    assert_eq!(
        password
            .data
            .context("data")?
            .get("password")
            .map(|p| p.0.len()),
        Some(64)
    );
    Ok(())
}
