//! One snapshot of the live state per reconcile, for the pure status compute: the status the
//! API server holds, the tenant's namespaces, quotas, workloads, claims, backup Jobs, and the
//! NetworkPolicies of its namespaces (for the exposure report).

use super::reconcile::Reconcile;
use crate::desired::labels;
use crate::desired::network::{FIREWALL_APPLIED, FIREWALL_PENDING, FIREWALL_UNSUPPORTED};
use crate::error::{Phase, Result, api};
use crate::exposure::{self, ZoneNamespace};
use crate::status::{NetworkReport, Observed, Snapshot, job_ended};
use enclave_crds::{IngressFirewallStatus, Tenant, TenantStatus};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

impl Reconcile<'_> {
    /// The status the API server holds now, without reading it when the cache can tell. The
    /// cached Tenant can lag behind a status this operator has just written (comparing
    /// against it would write and announce it again), so the last status written is kept
    /// with the resourceVersion its write gave, until the cache has caught up with it:
    /// - nothing written since start, or the cached Tenant is that write or later: its status;
    /// - the cached Tenant is older than the write: the status written;
    /// - resourceVersions that do not compare as numbers: read from the API server.
    pub(super) async fn previous_status(&self) -> Result<Option<TenantStatus>> {
        let uid = &self.identity.uid;
        let written = self
            .ctx
            .written
            .lock()
            .ok()
            .and_then(|w| w.get(uid).cloned());
        let Some((written_version, written_status)) = written else {
            return Ok(self.tenant.status.clone());
        };
        let cached = self.tenant.metadata.resource_version.as_deref();
        let order = cached
            .and_then(|c| c.parse::<u64>().ok())
            .zip(written_version.parse::<u64>().ok())
            .map(|(c, w)| c.cmp(&w));
        match order {
            Some(std::cmp::Ordering::Less) => Ok(Some(written_status)),
            Some(_) => {
                if let Ok(mut written) = self.ctx.written.lock() {
                    written.remove(uid);
                }
                Ok(self.tenant.status.clone())
            }
            None => self.live_status().await,
        }
    }

    /// Keeps the status just written, with the resourceVersion the write gave, for
    /// [`Self::previous_status`].
    pub(super) fn remember_status(&self, version: Option<String>, status: &TenantStatus) {
        if let Ok(mut written) = self.ctx.written.lock() {
            match version {
                Some(version) => {
                    written.insert(self.identity.uid.clone(), (version, status.clone()))
                }
                None => written.remove(&self.identity.uid),
            };
        }
    }

    /// The status the API server holds now, read.
    pub(super) async fn live_status(&self) -> Result<Option<TenantStatus>> {
        Ok(Api::<Tenant>::all(self.ctx.client.clone())
            .get_status(&self.identity.name)
            .await
            .map_err(api(
                Phase::Observe,
                "get status of",
                "Tenant",
                &self.identity.name,
            ))?
            .status)
    }

    /// The live namespaces of these names, for the preflight.
    pub(super) async fn namespaces(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Option<Namespace>)>> {
        let mut live = Vec::with_capacity(names.len());
        for name in names {
            let namespace = self
                .ctx
                .caches
                .get_or_read::<Namespace>(&self.ctx.client, None, name)
                .await
                .map_err(api(Phase::Preflight, "get", "Namespace", name))?;
            live.push((name.clone(), namespace));
        }
        Ok(live)
    }

    /// The names of the namespaces labelled with the tenant's uid.
    pub(super) async fn owned_namespaces(&self) -> Result<Vec<String>> {
        Ok(self
            .list::<Namespace>(&self.identity.selector())
            .await?
            .iter()
            .map(ResourceExt::name_any)
            .collect())
    }

    async fn list<K>(&self, selector: &str) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        self.ctx
            .caches
            .list_or_read::<K>(&self.ctx.client, None, selector)
            .await
            .map_err(api(Phase::Observe, "list", K::kind(&()), selector))
    }

    /// Every object of `K` in `namespace` (the tenant's own too), from the caches.
    pub(super) async fn in_namespace<K>(&self, namespace: &str) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        self.ctx
            .caches
            .list_or_read::<K>(&self.ctx.client, Some(namespace), "")
            .await
            .map_err(api(Phase::Observe, "list", K::kind(&()), namespace))
    }

    /// Everything the status is computed from; the exposure report only when `network`.
    pub(super) async fn snapshot(
        &self,
        previous: Option<TenantStatus>,
        network: bool,
    ) -> Result<Snapshot> {
        let selector = self.identity.selector();
        let namespace_objects = self.list::<Namespace>(&selector).await?;
        let namespaces: Vec<String> = namespace_objects
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let workloads = self
            .list::<Deployment>(&selector)
            .await?
            .iter()
            .map(Observed::of_deployment)
            .chain(
                self.list::<StatefulSet>(&selector)
                    .await?
                    .iter()
                    .map(Observed::of_stateful_set),
            )
            .collect();
        let classes = if self.tenant.spec.volumes.is_empty() {
            vec![]
        } else {
            self.list::<StorageClass>(&labels::managed_selector())
                .await?
        };
        let backup_runs = if self.tenant.spec.backup.is_some() {
            // Only the runs of the operator's own CronJobs count, told by their owner's uid: a
            // Job carrying the backup labels proves nothing by itself.
            let schedules: Vec<String> = self
                .list::<CronJob>(&format!("{selector},{}", labels::managed_selector()))
                .await?
                .into_iter()
                .filter_map(|c| c.metadata.uid)
                .collect();
            let jobs: Vec<Job> = self
                .list::<Job>(&format!(
                    "{selector},{}=true",
                    crate::desired::backup::BACKUP
                ))
                .await?
                .into_iter()
                .filter(|job| {
                    job.metadata.owner_references.iter().flatten().any(|o| {
                        o.controller == Some(true)
                            && o.kind == "CronJob"
                            && schedules.contains(&o.uid)
                    })
                })
                .collect();
            let finished = |job: &Job, type_: &str| {
                job_ended(job, type_)
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map(|t| t.0)
            };
            jobs.iter()
                .map(|job| (finished(job, "Complete"), finished(job, "Failed")))
                .collect()
        } else {
            vec![]
        };
        let network = if network {
            Some(self.network_report(&namespace_objects).await?)
        } else {
            None
        };
        let tenant_bindings = self
            .bindings(&namespaces)
            .await?
            .iter()
            .filter(|b| {
                b.labels().get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER)
            })
            .map(super::access::describe)
            .collect();
        Ok(Snapshot {
            previous,
            tenant_bindings,
            namespaces,
            quotas: self.list::<ResourceQuota>(&selector).await?,
            workloads,
            claims: self.list::<PersistentVolumeClaim>(&selector).await?,
            classes,
            backup_runs,
            network,
        })
    }

    /// The exposure report, from every NetworkPolicy in the tenant's namespaces (Enclave's or
    /// anyone's: any of them can open a port) and the namespaces' labels.
    async fn network_report(&self, namespaces: &[Namespace]) -> Result<NetworkReport> {
        let mut policies = Vec::new();
        for name in namespaces.iter().map(ResourceExt::name_any) {
            policies.extend(self.in_namespace::<NetworkPolicy>(&name).await?);
        }
        let zones: Vec<ZoneNamespace<'_>> = namespaces
            .iter()
            .filter_map(|ns| {
                let labels = ns.metadata.labels.as_ref()?;
                Some(ZoneNamespace {
                    zone: labels.get(labels::ZONE)?,
                    namespace: ns.metadata.name.as_deref()?,
                    labels,
                })
            })
            .collect();
        let mut services = Vec::new();
        for name in namespaces.iter().map(ResourceExt::name_any) {
            services.extend(self.in_namespace::<Service>(&name).await?);
        }
        let mut exposure = exposure::evaluate(&zones, &policies, &self.config.network);
        exposure.extend(exposure::service_exposure(&zones, &services));
        let egress = exposure::evaluate_egress(&zones, &policies, &self.config.network);
        let backup = exposure::BackupEgress {
            operator_namespace: self.config.namespace.clone(),
            broker_port: crate::desired::backup::url_port(
                &crate::desired::backup::credentials_url(
                    &self.config.backup,
                    self.config.broker_url.as_deref(),
                ),
            ),
            store_cidrs: self.config.backup.store_cidrs.clone(),
            store_port: self.config.backup.store_port,
            cluster_cidrs: self.config.network.cluster_cidrs.clone(),
        };
        let mut differences = exposure::differences(
            &exposure,
            &exposure::expected(self.tenant, &self.config.network),
        );
        // Under a network plugin that matches ipBlocks against pod addresses.
        differences.extend(exposure::cluster_reach(
            &policies,
            &self.config.network.cluster_cidrs,
        ));
        differences.extend(exposure::egress_differences(
            &egress,
            &exposure::expected_egress(self.tenant, &backup),
        ));
        let ingresses = self.ingress_firewall(namespaces).await?;
        differences.extend(
            ingresses
                .iter()
                .filter(|i| i.firewall == FIREWALL_PENDING)
                .map(|i| {
                    format!(
                        "Ingress {} of zone {} does not carry the firewall's source ranges",
                        i.name, i.zone
                    )
                }),
        );
        Ok(NetworkReport {
            exposure,
            egress,
            differences,
            ingresses,
        })
    }

    /// Whether each Ingress of the tenant's zones carries the firewall's annotations.
    async fn ingress_firewall(
        &self,
        namespaces: &[Namespace],
    ) -> Result<Vec<IngressFirewallStatus>> {
        let wanted = crate::desired::network::ingress_firewall(self.tenant, &self.config.network);
        let mut found = Vec::new();
        for namespace in namespaces {
            let Some(labels) = namespace.metadata.labels.as_ref() else {
                continue;
            };
            let Some(zone) = labels.get(labels::ZONE) else {
                continue;
            };
            let name = namespace.name_any();
            let ingresses = self.in_namespace::<Ingress>(&name).await?;
            for ingress in ingresses {
                let firewall = if wanted.is_empty() {
                    FIREWALL_UNSUPPORTED
                } else if crate::desired::network::firewall_patch(
                    ingress.metadata.annotations.as_ref(),
                    &wanted,
                )
                .is_none()
                {
                    FIREWALL_APPLIED
                } else {
                    FIREWALL_PENDING
                };
                found.push(IngressFirewallStatus {
                    zone: zone.clone(),
                    name: ingress.name_any(),
                    firewall: firewall.to_string(),
                });
            }
        }
        found.sort_by(|a, b| (&a.zone, &a.name).cmp(&(&b.zone, &b.name)));
        Ok(found)
    }
}
