use super::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("timestamp")
}

#[test]
fn ready_outcome_gives_ready_phase_and_true_condition() {
    let s = tenant_status(
        Some(3),
        &Outcome::Ready,
        &["dmz".to_string(), "app".to_string()],
        vec!["a-dmz".into()],
        None,
        None,
        at(100),
    );
    assert_eq!(s.phase, Some(Phase::Ready));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.conditions[0].status, "True");
    assert_eq!(s.conditions[0].observed_generation, Some(3));
    assert_eq!(s.namespaces, ["a-dmz"]);
    assert_eq!(s.zones.as_deref(), Some("dmz,app"));
}

#[test]
fn blocked_outcome_names_reason() {
    let outcome = Outcome::Blocked {
        reason: "NamespaceConflict",
        message: "x exists".into(),
    };
    let s = tenant_status(Some(1), &outcome, &[], vec![], None, None, at(100));
    assert_eq!(s.phase, Some(Phase::Blocked));
    assert_eq!(s.conditions[0].reason, "NamespaceConflict");
    assert_eq!(s.conditions[0].status, "False");
}

#[test]
fn unchanged_outcome_gives_identical_status() {
    let first = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(100));
    let second = tenant_status(
        Some(1),
        &Outcome::Ready,
        &[],
        vec![],
        None,
        Some(&first),
        at(500),
    );
    assert_eq!(
        first, second,
        "a steady tenant must not cause a status write"
    );
}

#[test]
fn transition_time_moves_when_status_changes() {
    let first = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(100));
    let outcome = Outcome::Progressing {
        reason: "NamespaceTerminating",
        message: String::new(),
    };
    let second = tenant_status(Some(1), &outcome, &[], vec![], None, Some(&first), at(200));
    assert_eq!(second.conditions[0].last_transition_time, Time(at(200)));
}

#[test]
fn isolated_follows_the_network_report() {
    let clean = NetworkReport::default();
    let s = tenant_status(
        Some(1),
        &Outcome::Ready,
        &[],
        vec![],
        Some(&clean),
        None,
        at(100),
    );
    let isolated = s
        .conditions
        .iter()
        .find(|c| c.type_ == ISOLATED)
        .expect("Isolated");
    assert_eq!(
        (isolated.status.as_str(), isolated.reason.as_str()),
        ("True", "ExposureMatchesSpec")
    );
    let leaky = NetworkReport {
        differences: vec!["open but not declared: app:22".into()],
        ..NetworkReport::default()
    };
    let s = tenant_status(
        Some(1),
        &Outcome::Ready,
        &[],
        vec![],
        Some(&leaky),
        Some(&s),
        at(200),
    );
    let isolated = s
        .conditions
        .iter()
        .find(|c| c.type_ == ISOLATED)
        .expect("Isolated");
    assert_eq!(
        (isolated.status.as_str(), isolated.reason.as_str()),
        ("False", "UnexpectedExposure")
    );
    assert!(isolated.message.contains("app:22"));
    // A blocked reconcile keeps the last report.
    let blocked = Outcome::Blocked {
        reason: "X",
        message: String::new(),
    };
    let s2 = tenant_status(Some(1), &blocked, &[], vec![], None, Some(&s), at(300));
    assert_eq!(
        s2.conditions.iter().filter(|c| c.type_ == ISOLATED).count(),
        1
    );
}

#[test]
fn usage_sums_quotas_over_zones() {
    let quota = |used: &[(&str, &str)], hard: &[(&str, &str)]| -> ResourceQuota {
        let map = |pairs: &[(&str, &str)]| {
            serde_json::Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
                    .collect(),
            )
        };
        serde_json::from_value(serde_json::json!({"metadata": {"name": "q"}, "status": {"used": map(used), "hard": map(hard)}})).expect("quota")
    };
    let quotas = [
        quota(
            &[
                ("limits.cpu", "500m"),
                ("limits.memory", "512Mi"),
                ("pods", "1"),
            ],
            &[
                ("limits.cpu", "4"),
                ("limits.memory", "8Gi"),
                ("pods", "20"),
            ],
        ),
        quota(
            &[("limits.cpu", "1"), ("limits.memory", "1Gi"), ("pods", "2")],
            &[
                ("limits.cpu", "4"),
                ("limits.memory", "8Gi"),
                ("pods", "20"),
            ],
        ),
    ];
    let u = usage(&quotas);
    assert_eq!(u["limits.cpu"], "1500m/8");
    assert_eq!(u["limits.memory"], "1536Mi/16Gi");
    assert_eq!(u["pods"], "3/40");
}

