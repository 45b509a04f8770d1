//! Each promise judged from the Tenant's spec and status, with its evidence (cleaned: a
//! RoleBinding subject or a condition message is the tenant's text).

use super::{Promise, Verdict};
use crate::status::{
    BACKUP_HEALTHY, CERTIFICATE_READY, ISOLATED, READY, STORAGE_REPLICATED, WORKLOADS_REDUNDANT,
};
use enclave_crds::{ContactRole, Protocol, Tenant, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Most evidence lines kept per promise; the rest are counted.
pub const MAX_EVIDENCE: usize = 40;
/// Longest evidence line kept, in characters.
pub const MAX_LINE: usize = 300;

/// `text` on one line without control characters (a RoleBinding subject or a condition
/// message may carry newlines or terminal escapes), cut at [`MAX_LINE`] characters.
fn clean(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LINE)
        .collect();
    if text.chars().count() > MAX_LINE {
        line.push('…');
    }
    line
}

fn promise(id: &str, text: &str, verdict: Verdict, why: impl Into<String>) -> Promise {
    Promise {
        id: id.into(),
        promise: text.into(),
        verdict,
        why: clean(&why.into()),
        evidence: Vec::new(),
    }
}

fn with(mut promise: Promise, evidence: Vec<String>) -> Promise {
    let more = evidence.len().saturating_sub(MAX_EVIDENCE);
    promise.evidence = evidence
        .into_iter()
        .take(MAX_EVIDENCE)
        .map(|e| clean(&e))
        .collect();
    if more > 0 {
        promise.evidence.push(format!("and {more} more"));
    }
    promise
}

/// What the promises are judged from.
pub(super) struct Facts<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) status: &'a TenantStatus,
}

