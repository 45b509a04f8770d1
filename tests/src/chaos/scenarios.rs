//! The scenarios, each on the shared [`Cluster`], each ending with its replica stopped (the
//! Lease released) and a [`Row`].

use super::proxy::Proxy;
use super::{
    AFTER_RESTART, Cluster, Inventory, Lcg, Row, converge, create, delete, inventory, leading,
    observed, rename, spec, unexpected_lines,
};
use crate::harness::provision;
use crate::replica::credential_id;
use anyhow::{Context as _, Result, ensure};
use enclave_crds::Tenant;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Fills a row's checks after a scenario: convergence, inventory against what was seen
/// before, the replica's log.
async fn check(
    client: &Client,
    row: &mut Row,
    seen: &BTreeSet<String>,
    log: &str,
    also: &[(&str, &str)],
) -> Result<()> {
    let converged = converge(client).await;
    if let Err(error) = &converged {
        eprintln!("[{}] {error:#}", row.scenario);
    }
    row.converged = converged.is_ok();
    let after = inventory(client).await?;
    let lost: Vec<&String> = seen.difference(&after.data).collect();
    for (what, list) in [
        ("orphan", after.orphans.iter().collect::<Vec<_>>()),
        ("duplicate", after.duplicates.iter().collect()),
        ("lost", lost.clone()),
    ] {
        for item in list {
            eprintln!("[{}] {what}: {item}", row.scenario);
        }
    }
    let unexpected = unexpected_lines(log, also);
    for line in &unexpected {
        eprintln!("[{}] unexpected log line: {line}", row.scenario);
    }
    (row.orphans, row.duplicates, row.lost, row.unexpected) = (
        after.orphans.len(),
        after.duplicates.len(),
        lost.len(),
        unexpected.len(),
    );
    Ok(())
}

fn seen_data(seen: &mut BTreeSet<String>, now: &Inventory) {
    seen.extend(now.data.iter().cloned());
}