#[test]
fn redundancy_distinguishes_n_plus_one_n_and_below() {
    let workload = |name: &str, capacity: i32| enclave_crds::Workload {
        name: name.into(),
        zone: "app".into(),
        capacity,
        ..Default::default()
    };
    let deployment = |name: &str, available: i32| -> Observed {
        Observed::of_deployment(&serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "acme-app"}, "status": {"availableReplicas": available}})).expect("deployment"))
    };
    let workloads = [workload("web", 2), workload("api", 1)];
    let r = redundancy(&workloads, &[deployment("web", 3), deployment("api", 2)]);
    assert_eq!((r.reason, r.redundant, r.total), ("Redundant", 2, 2));
    let r = redundancy(&workloads, &[deployment("web", 2), deployment("api", 2)]);
    assert_eq!((r.reason, r.redundant), ("RedundancyLost", 1));
    assert!(r.message.contains("web: 2 available of 3"), "{}", r.message);
    let r = redundancy(&workloads, &[deployment("web", 1), deployment("api", 2)]);
    assert_eq!(r.reason, "Unavailable");
    let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(1));
    with_redundancy(&mut status, &r, None, at(1));
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(status.ready_workloads.as_deref(), Some("1/2"));
}

#[test]
fn decommissioning_shows_purge_deadline() {
    let outcome = Outcome::Decommissioning {
        purge_after: at(1_000),
    };
    let s = tenant_status(Some(1), &outcome, &[], vec![], None, None, at(100));
    assert_eq!(s.phase, Some(Phase::Decommissioning));
    assert_eq!(s.purge_after, Some(Time(at(1_000))));
}

#[test]
fn storage_replicated_needs_every_claim_bound_on_enough_replicas() {
    let claim = |name: &str, phase: &str, class: &str| -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "acme-data"}, "spec": {"storageClassName": class}, "status": {"phase": phase}})).expect("claim")
    };
    let class = |name: &str, replicas: i32| -> StorageClass {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"enclave.dev/replicas": replicas.to_string()}}, "provisioner": "x"})).expect("class")
    };
    let classes = [class("enclave-default-r3", 3), class("foreign", 1)];
    let wanted = [
        ("acme-data".to_string(), "db".to_string(), 3),
        ("acme-data".to_string(), "files".to_string(), 3),
    ];
    let r = replication(
        &wanted,
        &[
            claim("db", "Bound", "enclave-default-r3"),
            claim("files", "Bound", "enclave-default-r3"),
        ],
        &classes,
    );
    assert_eq!((r.ok, r.reason), (true, "Replicated"));
    let r = replication(
        &wanted,
        &[
            claim("db", "Bound", "enclave-default-r3"),
            claim("files", "Pending", "enclave-default-r3"),
        ],
        &classes,
    );
    assert_eq!((r.ok, r.reason), (false, "Pending"));
    assert!(r.message.contains("acme-data/files"), "{}", r.message);
    let r = replication(
        &wanted,
        &[
            claim("db", "Bound", "enclave-default-r3"),
            claim("files", "Bound", "foreign"),
        ],
        &classes,
    );
    assert_eq!((r.ok, r.reason), (false, "WrongClass"));
    assert!(
        r.message.contains("gives 1 replicas, 3 required"),
        "{}",
        r.message
    );
    let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, at(1));
    with_storage(&mut status, Some(&r), vec![], None, at(1));
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == STORAGE_REPLICATED && c.status == "False")
    );
}

#[test]
fn workload_status_names_the_image_and_counts() {
    let workloads = [enclave_crds::Workload {
        name: "web".into(),
        zone: "app".into(),
        capacity: 2,
        ..Default::default()
    }];
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "acme-app"},
        "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
        "status": {"updatedReplicas": 1, "availableReplicas": 3}
    })).expect("deployment");
    let s = workload_statuses(&workloads, &[Observed::of_deployment(&d)]);
    assert_eq!(
        s,
        [WorkloadStatus {
            name: "web".into(),
            zone: "app".into(),
            image: "nginx:2".into(),
            desired: 3,
            updated: 1,
            available: 3
        }]
    );
}

