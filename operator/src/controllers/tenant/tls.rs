//! The reconcile's TLS step: the tenant's CA and serving certificate from the built-in issuer
//! (which need the live CA and certificate: renewal, rotation, re-issue), or cert-manager's
//! `Certificate`s. It writes nothing: it hands the objects to the applier, which applies them
//! with the rest and sweeps them once `spec.tls` no longer asks for them.

use super::reconcile::Reconcile;
use crate::cluster::Note;
use crate::desired::tls::{self as objects, SERVING_SECRET, TlsObjects};
use crate::error::{Error, Phase, Result, api};
use crate::pki::{self as tls, CaPlan, Pem};
use crate::status::TlsReport;
use crate::units::until;
use enclave_crds::{CertificateStatus, IssuerKind, Tls};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject};
use std::time::Duration;

/// What the TLS step leaves for the rest of the reconcile.
#[derive(Clone, Debug, Default)]
pub struct TlsOutcome {
    /// The objects to apply: CA and serving Secrets, CA bundles, Certificates.
    pub objects: TlsObjects,
    /// For the status: the certificate and `CertificateReady`.
    pub report: Option<TlsReport>,
    /// The serial of the certificate in the serving zones: workloads there mount it and roll
    /// when it changes.
    pub serial: Option<String>,
    /// How soon to look again (the renewal time).
    pub next: Option<Duration>,
}