/// The operator killed (SIGKILL) `kills` times at random points while `tenants` tenants (one in
/// four with a workload, a volume, TLS and backups) are created, renamed and deleted; after
/// each restart, the time until a probe tenant's new generation is Ready.
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn kills(cluster: &mut Cluster, tenants: usize, kills: usize) -> Result<Row> {
    let client = cluster.client().await?;
    let provisioner = tokio::spawn(provision(client.clone()));
    let kubeconfig = cluster.kubeconfig(None)?;
    let mut replica = cluster.replica("chaos-kill", &kubeconfig, true)?;
    leading(&replica).await?;
    create(&client, "kill-probe", spec(false, "probe")).await?;
    observed(&client, "kill-probe").await?;
    let names: Vec<String> = (0..tenants).map(|i| format!("kill-{i:03}")).collect();
    let driver = {
        let (client, names) = (client.clone(), names.clone());
        tokio::spawn(async move {
            for (i, name) in names.iter().enumerate() {
                create(&client, name, spec(i % 4 == 0, name)).await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            for (i, name) in names.iter().enumerate() {
                match i % 5 {
                    1 => rename(&client, name, &format!("{name} renamed")).await?,
                    3 => delete(&client, name).await?,
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut random = Lcg::new(3);
    let mut seen = BTreeSet::new();
    let mut times = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(200 + random.below(2000))).await;
        replica.kill9()?;
        seen_data(&mut seen, &inventory(&client).await?);
        replica = cluster.replica("chaos-kill", &kubeconfig, true)?;
        let restarted = Instant::now();
        rename(&client, "kill-probe", &format!("probe after kill {k}")).await?;
        observed(&client, "kill-probe").await?;
        times.push(restarted.elapsed());
    }
    driver.await.context("the driver")??;
    let mut row = Row {
        scenario: "kill -9".into(),
        runs: kills,
        note: format!(
            "{} tenants created, renamed, deleted during the kills",
            tenants + 1
        ),
        ..Row::default()
    };
    row.times(&times);
    let log = replica.logs();
    check(&client, &mut row, &seen, &log, &[]).await?;
    provisioner.abort();
    replica.terminate()?;
    Ok(row)
}

/// The API server, then etcd, killed and started again under a running operator: the time
/// from the API's return until a tenant edit is Ready; the operator must not restart.
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn restarts(cluster: &mut Cluster) -> Result<Row> {
    let client = cluster.client().await?;
    let kubeconfig = cluster.kubeconfig(None)?;
    let mut replica = cluster.replica("chaos-restart", &kubeconfig, true)?;
    leading(&replica).await?;
    create(&client, "restart-probe", spec(false, "probe")).await?;
    observed(&client, "restart-probe").await?;
    let seen = inventory(&client).await?.data;
    let mut times = Vec::new();
    let mut down = Vec::new();
    for component in ["kube-apiserver", "etcd"] {
        down.push(format!(
            "{component} {:.1}s",
            cluster.cp.restart(component)?.as_secs_f64()
        ));
        let back = Instant::now();
        // The client's connections died with the server: a new one, retried until the edit
        // lands.
        let client = cluster.client().await?;
        rename(&client, "restart-probe", &format!("after {component}")).await?;
        observed(&client, "restart-probe").await?;
        times.push(back.elapsed());
    }
    ensure!(
        replica.exited()?.is_none(),
        "the operator exited during the restarts"
    );
    let mut row = Row {
        scenario: "apiserver, etcd restart".into(),
        runs: 2,
        note: format!("down: {}; operator not restarted", down.join(", ")),
        ..Row::default()
    };
    row.times(&times);
    let log = replica.logs();
    check(
        &cluster.client().await?,
        &mut row,
        &seen,
        &log,
        &AFTER_RESTART,
    )
    .await?;
    replica.terminate()?;
    Ok(row)
}

/// A leader frozen (SIGSTOP) past its Lease while a second replica takes over, then thawed:
/// how many of the stale leader's writes the API server accepted after the new leader's first
/// one, and whether it stopped.
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn two_leaders(cluster: &mut Cluster) -> Result<Row> {
    let client = cluster.client().await?;
    let (kubeconfig_a, kubeconfig_b) = (cluster.kubeconfig(None)?, cluster.kubeconfig(None)?);
    let (id_a, id_b) = (credential_id(&kubeconfig_a)?, credential_id(&kubeconfig_b)?);
    // a leads; b, the standby, serves the webhooks (so a frozen a holds up no admission).
    let mut a = cluster.replica("chaos-leader-a", &kubeconfig_a, false)?;
    leading(&a).await?;
    let b = cluster.replica("chaos-leader-b", &kubeconfig_b, true)?;
    create(&client, "leaders-probe", spec(false, "probe")).await?;
    observed(&client, "leaders-probe").await?;
    let seen = inventory(&client).await?.data;
    a.signal("STOP")?;
    let frozen = Instant::now();
    let took_over = leading(&b).await?;
    rename(&client, "leaders-probe", "the new leader's").await?;
    let first_b = eventually_value(|| {
        let (writes, id_b) = (cluster.writes(), id_b.clone());
        async move {
            Ok(writes?
                .into_iter()
                .find(|w| w.credential == id_b)
                .map(|w| w.at))
        }
    })
    .await?;
    // Work for the stale leader to take up when it thaws.
    rename(&client, "leaders-probe", "while two think they lead").await?;
    a.signal("CONT")?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stale: Vec<String> = cluster
        .writes()?
        .into_iter()
        .filter(|w| w.credential == id_a && w.at > first_b)
        .map(|w| format!("{} {} {}/{}", w.verb, w.resource, w.namespace, w.name))
        .collect();
    let exit = a.exited()?;
    observed(&client, "leaders-probe").await?;
    let mut row = Row {
        scenario: "two leaders".into(),
        runs: 1,
        note: format!(
            "frozen {:.1}s, new leader in {:.1}s; stale writes accepted after its first: {}{}; stale leader {}",
            frozen.elapsed().as_secs_f64(),
            took_over.as_secs_f64(),
            stale.len(),
            if stale.is_empty() {
                String::new()
            } else {
                format!(" ({})", stale.join(", "))
            },
            exit.map_or("still running".into(), |s| format!("exited ({s})"))
        ),
        ..Row::default()
    };
    row.times(&[took_over]);
    let log = format!("{}{}", a.logs(), b.logs());
    check(&client, &mut row, &seen, &log, &[]).await?;
    ensure!(
        exit.is_some(),
        "the stale leader kept running: {}",
        row.note
    );
    b.terminate()?;
    Ok(row)
}

async fn eventually_value<T, F, Fut>(attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    crate::harness::eventually("a value", Duration::from_secs(60), attempt).await
}

/// Another field manager (a cluster admin, past the guard) rewrites managed fields of a
/// NetworkPolicy, a ResourceQuota and a Deployment, `rounds` times: the operator restores each,
/// and its writes per object stay near one per round (converging, not fighting).
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn conflicts(cluster: &mut Cluster, rounds: usize) -> Result<Row> {
    let client = cluster.client().await?;
    let provisioner = tokio::spawn(provision(client.clone()));
    let kubeconfig = cluster.kubeconfig(None)?;
    let replica = cluster.replica("chaos-conflict", &kubeconfig, true)?;
    leading(&replica).await?;
    let mut fight = spec(true, "fight");
    fight["quota"] = json!({"pods": 20});
    create(&client, "fight", fight).await?;
    observed(&client, "fight").await?;
    let seen = inventory(&client).await?.data;
    let ns = "fight-dmz";
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let intruder = PatchParams {
        field_manager: Some("intruder".into()),
        ..PatchParams::default()
    };
    let before = cluster.writes()?.len();
    let mut times = Vec::new();
    for round in 0..rounds {
        policies
            .patch(
                "enclave-default-deny",
                &intruder,
                &Patch::Merge(json!({"spec": {"policyTypes": ["Ingress"]}})),
            )
            .await?;
        quotas
            .patch(
                "enclave-quota",
                &intruder,
                &Patch::Merge(json!({"spec": {"hard": {"pods": format!("{}", 7000 + round)}}})),
            )
            .await?;
        deployments
            .patch(
                "web",
                &intruder,
                &Patch::Merge(json!({"spec": {"replicas": 9}})),
            )
            .await?;
        let started = Instant::now();
        crate::harness::eventually("the fields restored", Duration::from_secs(60), || async {
            let policy = policies.get("enclave-default-deny").await?;
            let quota = quotas.get("enclave-quota").await?;
            let deployment = deployments.get("web").await?;
            let egress_denied = policy
                .spec
                .and_then(|s| s.policy_types)
                .is_some_and(|t| t.iter().any(|t| t == "Egress"));
            let pods = quota
                .spec
                .and_then(|s| s.hard)
                .and_then(|h| h.get("pods").map(|q| q.0.clone()))
                .unwrap_or_default();
            let replicas = deployment.spec.and_then(|s| s.replicas);
            Ok((egress_denied && !pods.starts_with("70") && replicas == Some(2)).then_some(()))
        })
        .await?;
        times.push(started.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = cluster.writes()?;
    let per_object = |resource: &str, name: &str| {
        writes[before..]
            .iter()
            .filter(|w| w.resource == resource && w.name == name && w.namespace == ns)
            .count()
    };
    let counts = [
        ("networkpolicies", "enclave-default-deny"),
        ("resourcequotas", "enclave-quota"),
        ("deployments", "web"),
    ]
    .map(|(r, n)| per_object(r, n));
    let mut row = Row {
        scenario: "conflicting manager".into(),
        runs: rounds,
        note: format!(
            "operator writes per object over {rounds} rounds: policy {}, quota {}, deployment {}",
            counts[0], counts[1], counts[2]
        ),
        ..Row::default()
    };
    row.times(&times);
    check(&client, &mut row, &seen, &replica.logs(), &[]).await?;
    ensure!(
        counts.iter().all(|c| *c <= rounds + 2),
        "the operator fights: {}",
        row.note
    );
    provisioner.abort();
    replica.terminate()?;
    Ok(row)
}

/// A Tenant edited every 100 ms for `seconds`: the final state follows the last spec, and
/// reconciles and writes per edit stay bounded (no storm).
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn storm(cluster: &mut Cluster, seconds: u64) -> Result<Row> {
    let client = cluster.client().await?;
    let kubeconfig = cluster.kubeconfig(None)?;
    let replica = cluster.replica("chaos-storm", &kubeconfig, true)?;
    leading(&replica).await?;
    create(&client, "storm", spec(false, "storm")).await?;
    observed(&client, "storm").await?;
    let seen = inventory(&client).await?.data;
    let reconciles_before = replica
        .metric("enclave_reconciles_total")
        .unwrap_or_default();
    let before = cluster.writes()?.len();
    let tenants = Api::<Tenant>::all(client.clone());
    let started = Instant::now();
    let mut edits = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        edits += 1;
        let patch = json!({"spec": {"displayName": format!("edit {edits}"), "quota": {"cpu": format!("{}", 1 + edits % 7)}}});
        tenants
            .patch("storm", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = Instant::now();
    observed(&client, "storm").await?;
    let cpu = format!("/{}", 1 + edits % 7);
    let reports = Api::<ConfigMap>::namespaced(client.clone(), "storm-app");
    let display = format!("edit {edits}");
    crate::harness::eventually(
        "the last edit reported",
        Duration::from_secs(60),
        || async {
            let t = tenants.get("storm").await?;
            let usage = t.status.unwrap_or_default().usage;
            let hard = usage.get("limits.cpu").is_some_and(|u| u.ends_with(&cpu));
            let report: Option<Value> = reports
                .get_opt("enclave-report")
                .await?
                .and_then(|cm| serde_json::from_str(cm.data?.get("report.json")?).ok());
            let named = report.is_some_and(|r| r["displayName"] == display.as_str());
            Ok((hard && named).then_some(()))
        },
    )
    .await?;
    let settled = last.elapsed();
    let reconciled = replica
        .metric("enclave_reconciles_total")
        .unwrap_or_default()
        - reconciles_before;
    let writes = cluster.writes()?.len() - before;
    let count = |n: usize| f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    let per_edit = |n: f64| n / count(edits);
    let mut row = Row {
        scenario: "edit every 100 ms".into(),
        runs: edits,
        note: format!(
            "{:.2} reconciles and {:.2} writes per edit; the last spec in status and report",
            per_edit(reconciled),
            per_edit(count(writes))
        ),
        ..Row::default()
    };
    row.times(&[settled]);
    check(&client, &mut row, &seen, &replica.logs(), &[]).await?;
    ensure!(
        reconciled <= count(edits) * 3.0 + 10.0,
        "a reconcile storm: {}",
        row.note
    );
    replica.terminate()?;
    Ok(row)
}

/// The operator gone for `seconds`: its webhooks fail closed for managed objects (a tenant
/// admin cannot remove Enclave's binding), while a namespace that is no tenant's keeps working
/// (a Deployment is created there).
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn webhook_outage(cluster: &mut Cluster, seconds: u64) -> Result<Row> {
    let client = cluster.client().await?;
    let kubeconfig = cluster.kubeconfig(None)?;
    let replica = cluster.replica("chaos-outage", &kubeconfig, true)?;
    leading(&replica).await?;
    let admin = "ops@outage.example";
    create(
        &client,
        "outage",
        json!({"zones": [{"name": "app"}], "lifecycle": {"retention": "1h"},
        "access": {"admins": [{"kind": "User", "name": admin}]}}),
    )
    .await?;
    observed(&client, "outage").await?;
    let seen = inventory(&client).await?.data;
    let mut replica = replica;
    replica.kill9()?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&cluster.cp.kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info.impersonate = Some(admin.into());
    config.auth_info.impersonate_groups = Some(vec!["system:authenticated".into()]);
    let tenant_admin = Client::try_from(config)?;
    let bindings = Api::<RoleBinding>::namespaced(tenant_admin, "outage-app");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
    let started = Instant::now();
    let (mut refused, mut attempts, mut created) = (0, 0, Vec::new());
    while started.elapsed() < Duration::from_secs(seconds) {
        attempts += 1;
        // Refused by the webhook that cannot be called (failurePolicy Fail), not by RBAC.
        if let Err(kube::Error::Api(status)) = bindings
            .delete("enclave-admins", &DeleteParams::default())
            .await
            && status.message.contains("failed calling webhook")
        {
            refused += 1;
        }
        let name = format!("outside-{attempts}");
        let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}}}}))?;
        let at = Instant::now();
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .context("a Deployment outside the tenants during the outage")?;
        created.push(at.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let still = Api::<RoleBinding>::namespaced(client.clone(), "outage-app")
        .get_opt("enclave-admins")
        .await?
        .is_some();
    let replica = cluster.replica("chaos-outage", &kubeconfig, true)?;
    leading(&replica).await?;
    let mut row = Row {
        scenario: "webhook down".into(),
        runs: attempts,
        note: format!(
            "tampering refused {refused}/{attempts} while down (binding kept: {still}); Deployments outside the tenants created {}/{attempts}",
            created.len()
        ),
        ..Row::default()
    };
    row.times(&created);
    check(&client, &mut row, &seen, &replica.logs(), &[]).await?;
    ensure!(
        refused == attempts && still,
        "tampering got through: {}",
        row.note
    );
    replica.terminate()?;
    Ok(row)
}

/// The operator behind a proxy adding `latency` to each request and cutting `drop_percent`
/// of the connections, while `tenants` tenants are created: everything converges; the
/// reconcile latency, from the operator's histogram.
///
/// # Errors
/// When the cluster cannot be driven.
pub async fn slow_api(
    cluster: &mut Cluster,
    tenants: usize,
    latency: Duration,
    drop_percent: u64,
) -> Result<Row> {
    let client = cluster.client().await?;
    let upstream: std::net::SocketAddr =
        cluster.cp.server.trim_start_matches("https://").parse()?;
    let proxy = Proxy::start(upstream, latency, drop_percent).await?;
    let kubeconfig = cluster.kubeconfig(Some(&format!("https://{}", proxy.addr)))?;
    let replica = cluster.replica("chaos-slow", &kubeconfig, true)?;
    leading(&replica).await?;
    let seen = inventory(&client).await?.data;
    let started = Instant::now();
    for i in 0..tenants {
        create(&client, &format!("slow-{i:02}"), spec(false, "slow")).await?;
    }
    // Every tenant of the cluster (the earlier scenarios' too) is reconciled again by this new
    // replica, each reconcile some 40 requests of 200 ms: minutes with hundreds of tenants.
    super::converge_within(&client, Duration::from_secs(900)).await?;
    let all = started.elapsed();
    let buckets = replica.histogram("enclave_reconcile_duration_seconds");
    let counts = proxy.counts();
    let mut row = Row {
        scenario: "slow, lossy API".into(),
        runs: tenants,
        note: format!(
            "{} ms per request, {drop_percent}% of connections cut ({} of {}); all Ready in {:.1}s; p50/p99 are reconcile latency",
            latency.as_millis(),
            counts.dropped,
            counts.connections,
            all.as_secs_f64()
        ),
        ..Row::default()
    };
    (row.p50, row.p99) = (
        crate::replica::quantile(&buckets, 0.5),
        crate::replica::quantile(&buckets, 0.99),
    );
    let last = buckets
        .iter()
        .map(|b| b.0)
        .filter(|le| le.is_finite())
        .fold(0.0, f64::max);
    if row.p99 >= last {
        let _ = write!(
            row.note,
            " (p99 at least {last} s, the histogram's last bucket)"
        );
    }
    check(&client, &mut row, &seen, &replica.logs(), &[]).await?;
    replica.terminate()?;
    Ok(row)
}