#[test]
fn a_template_its_controller_has_not_observed_has_no_replica_updated() {
    let workloads = [enclave_crds::Workload {
        name: "web".into(),
        zone: "app".into(),
        capacity: 2,
        ..Default::default()
    }];
    let deployment = |observed: i64| -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "acme-app", "generation": 2},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:3"}]}}},
            "status": {"observedGeneration": observed, "updatedReplicas": 3, "availableReplicas": 3}
        }))
        .expect("deployment")
    };
    // The new image is written; the Deployment controller still reports the old template's
    // replicas as updated.
    let s = workload_statuses(&workloads, &[Observed::of_deployment(&deployment(1))]);
    assert_eq!((s[0].image.as_str(), s[0].updated), ("nginx:3", 0));
    let s = workload_statuses(&workloads, &[Observed::of_deployment(&deployment(2))]);
    assert_eq!(s[0].updated, 3);
    let set: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "acme-app", "generation": 5},
        "spec": {"replicas": 3, "selector": {}, "serviceName": "web", "template": {"spec": {"containers": [{"name": "web", "image": "pg:18"}]}}},
        "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    }))
    .expect("statefulset");
    let s = workload_statuses(&workloads, &[Observed::of_stateful_set(&set)]);
    assert_eq!(s[0].updated, 0);
}

#[test]
fn schedule_fires_are_found_looking_back() {
    let now: Timestamp = "2026-11-28T10:30:30Z".parse().expect("time");
    let (latest, before) = recent_fires("0 2 * * *", now).expect("fires");
    assert_eq!(latest.to_string(), "2026-11-28T02:00:00Z");
    assert_eq!(before.to_string(), "2026-11-27T02:00:00Z");
    let (latest, before) = recent_fires("* * * * *", now).expect("fires");
    assert_eq!(
        (latest.to_string(), before.to_string()),
        ("2026-11-28T10:30:00Z".into(), "2026-11-28T10:29:00Z".into())
    );
    assert!(
        recent_fires("0 0 1 1 *", now).is_some(),
        "yearly looks back far enough"
    );
    assert!(recent_fires("not a schedule", now).is_none());
}

#[test]
fn backups_are_healthy_while_the_last_success_is_recent() {
    let now: Timestamp = "2026-11-28T10:30:00Z".parse().expect("time");
    let t = |s: &str| Some(s.parse::<Timestamp>().expect("time"));
    let created = "2026-01-01T00:00:00Z".parse().expect("time");
    let daily = "0 2 * * *";
    // Last night's run succeeded.
    let r = backup_health(daily, &[(t("2026-11-28T02:05:00Z"), None)], created, now);
    assert_eq!((r.healthy, r.reason), (true, "Recent"));
    // Last night's failed, the night before succeeded: one miss tolerated.
    let r = backup_health(
        daily,
        &[
            (t("2026-11-27T02:05:00Z"), None),
            (None, t("2026-11-28T02:03:00Z")),
        ],
        created,
        now,
    );
    assert_eq!((r.healthy, r.reason), (true, "Recent"));
    assert_eq!(
        r.status
            .last_failure_time
            .map(|t| t.0.to_string())
            .as_deref(),
        Some("2026-11-28T02:03:00Z")
    );
    // Two nights without success: overdue.
    let r = backup_health(daily, &[(t("2026-11-26T02:05:00Z"), None)], created, now);
    assert_eq!((r.healthy, r.reason), (false, "Overdue"));
    assert!(r.message.contains("2026-11-26T02:05:00Z"), "{}", r.message);
    // Never succeeded: fine for a tenant created since, overdue for an older one.
    let r = backup_health(
        daily,
        &[],
        "2026-11-28T01:00:00Z".parse().expect("time"),
        now,
    );
    assert_eq!((r.healthy, r.reason), (true, "NotDueYet"));
    let r = backup_health(daily, &[], created, now);
    assert_eq!((r.healthy, r.reason), (false, "Overdue"));
    let mut status = tenant_status(Some(1), &Outcome::Ready, &[], vec![], None, None, now);
    with_backup(&mut status, &r, None, now);
    assert_eq!(status.phase, Some(Phase::Degraded));
}

fn tenant_with_workload() -> enclave_crds::Tenant {
    let mut t = crate::desired::fixtures::tenant("acme");
    t.spec.workloads = vec![
        serde_json::from_value(serde_json::json!({
            "name": "web", "zone": "dmz", "image": "nginx", "capacity": 2
        }))
        .expect("workload"),
    ];
    t
}