impl Reconcile<'_> {
    /// The tenant's TLS objects; none without `spec.tls` (the policy is built with the rest).
    pub(super) async fn certificates(&self) -> Result<TlsOutcome> {
        match &self.tenant.spec.tls {
            None => Ok(TlsOutcome::default()),
            Some(spec) if spec.issuer.is_some() => self.cert_manager(spec).await,
            Some(spec) => self.built_in(spec).await,
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        self.ctx
            .caches
            .get_or_read::<Secret>(&self.ctx.client, Some(namespace), name)
            .await
            .map_err(api(
                Phase::Tls,
                "get",
                "Secret",
                format!("{namespace}/{name}"),
            ))
    }

    /// The built-in issuer: a CA per tenant in the operator's namespace, a serving certificate
    /// in each serving zone, renewed before expiry, re-issued when edited or deleted.
    async fn built_in(&self, spec: &Tls) -> Result<TlsOutcome> {
        let now = self.now;
        let identity = &self.identity;
        let failed = |e: tls::TlsError| Error::Certificate(e.to_string());
        let writer = self.writer.during(Phase::Tls);
        // The CA.
        let ca_name = objects::ca_secret_name(&identity.name);
        let live_ca = self.secret(&self.config.namespace, &ca_name).await?;
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
                writer
                    .publish(Note::normal(
                        "CACreated",
                        "Issue",
                        format!("created the tenant's CA, serial {serial}"),
                    ))
                    .await;
                (ca, None)
            }
            (CaPlan::Rotate(old), found) => {
                let ca = tls::new_ca(&identity.name, now, validity).map_err(failed)?;
                let serial = tls::parse(&ca.cert).map(|i| i.serial).unwrap_or_default();
                writer
                    .publish(Note::normal(
                        "CARotated",
                        "Issue",
                        format!(
                            "rotated the tenant's CA: serial {serial} replaces {}, which stays trusted until {}",
                            old.serial, old.not_after
                        ),
                    ))
                    .await;
                (ca, found.map(|f| f.cert))
            }
        };
        let mut out = TlsObjects::default();
        out.secrets.push(objects::ca_secret(
            identity,
            &self.config.namespace,
            &ca,
            previous.as_deref(),
        ));
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
        let mut found: Vec<Option<Pem>> = Vec::new();
        for zone in &zones {
            let live = self
                .secret(&self.tenant.zone_namespace(zone), SERVING_SECRET)
                .await?;
            found.push(live.as_ref().and_then(objects::pem_of));
        }
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
            let list: Vec<String> = names.iter().cloned().collect();
            let issued = match tls::issue(&ca, &list, spec.key_algorithm, now, spec.validity()) {
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
            writer
                .publish(Note::normal(
                    event,
                    "Issue",
                    format!(
                        "issued certificate serial {} for {}, valid until {} ({why}{replaces})",
                        info.serial,
                        list.join(", "),
                        info.not_after
                    ),
                ))
                .await;
            issued
        };
        for zone in &zones {
            out.secrets.push(objects::serving_secret(
                self.tenant,
                identity,
                zone,
                &serving,
                &bundle,
            ));
        }
        out.bundles = objects::bundles(self.tenant, identity, &bundle);

        let info = tls::parse(&serving.cert).map_err(failed)?;
        let renewal = tls::renewal_time(info.not_before, info.not_after, renew_before);
        let ca_renewal = tls::renewal_time(ca_info.not_before, ca_info.not_after, None);
        self.ctx
            .metrics
            .certificate_expires(&identity.name, info.not_after);
        Ok(TlsOutcome {
            objects: out,
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
        if self.now >= tls::renewal_time(old.not_before, old.not_after, renew_before) {
            self.writer
                .publish(Note::warning(
                    "CertificateExpiring",
                    "Issue",
                    format!(
                        "certificate serial {} expires at {} and its renewal failed: {error}",
                        old.serial, old.not_after
                    ),
                ))
                .await;
        }
    }

    /// cert-manager as the issuer: a `Certificate` per serving zone, its readiness read back.
    async fn cert_manager(&self, spec: &Tls) -> Result<TlsOutcome> {
        let Some(issuer) = &spec.issuer else {
            return Ok(TlsOutcome::default());
        };
        let crd = "certificates.cert-manager.io";
        if Api::<CustomResourceDefinition>::all(self.ctx.client.clone())
            .get_opt(crd)
            .await
            .map_err(api(Phase::Tls, "get", "CustomResourceDefinition", crd))?
            .is_none()
        {
            return Ok(TlsOutcome {
                report: Some(TlsReport {
                    certificate: None,
                    ready: false,
                    reason: "CertManagerNotInstalled",
                    message: "spec.tls.issuer names a cert-manager issuer, but cert-manager's CRDs are not installed: install cert-manager, or remove spec.tls.issuer to use Enclave's built-in CA".into(),
                }),
                next: Some(Duration::from_secs(10)),
                ..TlsOutcome::default()
            });
        }
        // Served now: the sweep lists Certificates from here on.
        self.ctx
            .certificates_served
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let kind = match issuer.kind {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        };
        let names: Vec<String> = objects::dns_names(self.tenant, &self.config.tls.cluster_domain)
            .into_iter()
            .collect();
        let resource = objects::certificate_resource();
        let mut out = TlsOutcome::default();
        for zone in &objects::serving_zones(self.tenant) {
            let namespace = self.tenant.zone_namespace(zone);
            out.objects.certificates.extend(objects::certificate(
                self.tenant,
                &self.identity,
                zone,
                spec,
                &names,
            ));
            out.objects
                .issued_elsewhere
                .push((namespace.clone(), SERVING_SECRET.to_string()));
            if out.report.is_some() {
                continue;
            }
            // Readiness, from the first serving zone.
            let live = Api::<DynamicObject>::namespaced_with(
                self.ctx.client.clone(),
                &namespace,
                &resource,
            )
            .get_opt(SERVING_SECRET)
            .await
            .map_err(api(
                Phase::Tls,
                "get",
                "Certificate",
                format!("{namespace}/{SERVING_SECRET}"),
            ))?;
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
            let secret = self.secret(&namespace, SERVING_SECRET).await?;
            // The issuer's CA, as cert-manager puts it in the Secret, is the bundle: kept
            // while a new certificate is issued.
            if let Some(ca) = secret
                .as_ref()
                .and_then(|s| s.data.as_ref()?.get("ca.crt").cloned())
                .and_then(|b| String::from_utf8(b.0).ok())
            {
                out.objects.bundles = objects::bundles(self.tenant, &self.identity, &ca);
            }
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
                out.serial = Some(info.serial.clone());
                out.next = Some(until(self.now, renewal));
                self.ctx
                    .metrics
                    .certificate_expires(&self.identity.name, info.not_after);
                out.report = Some(TlsReport {
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
                out.next = Some(Duration::from_secs(5));
                out.report = Some(TlsReport {
                    certificate: None,
                    ready: false,
                    reason: "Issuing",
                    message: format!("cert-manager {kind}/{}: {message}", issuer.name),
                });
            }
        }
        Ok(out)
    }
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
        renewal_time: Some(Time(crate::units::seconds(renewal))),
        issuer: Some(issuer),
        secret: Some(format!("{namespace}/{SERVING_SECRET}")),
    }
}
