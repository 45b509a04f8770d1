//! The reconcile's TLS step: the tenant's CA and serving certificate from the built-in issuer,
//! or a cert-manager `Certificate`; the CA bundle and TLS policy in every zone.

use super::{Reconcile, until};
use crate::apply::{Change, apply, is_subset};
use crate::build::Identity;
use crate::status::TlsReport;
use crate::tls::objects::{self, SERVING_SECRET};
use crate::tls::{self, CaPlan, Pem, Policy};
use crate::{Error, Result};
use enclave_crds::{CertificateStatus, IssuerKind, KeyAlgorithm, Tls};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use std::time::Duration;

/// What the TLS step leaves for the rest of the reconcile.
#[derive(Clone, Debug, Default)]
pub struct TlsOutcome {
    /// For the status: the certificate and `CertificateReady`.
    pub report: Option<TlsReport>,
    /// The serial of the certificate in the serving zones: workloads there mount it and roll
    /// when it changes.
    pub serial: Option<String>,
    /// How soon to look again (the renewal time).
    pub next: Option<Duration>,
}

fn certificate_gvk() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

impl Reconcile<'_> {
    /// Keeps the tenant's TLS objects. Without `spec.tls`, only the policy is published.
    pub(super) async fn certificates(&self, identity: &Identity) -> Result<TlsOutcome> {
        let spec = self.tenant.spec.tls.clone();
        let policy = Policy {
            min_version: spec.as_ref().map(|t| t.min_version).unwrap_or_default(),
        };
        self.apply_namespaced(&objects::policies(self.tenant, identity, policy))
            .await?;
        let Some(spec) = spec else {
            return Ok(TlsOutcome::default());
        };
        if spec.issuer.is_some() {
            return self.cert_manager(identity, &spec).await;
        }
        self.built_in(identity, &spec).await
    }

    /// The built-in issuer: a CA per tenant in the operator's namespace, a serving certificate
    /// in each serving zone, renewed before expiry, re-issued when edited or deleted.
    async fn built_in(&self, identity: &Identity, spec: &Tls) -> Result<TlsOutcome> {
        let now = Timestamp::now();
        let failed = |e: tls::TlsError| Error::Certificate(e.to_string());
        // The CA.
        let cas = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.config.namespace);
        let ca_name = objects::ca_secret_name(&identity.name);
        let live_ca = cas.get_opt(&ca_name).await?;
        let found = live_ca.as_ref().and_then(objects::pem_of);
        let kept_previous = live_ca
            .as_ref()
            .and_then(objects::previous_of)
            .filter(|p| tls::parse(p).is_ok_and(|i| i.not_after > now));
        let validity = self.config.tls.ca_validity();
        let (ca, previous) = match (tls::plan_ca(found.as_ref(), now), found.clone()) {
            (CaPlan::Keep(_), Some(found)) => (found, kept_previous),
            (CaPlan::Keep(_) | CaPlan::Create, _) => {
                let ca = tls::new_ca(&identity.name, now, validity).map_err(failed)?;
                let serial = tls::parse(&ca.cert).map(|i| i.serial).unwrap_or_default();
                self.publish(
                    EventType::Normal,
                    "CACreated",
                    "Issue",
                    format!("created the tenant's CA, serial {serial}"),
                )
                .await;
                (ca, None)
            }
            (CaPlan::Rotate(old), found) => {
                let ca = tls::new_ca(&identity.name, now, validity).map_err(failed)?;
                let serial = tls::parse(&ca.cert).map(|i| i.serial).unwrap_or_default();
                self.publish(
                    EventType::Normal,
                    "CARotated",
                    "Issue",
                    format!(
                        "rotated the tenant's CA: serial {serial} replaces {}, which stays trusted until {}",
                        old.serial, old.not_after
                    ),
                )
                .await;
                (ca, found.map(|f| f.cert))
            }
        };
        let desired_ca =
            objects::ca_secret(identity, &self.config.namespace, &ca, previous.as_deref());
        let change = apply(&cas, &desired_ca, live_ca.as_ref()).await?;
        self.record_change(
            change,
            "Secret",
            &format!("{}/{ca_name}", self.config.namespace),
        )
        .await;
        let bundle = match &previous {
            Some(previous) => format!("{}{previous}", ca.cert),
            None => ca.cert.clone(),
        };
        let ca_info = tls::parse(&ca.cert).map_err(failed)?;

        // The serving certificate: the first valid one found in a serving zone, else a new one.
        let names = objects::dns_names(self.tenant, &self.config.tls.cluster_domain);
        let renew_before = spec
            .renew_before
            .as_deref()
            .and_then(enclave_crds::duration::parse);
        let zones = objects::serving_zones(self.tenant);
        let mut live = Vec::new();
        for zone in &zones {
            let api = Api::<Secret>::namespaced(
                self.ctx.client.clone(),
                &self.tenant.zone_namespace(zone),
            );
            live.push(api.get_opt(SERVING_SECRET).await?);
        }
        let found: Vec<Option<Pem>> = live
            .iter()
            .map(|s| s.as_ref().and_then(objects::pem_of))
            .collect();
        let checks: Vec<_> = found
            .iter()
            .map(|f| tls::check_leaf(f.as_ref(), &ca.cert, &names, now, renew_before))
            .collect();
        let valid = found
            .iter()
            .zip(&checks)
            .find_map(|(f, c)| c.as_ref().ok().and(f.clone()));
        let serving = if let Some(serving) = valid {
            serving
        } else {
            let reason = checks
                .iter()
                .find_map(|c| c.as_ref().err().copied())
                .unwrap_or(tls::Reissue::Missing);
            let old = found
                .iter()
                .flatten()
                .find_map(|f| tls::parse(&f.cert).ok());
            let validity = enclave_crds::duration::parse(&spec.duration)
                .unwrap_or(Duration::from_secs(90 * 86_400));
            let list: Vec<String> = names.iter().cloned().collect();
            let issued = match tls::issue(&ca, &list, spec.key_algorithm, now, validity) {
                Ok(issued) => issued,
                Err(error) => {
                    self.renewal_failing(old.as_ref(), renew_before, &error.to_string())
                        .await;
                    return Err(failed(error));
                }
            };
            let info = tls::parse(&issued.cert).map_err(failed)?;
            let (event, why) = reason.describe();
            let replaces =
                old.map_or_else(String::new, |o| format!("; replaces serial {}", o.serial));
            self.publish(
                EventType::Normal,
                event,
                "Issue",
                format!(
                    "issued certificate serial {} for {}, valid until {} ({why}{replaces})",
                    info.serial,
                    list.join(", "),
                    info.not_after
                ),
            )
            .await;
            issued
        };
        for (zone, live) in zones.iter().zip(&live) {
            let desired = objects::serving_secret(self.tenant, identity, zone, &serving, &bundle);
            let namespace = self.tenant.zone_namespace(zone);
            let api = Api::<Secret>::namespaced(self.ctx.client.clone(), &namespace);
            let change = apply(&api, &desired, live.as_ref()).await?;
            self.record_change(change, "Secret", &format!("{namespace}/{SERVING_SECRET}"))
                .await;
        }
        self.apply_namespaced(&objects::bundles(self.tenant, identity, &bundle))
            .await?;

        let info = tls::parse(&serving.cert).map_err(failed)?;
        let renewal = tls::renewal_time(info.not_before, info.not_after, renew_before);
        let ca_renewal = tls::renewal_time(ca_info.not_before, ca_info.not_after, None);
        self.ctx
            .metrics
            .certificate_expires(&identity.name, info.not_after);
        Ok(TlsOutcome {
            report: Some(TlsReport {
                certificate: Some(certificate_status(
                    &info,
                    renewal,
                    ca_info.subject.clone(),
                    &self
                        .tenant
                        .zone_namespace(zones.first().map_or("", String::as_str)),
                )),
                ready: true,
                reason: "Issued",
                message: format!(
                    "serial {} for {} name(s), valid until {}, renewed at {renewal}",
                    info.serial,
                    names.len(),
                    info.not_after
                ),
            }),
            serial: Some(info.serial),
            next: Some(until(now, renewal.min(ca_renewal))),
        })
    }

    /// A warning Event while renewal keeps failing past the renewal time.
    async fn renewal_failing(
        &self,
        old: Option<&tls::CertInfo>,
        renew_before: Option<Duration>,
        error: &str,
    ) {
        let Some(old) = old else { return };
        if Timestamp::now() >= tls::renewal_time(old.not_before, old.not_after, renew_before) {
            self.publish(
                EventType::Warning,
                "CertificateExpiring",
                "Issue",
                format!(
                    "certificate serial {} expires at {} and its renewal failed: {error}",
                    old.serial, old.not_after
                ),
            )
            .await;
        }
    }

    /// cert-manager as the issuer: a `Certificate` per serving zone, its readiness read back.
    async fn cert_manager(&self, identity: &Identity, spec: &Tls) -> Result<TlsOutcome> {
        let Some(issuer) = &spec.issuer else {
            return Ok(TlsOutcome::default());
        };
        let crds = Api::<CustomResourceDefinition>::all(self.ctx.client.clone());
        if crds
            .get_opt("certificates.cert-manager.io")
            .await?
            .is_none()
        {
            return Ok(TlsOutcome {
                report: Some(TlsReport {
                    certificate: None,
                    ready: false,
                    reason: "CertManagerNotInstalled",
                    message: "spec.tls.issuer names a cert-manager issuer, but cert-manager's CRDs are not installed: install cert-manager, or remove spec.tls.issuer to use Enclave's built-in CA".into(),
                }),
                serial: None,
                next: Some(Duration::from_secs(10)),
            });
        }
        let kind = match issuer.kind {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        };
        let names: Vec<String> = objects::dns_names(self.tenant, &self.config.tls.cluster_domain)
            .into_iter()
            .collect();
        let (algorithm, size) = match spec.key_algorithm {
            KeyAlgorithm::EcdsaP256 => ("ECDSA", 256),
            KeyAlgorithm::Rsa2048 => ("RSA", 2048),
            KeyAlgorithm::Rsa3072 => ("RSA", 3072),
            KeyAlgorithm::Rsa4096 => ("RSA", 4096),
        };
        let resource = certificate_gvk();
        let zones = objects::serving_zones(self.tenant);
        let mut report = None;
        let mut serial = None;
        let mut next = None;
        for zone in &zones {
            let namespace = self.tenant.zone_namespace(zone);
            let meta = identity.zone_object(self.tenant, zone, SERVING_SECRET);
            let mut spec_json = json!({
                "secretName": SERVING_SECRET,
                "dnsNames": names,
                "duration": go_duration(&spec.duration),
                "privateKey": {"algorithm": algorithm, "size": size, "rotationPolicy": "Always"},
                "issuerRef": {"name": issuer.name, "kind": kind, "group": "cert-manager.io"},
                // The tenant's uid, not Enclave's managed-by label: cert-manager must be free
                // to write the Secret, which the guard would refuse on managed objects.
                "secretTemplate": {"labels": {crate::build::labels::TENANT_UID: identity.uid}},
            });
            if let Some(renew) = &spec.renew_before {
                spec_json["renewBefore"] = json!(go_duration(renew));
            }
            let desired = json!({
                "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": SERVING_SECRET, "namespace": namespace, "labels": meta.labels, "ownerReferences": meta.owner_references},
                "spec": spec_json,
            });
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.ctx.client.clone(), &namespace, &resource);
            let live = api.get_opt(SERVING_SECRET).await?;
            let matches = match &live {
                Some(live) => is_subset(&desired, &serde_json::to_value(live)?),
                None => false,
            };
            if !matches {
                api.patch(
                    SERVING_SECRET,
                    &PatchParams::apply(crate::build::MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await?;
                let change = if live.is_some() {
                    Change::Updated
                } else {
                    Change::Created
                };
                self.record_change(
                    change,
                    "Certificate",
                    &format!("{namespace}/{SERVING_SECRET}"),
                )
                .await;
            }
            if report.is_some() {
                continue;
            }
            // Readiness, from the first serving zone.
            let status = live
                .as_ref()
                .map(|l| l.data["status"].clone())
                .unwrap_or_default();
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready");
            let is_ready = ready.is_some_and(|c| c["status"] == "True");
            let message = ready
                .and_then(|c| c["message"].as_str())
                .unwrap_or("waiting for cert-manager to issue it")
                .to_string();
            let secret = Api::<Secret>::namespaced(self.ctx.client.clone(), &namespace)
                .get_opt(SERVING_SECRET)
                .await?;
            let info = secret
                .as_ref()
                .and_then(objects::pem_of)
                .and_then(|p| tls::parse(&p.cert).ok());
            let renewal = status["renewalTime"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok());
            if let Some(info) = info.as_ref().filter(|_| is_ready) {
                let renewal = renewal
                    .unwrap_or_else(|| tls::renewal_time(info.not_before, info.not_after, None));
                serial = Some(info.serial.clone());
                next = Some(until(Timestamp::now(), renewal));
                self.ctx
                    .metrics
                    .certificate_expires(&identity.name, info.not_after);
                // The issuer's CA, as cert-manager puts it in the Secret, is the bundle.
                if let Some(ca) = secret
                    .as_ref()
                    .and_then(|s| s.data.as_ref()?.get("ca.crt").cloned())
                    .and_then(|b| String::from_utf8(b.0).ok())
                {
                    self.apply_namespaced(&objects::bundles(self.tenant, identity, &ca))
                        .await?;
                }
                report = Some(TlsReport {
                    certificate: Some(certificate_status(
                        info,
                        renewal,
                        format!("{kind}/{}", issuer.name),
                        &namespace,
                    )),
                    ready: true,
                    reason: "Issued",
                    message: format!(
                        "cert-manager {kind}/{} issued serial {}, valid until {}",
                        issuer.name, info.serial, info.not_after
                    ),
                });
            } else {
                next = Some(Duration::from_secs(5));
                report = Some(TlsReport {
                    certificate: None,
                    ready: false,
                    reason: "Issuing",
                    message: format!("cert-manager {kind}/{}: {message}", issuer.name),
                });
            }
        }
        Ok(TlsOutcome {
            report,
            serial,
            next,
        })
    }
}

/// A duration as Go (and so cert-manager) reads it: days become hours.
fn go_duration(text: &str) -> String {
    enclave_crds::duration::parse(text)
        .map_or_else(|| text.to_string(), |d| format!("{}s", d.as_secs()))
}

fn certificate_status(
    info: &tls::CertInfo,
    renewal: Timestamp,
    issuer: String,
    namespace: &str,
) -> CertificateStatus {
    CertificateStatus {
        serial: Some(info.serial.clone()),
        not_before: Some(Time(info.not_before)),
        not_after: Some(Time(info.not_after)),
        renewal_time: Some(Time(crate::status::seconds(renewal))),
        issuer: Some(issuer),
        secret: Some(format!("{namespace}/{SERVING_SECRET}")),
    }
}