fn observed(available: i32) -> Observed {
    Observed {
        namespace: "acme-dmz".into(),
        name: "web".into(),
        zone: Some("dmz".into()),
        image: "nginx".into(),
        desired: 3,
        updated: 3,
        available,
    }
}

#[test]
fn compute_degrades_a_ready_tenant_short_of_n_plus_one_and_announces_it_once() {
    let tenant = tenant_with_workload();
    let reconciled = Reconciled {
        outcome: &Outcome::Ready,
        certificate: None,
        retention: std::time::Duration::from_secs(60),
        incident_grace: super::incidents::DEGRADED_GRACE,
    };
    let healthy = Snapshot {
        namespaces: vec!["acme-dmz".into()],
        workloads: vec![observed(3)],
        ..Snapshot::default()
    };
    let ready = compute(&tenant, &reconciled, &healthy, at(100));
    assert_eq!(ready.phase, Some(Phase::Ready));
    assert_eq!(ready.ready_workloads.as_deref(), Some("1/1"));
    // First status: Ready is announced, nothing is short.
    let events = announcements(None, &ready, &Outcome::Ready);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "Reconciled");
    assert!(!events[0].warning);

    let short = Snapshot {
        previous: Some(ready.clone()),
        workloads: vec![observed(2)],
        ..healthy
    };
    let degraded = compute(&tenant, &reconciled, &short, at(200));
    assert_eq!(degraded.phase, Some(Phase::Degraded));
    let events = announcements(Some(&ready), &degraded, &Outcome::Ready);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].warning);
    assert_eq!(events[0].reason, "RedundancyLost");
    // Still short on the next look: no second warning.
    assert!(announcements(Some(&degraded), &degraded, &Outcome::Ready).is_empty());
    // An incident (R14) once it outlasts its grace (a replaced pod opens none), and the
    // tenant is looked at again when the grace ends.
    assert!(degraded.incidents.is_empty());
    let grace = super::incidents::DEGRADED_GRACE;
    assert_eq!(
        super::incidents::next_due(&degraded, at(200), grace),
        Some(grace)
    );
    let still = Snapshot {
        previous: Some(degraded.clone()),
        ..short
    };
    let later = compute(
        &tenant,
        &reconciled,
        &still,
        at(200 + i64::try_from(grace.as_secs()).expect("secs")),
    );
    let events = announcements(Some(&degraded), &later, &Outcome::Ready);
    assert_eq!(later.incidents[0].type_, "RedundancyLost");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, "IncidentOpened");
}

#[test]
fn compute_derives_decommissioned_at_from_the_deadline_and_keeps_purged_at() {
    let mut tenant = crate::desired::fixtures::tenant("acme");
    tenant.spec.lifecycle.state = enclave_crds::LifecycleState::Decommissioned;
    let retention = std::time::Duration::from_secs(3600);
    let outcome = Outcome::Decommissioning {
        purge_after: at(10_000),
    };
    let reconciled = Reconciled {
        outcome: &outcome,
        certificate: None,
        retention,
        incident_grace: super::incidents::DEGRADED_GRACE,
    };
    let status = compute(&tenant, &reconciled, &Snapshot::default(), at(100));
    assert_eq!(status.phase, Some(Phase::Decommissioning));
    assert_eq!(status.decommissioned_at, Some(Time(at(10_000 - 3600))));
    assert_eq!(status.purge_after, Some(Time(at(10_000))));
    assert_eq!(status.ready_workloads.as_deref(), Some("stopped"));

    let purged = Reconciled {
        outcome: &Outcome::Purged,
        ..reconciled
    };
    let first = compute(&tenant, &purged, &Snapshot::default(), at(20_000));
    assert_eq!(first.purged_at, Some(Time(at(20_000))));
    assert!(first.namespaces.is_empty());
    let again = Snapshot {
        previous: Some(first.clone()),
        ..Snapshot::default()
    };
    let later = compute(&tenant, &purged, &again, at(30_000));
    assert_eq!(
        later.purged_at, first.purged_at,
        "the purge time never moves"
    );
}