impl Facts<'_> {
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Kept when the condition is True, broken when False, unknown when absent.
    fn by_condition(&self, id: &str, text: &str, type_: &str) -> Promise {
        match self.condition(type_) {
            Some(c) if c.status == "True" => promise(id, text, Verdict::Kept, c.message.clone()),
            Some(c) => promise(
                id,
                text,
                Verdict::Broken,
                format!("{} is False ({}): {}", type_, c.reason, c.message),
            ),
            None => promise(
                id,
                text,
                Verdict::Unknown,
                format!("the operator has not reported {type_} yet"),
            ),
        }
    }

    pub(super) fn https(&self) -> Promise {
        let text = "Access only over HTTPS, with TLS 1.2 or newer and strong ciphers.";
        let Some(tls) = &self.tenant.spec.tls else {
            return promise(
                "R1",
                text,
                Verdict::Broken,
                "no certificate is declared (spec.tls): nothing serves HTTPS with a certificate of the tenant",
            );
        };
        let mut evidence = vec![format!("minimum TLS version: {:?}", tls.min_version)];
        if let Some(c) = &self.status.certificate {
            evidence.push(format!(
                "certificate serial {} issued by {}, valid until {}, renewed at {}",
                c.serial.as_deref().unwrap_or("?"),
                c.issuer.as_deref().unwrap_or("?"),
                c.not_after.as_ref().map_or("?".into(), |t| t.0.to_string()),
                c.renewal_time
                    .as_ref()
                    .map_or("?".into(), |t| t.0.to_string())
            ));
        }
        with(self.by_condition("R1", text, CERTIFICATE_READY), evidence)
    }

    pub(super) fn access(&self) -> Promise {
        let access = &self.tenant.spec.access;
        let subjects = |role: &str, list: &[enclave_crds::Subject]| {
            let names: Vec<String> = list
                .iter()
                .map(|s| format!("{:?} {}", s.kind, s.name))
                .collect();
            format!("{role}: {}", none_if_empty(&names))
        };
        let mut evidence = vec![
            subjects("admins", &access.admins),
            subjects("members", &access.members),
            subjects("viewers", &access.viewers),
        ];
        evidence.extend(
            self.status
                .tenant_bindings
                .iter()
                .map(|b| format!("granted by the tenant's admins: {b}")),
        );
        with(
            self.by_condition(
                "R2",
                "Administrators manage their users' and groups' access rights and roles.",
                READY,
            ),
            evidence,
        )
    }

    pub(super) fn traceability() -> Promise {
        promise(
            "R3",
            "Full traceability of user activity and of abuse attempts.",
            Verdict::Unknown,
            "user activity is in the cluster's audit log, which the platform team keeps; the operator records every change it makes and every refused attempt on a managed object as an Event on the Tenant",
        )
    }

    pub(super) fn security_options(&self) -> Promise {
        let text = "Security options per instance: password complexity, download threshold, virtual firewall.";
        let security = self.tenant.spec.security.clone().unwrap_or_default();
        let firewall = &self.tenant.spec.firewall;
        let mut evidence = vec![
            format!(
                "password policy {:?}, download threshold {}, published in each zone's enclave-security ConfigMap",
                security.password_policy,
                security.download_threshold.as_deref().unwrap_or("none")
            ),
            format!(
                "firewall: allow {}, deny {}",
                none_if_empty(&firewall.allow_cidrs),
                none_if_empty(&firewall.deny_cidrs)
            ),
        ];
        let pending: Vec<String> = self
            .status
            .ingresses
            .iter()
            .filter(|i| i.firewall == "Pending")
            .map(|i| format!("{} in zone {}", i.name, i.zone))
            .collect();
        evidence.extend(self.status.ingresses.iter().map(|i| {
            format!(
                "Ingress {} (zone {}): firewall {}",
                i.name, i.zone, i.firewall
            )
        }));
        if !pending.is_empty() {
            return with(
                promise(
                    "R4",
                    text,
                    Verdict::Broken,
                    format!("Ingresses without the firewall: {}", pending.join(", ")),
                ),
                evidence,
            );
        }
        with(self.by_condition("R4", text, ISOLATED), evidence)
    }

    pub(super) fn password_hashes(&self) -> Promise {
        let level = self
            .tenant
            .spec
            .security
            .as_ref()
            .map(|s| s.password_policy)
            .unwrap_or_default();
        let rules = crate::desired::security::rules(level);
        with(
            promise(
                "R5",
                "Passwords stored only as strong salted hashes.",
                Verdict::Unknown,
                "the tenant's applications hash the passwords; the operator publishes the parameters they must use and stores no plaintext credential",
            ),
            vec![format!(
                "Argon2id, {} KiB, {} iterations, parallelism {} (enclave-security)",
                rules.argon2_memory_kib, rules.argon2_iterations, rules.argon2_parallelism
            )],
        )
    }

    pub(super) fn zones(&self) -> Promise {
        let mut evidence: Vec<String> = self
            .status
            .exposure
            .iter()
            .map(|e| {
                format!(
                    "zone {} reachable on {} from {}",
                    e.zone,
                    ports(e.port, e.end_port, e.protocol),
                    e.from
                )
            })
            .collect();
        evidence.extend(self.status.egress.iter().map(|e| {
            format!(
                "zone {} reaches {} on {}",
                e.zone,
                e.to,
                ports(e.port, e.end_port, e.protocol)
            )
        }));
        with(
            self.by_condition(
                "R6",
                "Services split into zones with their own rules: showcase (internet-facing), support, data; nothing else reachable.",
                ISOLATED,
            ),
            evidence,
        )
    }

    pub(super) fn patches(&self) -> Promise {
        let text = "Security patches applied as soon as possible.";
        let rolling: Vec<String> = self
            .status
            .workloads
            .iter()
            .filter(|w| w.updated < w.desired)
            .map(|w| {
                format!(
                    "{}: {}/{} replicas run {}",
                    w.name, w.updated, w.desired, w.image
                )
            })
            .collect();
        let evidence = self
            .status
            .workloads
            .iter()
            .map(|w| format!("{} runs {}", w.name, w.image))
            .collect();
        if self.status.workloads.is_empty() {
            return promise(
                "R7",
                text,
                Verdict::NotApplicable,
                "no workload is declared",
            );
        }
        let (verdict, why) = if rolling.is_empty() {
            (Verdict::Kept, "every replica runs its current image".into())
        } else {
            (
                Verdict::Broken,
                format!("rolling out: {}", rolling.join("; ")),
            )
        };
        with(promise("R7", text, verdict, why), evidence)
    }

    fn volumes(&self, describe: impl Fn(&enclave_crds::Volume) -> String) -> Vec<String> {
        self.tenant.spec.volumes.iter().map(describe).collect()
    }

    pub(super) fn replicated_storage(&self) -> Promise {
        let text = "Data on a distributed system, each datum replicated on different disks of different servers.";
        if self.tenant.spec.volumes.is_empty() {
            return promise("R8", text, Verdict::NotApplicable, "no volume is declared");
        }
        let evidence = self.volumes(|v| {
            format!(
                "volume {} ({}, zone {}): {} replicas, profile {}{}",
                v.name,
                v.size,
                v.zone,
                v.replicas,
                v.profile,
                if v.per_replica {
                    ", a copy per workload replica"
                } else {
                    ""
                }
            )
        });
        with(self.by_condition("R8", text, STORAGE_REPLICATED), evidence)
    }

    pub(super) fn encryption(&self) -> Promise {
        let text =
            "Encryption at rest and in transit; exports encrypted; keys kept in a protected zone.";
        let clear: Vec<&str> = self
            .tenant
            .spec
            .volumes
            .iter()
            .filter(|v| !v.encrypted)
            .map(|v| v.name.as_str())
            .collect();
        let mut evidence = self.volumes(|v| {
            format!(
                "volume {}: {}",
                v.name,
                if v.encrypted {
                    "encrypted, key in the operator's namespace"
                } else {
                    "not encrypted"
                }
            )
        });
        if self.tenant.spec.backup.is_some() {
            evidence.push(
                "backups and exports encrypted by restic, password in the operator's namespace"
                    .into(),
            );
        }
        if clear.is_empty() {
            with(
                promise(
                    "R9",
                    text,
                    Verdict::Kept,
                    "every volume is encrypted; transfers use TLS",
                ),
                evidence,
            )
        } else {
            with(
                promise(
                    "R9",
                    text,
                    Verdict::Broken,
                    format!("volumes stored in clear: {}", clear.join(", ")),
                ),
                evidence,
            )
        }
    }

    pub(super) fn backups(&self) -> Promise {
        let text = "Regular encrypted, incremental copies stored off-site.";
        let Some(backup) = &self.tenant.spec.backup else {
            return promise(
                "R10",
                text,
                Verdict::Broken,
                "no backup is declared (spec.backup)",
            );
        };
        let mut evidence = vec![format!(
            "schedule {}, keeping {} daily, {} weekly, {} monthly, to {}/{}",
            backup.schedule,
            backup.retention.daily,
            backup.retention.weekly,
            backup.retention.monthly,
            backup.destination.endpoint,
            backup.destination.bucket
        )];
        if let Some(b) = &self.status.backup {
            if let Some(t) = &b.last_successful_time {
                evidence.push(format!("last successful backup at {}", t.0));
            }
            if let Some(t) = &b.last_failure_time {
                evidence.push(format!("last failed backup at {}", t.0));
            }
        }
        with(self.by_condition("R10", text, BACKUP_HEALTHY), evidence)
    }

    pub(super) fn separation(&self) -> Promise {
        let mut evidence = vec![format!(
            "namespaces: {}",
            none_if_empty(&self.status.namespaces)
        )];
        evidence.extend(
            self.status
                .usage
                .iter()
                .map(|(resource, used)| format!("quota {resource}: {used}")),
        );
        with(
            self.by_condition(
                "R11",
                "Each customer's data logically separated from the others'.",
                ISOLATED,
            ),
            evidence,
        )
    }

    pub(super) fn export(&self) -> Promise {
        let text = "A complete return of the content on request.";
        if self.tenant.spec.backup.is_none() {
            return promise(
                "R12",
                text,
                Verdict::Broken,
                "exports are written to the backup store, and none is declared (spec.backup)",
            );
        }
        promise(
            "R12",
            text,
            Verdict::Kept,
            "an encrypted export of every volume and of the tenant's objects is made on request (kubectl enclave export)",
        )
    }

    pub(super) fn destruction(&self) -> Promise {
        let text = "All content destroyed at most 30 days after the request.";
        let mut evidence = vec![format!(
            "retention after a request: {}",
            self.tenant.spec.lifecycle.retention
        )];
        if let Some(t) = &self.status.purge_after {
            evidence.push(format!("data destroyed after {}", t.0));
        }
        if let Some(t) = &self.status.purged_at {
            evidence.push(format!("purged and verified at {}", t.0));
        }
        let overdue = self
            .status
            .incidents
            .iter()
            .any(|i| i.type_ == "PurgeOverdue" && i.resolved_at.is_none());
        let (verdict, why) = if overdue {
            (
                Verdict::Broken,
                "the purge is past its deadline (incident PurgeOverdue)",
            )
        } else {
            (
                Verdict::Kept,
                "the retention is at most 30 days, and a purge is verified before the Tenant goes",
            )
        };
        with(promise("R13", text, verdict, why), evidence)
    }

    pub(super) fn incidents(&self) -> Promise {
        let text = "Incidents reported within 24 hours, and kept in a register.";
        let contacts: Vec<String> = self
            .tenant
            .spec
            .contacts
            .iter()
            .filter(|c| matches!(c.role, ContactRole::Security | ContactRole::Operations))
            .map(|c| c.email.clone())
            .collect();
        let mut evidence = vec![format!("contacts: {}", none_if_empty(&contacts))];
        evidence.extend(self.status.incidents.iter().map(|i| {
            format!(
                "{} {} ({}) opened {}, {}, {}",
                i.severity,
                i.id,
                i.summary,
                i.opened_at.0,
                i.notified_at
                    .as_ref()
                    .map_or("not yet notified".into(), |t| format!("notified {}", t.0)),
                i.resolved_at
                    .as_ref()
                    .map_or("open".into(), |t| format!("resolved {}", t.0))
            )
        }));
        let unnotified: Vec<&str> = self
            .status
            .incidents
            .iter()
            .filter(|i| i.notified_at.is_none())
            .map(|i| i.id.as_str())
            .collect();
        let (verdict, why) = if contacts.is_empty() {
            (
                Verdict::Broken,
                "no security or operations contact to notify (spec.contacts)".to_string(),
            )
        } else if !unnotified.is_empty() {
            (
                Verdict::Broken,
                format!("not notified yet: {}", unnotified.join(", ")),
            )
        } else {
            (
                Verdict::Kept,
                "every incident is announced when it opens; the register is kept by the operator"
                    .to_string(),
            )
        };
        with(promise("R14", text, verdict, why), evidence)
    }

    pub(super) fn redundancy(&self) -> Promise {
        let text = "At least N+1 redundancy for every service.";
        if self.tenant.spec.workloads.is_empty() {
            return promise(
                "R15",
                text,
                Verdict::NotApplicable,
                "no workload is declared",
            );
        }
        let evidence = self
            .status
            .workloads
            .iter()
            .map(|w| {
                format!(
                    "{} (zone {}): {}/{} available",
                    w.name, w.zone, w.available, w.desired
                )
            })
            .collect();
        with(
            self.by_condition("R15", text, WORKLOADS_REDUNDANT),
            evidence,
        )
    }

    pub(super) fn exposure_report(&self) -> Promise {
        let text = "High availability, and a penetration test after every network change.";
        let evidence = vec![format!(
            "exposure report: {} open ports, {} egress destinations, refreshed at every network change",
            self.status.exposure.len(),
            self.status.egress.len()
        )];
        let current = self.status.observed_generation.is_some()
            && self.status.observed_generation == self.tenant.metadata.generation;
        if current {
            with(self.by_condition("R16", text, READY), evidence)
        } else {
            with(
                promise(
                    "R16",
                    text,
                    Verdict::Unknown,
                    "the status does not describe the latest spec yet",
                ),
                evidence,
            )
        }
    }

    pub(super) fn internet_ports(&self) -> Promise {
        let evidence = self
            .status
            .exposure
            .iter()
            .filter(|e| {
                self.tenant
                    .spec
                    .zones
                    .iter()
                    .any(|z| z.name == e.zone && z.exposure == enclave_crds::Exposure::Internet)
            })
            .map(|e| {
                format!(
                    "zone {}: {} from {}",
                    e.zone,
                    ports(e.port, e.end_port, e.protocol),
                    e.from
                )
            })
            .collect();
        with(
            self.by_condition(
                "R17",
                "Only the needed service ports open to the internet.",
                ISOLATED,
            ),
            evidence,
        )
    }
}

fn ports(port: i32, end: Option<i32>, protocol: Protocol) -> String {
    match end {
        Some(end) if end != port => format!("{port}-{end}/{protocol:?}"),
        _ => format!("{port}/{protocol:?}"),
    }
}

fn none_if_empty(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}
