use super::*;
use crate::desired::fixtures::tenant;
use crate::status::{
    BACKUP_HEALTHY, CERTIFICATE_READY, ISOLATED, READY, STORAGE_REPLICATED, WORKLOADS_REDUNDANT,
};
use enclave_crds::{CertificateStatus, Incident, WorkloadStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_764_633_600 + s).expect("time")
}

fn condition(type_: &str, status: &str, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} {status}"),
        last_transition_time: Time(at(0)),
        observed_generation: None,
    }
}

/// A full tenant (TLS, backups, an encrypted volume, a workload, contacts), every condition
/// True.
fn healthy() -> Tenant {
    let mut t = tenant("acme");
    t.spec = serde_json::from_value(serde_json::json!({
        "displayName": "Acme",
        "contacts": [{"email": "sec@acme.example", "role": "Security"}],
        "tls": {"dnsNames": ["acme.example"]},
        "backup": {"schedule": "0 2 * * *",
                   "destination": {"endpoint": "https://s3.example", "bucket": "b", "credentialsSecret": "s"}},
        "volumes": [{"name": "db", "zone": "data", "size": "1Gi", "encrypted": true}],
        "workloads": [{"name": "web", "zone": "dmz", "image": "nginx:1", "capacity": 2}],
    }))
    .expect("spec");
    t.status = Some(TenantStatus {
        observed_generation: Some(1),
        phase: Some(Phase::Ready),
        conditions: [
            READY,
            ISOLATED,
            CERTIFICATE_READY,
            BACKUP_HEALTHY,
            STORAGE_REPLICATED,
            WORKLOADS_REDUNDANT,
        ]
        .iter()
        .map(|c| condition(c, "True", "Ok"))
        .collect(),
        workloads: vec![WorkloadStatus {
            name: "web".into(),
            zone: "dmz".into(),
            image: "nginx:1".into(),
            desired: 3,
            updated: 3,
            available: 3,
        }],
        certificate: Some(CertificateStatus {
            serial: Some("0a1b".into()),
            not_after: Some(Time(at(90 * 86_400))),
            ..CertificateStatus::default()
        }),
        ..TenantStatus::default()
    });
    t
}

fn verdicts(report: &Report) -> Vec<(&str, Verdict)> {
    report
        .promises
        .iter()
        .map(|p| (p.id.as_str(), p.verdict))
        .collect()
}

fn verdict(report: &Report, id: &str) -> Verdict {
    report
        .promises
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.verdict)
        .expect("promise")
}

#[test]
fn a_healthy_full_tenant_keeps_every_promise_that_can_be_judged() {
    let report = report(&healthy());
    let ids: Vec<&str> = report.promises.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, (1..=17).map(|i| format!("R{i}")).collect::<Vec<_>>());
    for (id, v) in verdicts(&report) {
        let expected = if matches!(id, "R3" | "R5") {
            Verdict::Unknown
        } else {
            Verdict::Kept
        };
        assert_eq!(v, expected, "{id}");
    }
    assert_eq!(report.summary, "15/15 kept");
    let r1 = &report.promises[0];
    assert!(
        r1.evidence.iter().any(|e| e.contains("serial 0a1b")),
        "{r1:?}"
    );
}

#[test]
fn degradations_break_the_promises_they_concern() {
    let mut t = healthy();
    let status = t.status.as_mut().expect("status");
    for c in &mut status.conditions {
        if c.type_ == ISOLATED || c.type_ == BACKUP_HEALTHY {
            *c = condition(&c.type_.clone(), "False", "Broken");
        }
    }
    status.workloads[0].updated = 1;
    status.incidents.push(Incident {
        id: "BackupFailing-1".into(),
        type_: "BackupFailing".into(),
        severity: "critical".into(),
        opened_at: Time(at(10)),
        notified_at: None,
        resolved_at: None,
        summary: "s".into(),
        contacts: vec![],
    });
    t.spec.volumes[0].encrypted = false;
    let report = report(&t);
    for id in ["R4", "R6", "R7", "R9", "R10", "R11", "R14", "R17"] {
        assert_eq!(verdict(&report, id), Verdict::Broken, "{id}");
    }
    for id in ["R1", "R8", "R15"] {
        assert_eq!(verdict(&report, id), Verdict::Kept, "{id}");
    }
    let r14 = &report.promises[13];
    assert!(r14.why.contains("BackupFailing-1"), "{r14:?}");
}

#[test]
fn a_minimal_tenant_says_what_is_missing_and_what_does_not_apply() {
    let mut t = tenant("bare");
    t.status = Some(TenantStatus::default());
    let report = report(&t);
    for id in ["R1", "R10", "R12", "R14"] {
        assert_eq!(verdict(&report, id), Verdict::Broken, "{id}");
    }
    for id in ["R7", "R8", "R15"] {
        assert_eq!(verdict(&report, id), Verdict::NotApplicable, "{id}");
    }
    // No status yet: the conditions cannot be judged.
    assert_eq!(verdict(&report, "R6"), Verdict::Unknown);
    assert_eq!(verdict(&report, "R16"), Verdict::Unknown);
}

#[test]
fn the_report_is_free_of_the_clock_and_renders_ages() {
    let t = healthy();
    assert_eq!(report(&t), report(&t));
    let text = text(&report(&t), at(86_400));
    assert!(text.contains("R1   KEPT"), "{text}");
    assert!(text.contains("(in 89d)"), "{text}");
    let md = markdown(&report(&t), at(0));
    assert!(md.contains("| R10 |"), "{md}");
    assert_eq!(render::age(at(0), at(7200)), "2h ago");
}

#[test]
fn evidence_is_data_never_formatting_nor_terminal_escapes() {
    let mut t = healthy();
    let status = t.status.as_mut().expect("status");
    status.tenant_bindings = (0..100)
        .map(|i| format!("acme-app/b{i}: admin -> User evil\n## R1 KEPT\u{1b}]0;x\u{7}|"))
        .collect();
    let report = report(&t);
    let r2 = &report.promises[1];
    assert_eq!(
        r2.evidence.len(),
        MAX_EVIDENCE + 1,
        "capped, the rest counted"
    );
    assert!(r2.evidence.iter().all(|e| !e.chars().any(char::is_control)));
    let md = markdown(&report, at(0));
    assert!(!md.contains("\n## R1 KEPT"), "no forged heading");
    assert!(md.contains("\\#\\# R1"), "{md}");
    let text = text(&report, at(0));
    assert!(!text.contains('\u{1b}'));
}