#[test]
fn compute_drops_what_the_spec_no_longer_asks() {
    let tenant = crate::desired::fixtures::tenant("acme");
    let previous = TenantStatus {
        certificate: Some(enclave_crds::CertificateStatus::default()),
        backup: Some(enclave_crds::BackupStatus::default()),
        ..TenantStatus::default()
    };
    let reconciled = Reconciled {
        outcome: &Outcome::Ready,
        certificate: None,
        retention: std::time::Duration::from_secs(60),
        incident_grace: super::incidents::DEGRADED_GRACE,
    };
    let snapshot = Snapshot {
        previous: Some(previous),
        ..Snapshot::default()
    };
    let status = compute(&tenant, &reconciled, &snapshot, at(100));
    assert_eq!(status.certificate, None, "no spec.tls, no certificate");
    assert_eq!(status.backup, None, "no spec.backup, no backup status");
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.type_ == CERTIFICATE_READY || c.type_ == BACKUP_HEALTHY)
    );
}

#[test]
fn a_workload_is_told_by_its_zone_label_not_a_namespace_suffix() {
    let workloads: Vec<enclave_crds::Workload> = vec![
        serde_json::from_value(serde_json::json!({
            "name": "web", "zone": "dmz", "image": "nginx", "capacity": 2
        }))
        .expect("workload"),
    ];
    // `acme-x-dmz` ends like `acme-dmz`: its zone label says it is the `x-dmz` zone's.
    let other = Observed {
        namespace: "acme-x-dmz".into(),
        zone: Some("x-dmz".into()),
        ..observed(0)
    };
    let r = redundancy(&workloads, &[other, observed(3)]);
    assert_eq!(r.reason, "Redundant", "{}", r.message);
}

/// The condition `type_` of `status`, if written.
fn find<'a>(status: &'a TenantStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// `(Ready, Reconciling, Stalled)` of `status`, each as its `status` or `None` when absent.
fn kstatus_view(status: &TenantStatus) -> (Option<&str>, Option<&str>, Option<&str>) {
    let of = |type_| find(status, type_).map(|c| c.status.as_str());
    (of(READY), of(RECONCILING), of(STALLED))
}

#[test]
fn every_outcome_carries_the_generation_and_ready() {
    let outcomes = [
        Outcome::Ready,
        Outcome::Progressing {
            reason: "NamespaceTerminating",
            message: "waiting".into(),
        },
        Outcome::Blocked {
            reason: "UnknownImage",
            message: "no image".into(),
        },
        Outcome::Decommissioning {
            purge_after: at(1_000),
        },
        Outcome::Decommissioning {
            purge_after: at(50),
        },
        Outcome::Suspended,
        Outcome::Purged,
    ];
    for outcome in &outcomes {
        let s = tenant_status(Some(7), outcome, &[], vec![], None, None, at(100));
        assert_eq!(s.observed_generation, Some(7), "{outcome:?}");
        assert!(find(&s, READY).is_some(), "{outcome:?}: Ready is written");
        for c in &s.conditions {
            assert_eq!(c.observed_generation, Some(7), "{outcome:?}: {}", c.type_);
        }
    }
}

#[test]
fn kstatus_conditions_follow_the_outcome() {
    let status =
        |outcome: &Outcome| tenant_status(Some(2), outcome, &[], vec![], None, None, at(100));
    // Ready: Current for kstatus (no Reconciling, no Stalled, Ready True).
    assert_eq!(
        kstatus_view(&status(&Outcome::Ready)),
        (Some("True"), None, None)
    );
    // Pending: Reconciling with the outcome's reason and message.
    let pending = status(&Outcome::Progressing {
        reason: "NamespaceTerminating",
        message: "waiting for namespace(s) x-dmz".into(),
    });
    assert_eq!(pending.phase, Some(Phase::Pending));
    assert_eq!(kstatus_view(&pending), (Some("False"), Some("True"), None));
    let reconciling = find(&pending, RECONCILING).expect("Reconciling");
    assert_eq!(reconciling.reason, "NamespaceTerminating");
    assert_eq!(reconciling.message, "waiting for namespace(s) x-dmz");
    // Blocked: Stalled, with the reason and message of Ready.
    let blocked = status(&Outcome::Blocked {
        reason: "UnknownStorageProfile",
        message: "volume db names profile fast, which the configuration lacks".into(),
    });
    assert_eq!(kstatus_view(&blocked), (Some("False"), None, Some("True")));
    let stalled = find(&blocked, STALLED).expect("Stalled");
    let ready = find(&blocked, READY).expect("Ready");
    assert_eq!(
        (&stalled.reason, &stalled.message),
        (&ready.reason, &ready.message)
    );
    assert_eq!(stalled.reason, "UnknownStorageProfile");
    // Deliberate states at rest: neither.
    for outcome in [
        Outcome::Suspended,
        Outcome::Purged,
        Outcome::Decommissioning {
            purge_after: at(1_000),
        },
    ] {
        assert_eq!(
            kstatus_view(&status(&outcome)),
            (Some("False"), None, None),
            "{outcome:?}"
        );
    }
    // Decommissioning past its deadline: the purge is under way.
    let purging = status(&Outcome::Decommissioning {
        purge_after: at(100),
    });
    assert_eq!(kstatus_view(&purging), (Some("False"), Some("True"), None));
    assert_eq!(
        find(&purging, RECONCILING).expect("Reconciling").reason,
        PURGE_IN_PROGRESS
    );
}

#[test]
fn kstatus_conditions_are_removed_once_false_and_keep_their_transition_time_while_true() {
    let blocked = Outcome::Blocked {
        reason: "UnknownImage",
        message: "no image".into(),
    };
    let first = tenant_status(Some(1), &blocked, &[], vec![], None, None, at(100));
    // Blocked again later, with another message: Stalled keeps the time it became true.
    let again = Outcome::Blocked {
        reason: "UnknownImage",
        message: "still no image".into(),
    };
    let second = tenant_status(Some(2), &again, &[], vec![], None, Some(&first), at(200));
    let stalled = find(&second, STALLED).expect("Stalled");
    assert_eq!(stalled.last_transition_time, Time(at(100)));
    assert_eq!(stalled.message, "still no image");
    assert_eq!(stalled.observed_generation, Some(2));
    // Fixed: Stalled is gone, Ready turns true now, and a steady tenant writes nothing new.
    let fixed = tenant_status(
        Some(3),
        &Outcome::Ready,
        &[],
        vec![],
        None,
        Some(&second),
        at(300),
    );
    assert_eq!(kstatus_view(&fixed), (Some("True"), None, None));
    assert_eq!(
        find(&fixed, READY).expect("Ready").last_transition_time,
        Time(at(300))
    );
    let steady = tenant_status(
        Some(3),
        &Outcome::Ready,
        &[],
        vec![],
        None,
        Some(&fixed),
        at(400),
    );
    assert_eq!(fixed, steady);
    // Waiting on the cluster twice: Reconciling keeps its time; a new stall starts anew.
    let waiting = Outcome::Progressing {
        reason: "NamespaceTerminating",
        message: "waiting".into(),
    };
    let w1 = tenant_status(Some(3), &waiting, &[], vec![], None, Some(&steady), at(500));
    let w2 = tenant_status(Some(3), &waiting, &[], vec![], None, Some(&w1), at(600));
    assert_eq!(
        find(&w2, RECONCILING)
            .expect("Reconciling")
            .last_transition_time,
        Time(at(500))
    );
    let b = tenant_status(Some(4), &blocked, &[], vec![], None, Some(&w2), at(700));
    assert_eq!(kstatus_view(&b), (Some("False"), None, Some("True")));
    assert_eq!(
        find(&b, STALLED).expect("Stalled").last_transition_time,
        Time(at(700))
    );
}

#[test]
fn compute_keeps_the_kstatus_conditions_beside_the_others() {
    let tenant = tenant_with_workload();
    let blocked = Outcome::Blocked {
        reason: "UnknownImage",
        message: "no image".into(),
    };
    let reconciled = Reconciled {
        outcome: &blocked,
        certificate: None,
        retention: std::time::Duration::from_secs(60),
        incident_grace: super::incidents::DEGRADED_GRACE,
    };
    let status = compute(&tenant, &reconciled, &Snapshot::default(), at(100));
    assert_eq!(status.phase, Some(Phase::Blocked));
    assert_eq!(kstatus_view(&status), (Some("False"), None, Some("True")));
    assert_eq!(
        status
            .conditions
            .iter()
            .filter(|c| c.type_ == STALLED)
            .count(),
        1
    );
    // Suspended: Ready false, neither Reconciling nor Stalled, no redundancy alarm.
    let mut suspended_tenant = tenant.clone();
    suspended_tenant.spec.lifecycle.state = enclave_crds::LifecycleState::Suspended;
    let suspended = Reconciled {
        outcome: &Outcome::Suspended,
        ..reconciled
    };
    let snapshot = Snapshot {
        previous: Some(status),
        ..Snapshot::default()
    };
    let status = compute(&suspended_tenant, &suspended, &snapshot, at(200));
    assert_eq!(status.phase, Some(Phase::Suspended));
    assert_eq!(kstatus_view(&status), (Some("False"), None, None));
}
