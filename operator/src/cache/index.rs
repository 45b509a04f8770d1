//! Where to look in a cache's store, so that a reconcile's lists cost its tenant's objects,
//! not the cluster's.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where to look in a store: the keys of its objects by namespace and by the tenant-uid label
/// (what every list of a reconcile asks by). A reconcile's lists cost the size of its tenant,
/// not of the cluster (scanning every store at each reconcile was most of the operator's CPU
/// at a thousand tenants). The index may hold keys the store no longer holds (an object
/// deleted during a relist): each key is looked up in the store and its labels checked, so a
/// key too many costs a lookup, never a wrong answer; a key too few cannot happen, as every
/// object is indexed before its store holds it.
#[derive(Default)]
pub(super) struct Index {
    pub(super) by_namespace: HashMap<String, HashSet<String>>,
    pub(super) by_tenant: HashMap<String, HashSet<(Option<String>, String)>>,
    /// Keys of a relist under way: the index becomes them when it ends.
    relist: Option<Box<Index>>,
}

impl Index {
    fn insert(&mut self, meta: &ObjectMeta) {
        let name = meta.name.clone().unwrap_or_default();
        if let Some(namespace) = &meta.namespace {
            self.by_namespace
                .entry(namespace.clone())
                .or_default()
                .insert(name.clone());
        }
        if let Some(tenant) = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::labels::TENANT_UID))
        {
            self.by_tenant
                .entry(tenant.clone())
                .or_default()
                .insert((meta.namespace.clone(), name));
        }
    }

    fn remove(&mut self, meta: &ObjectMeta) {
        let name = meta.name.clone().unwrap_or_default();
        if let Some(namespace) = &meta.namespace
            && let Some(names) = self.by_namespace.get_mut(namespace)
        {
            names.remove(&name);
            if names.is_empty() {
                self.by_namespace.remove(namespace);
            }
        }
        if let Some(tenant) = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::labels::TENANT_UID))
            && let Some(keys) = self.by_tenant.get_mut(tenant)
        {
            keys.remove(&(meta.namespace.clone(), name));
            if keys.is_empty() {
                self.by_tenant.remove(tenant);
            }
        }
    }

    /// Follows a watch event, before the store does: `held` is what the store holds of the
    /// event's object until then, so that an object relabelled to another tenant (or deleted
    /// after a change the watch did not show) leaves its old entry rather than one per label
    /// it ever had.
    pub(super) fn follow<K: Resource>(
        &mut self,
        event: &watcher::Event<K>,
        held: impl Fn(&K) -> Option<Arc<K>>,
    ) {
        match event {
            watcher::Event::Apply(object) => {
                if let Some(held) = held(object) {
                    self.remove(held.meta());
                }
                self.insert(object.meta());
            }
            watcher::Event::Delete(object) => {
                if let Some(held) = held(object) {
                    self.remove(held.meta());
                }
                self.remove(object.meta());
            }
            watcher::Event::Init => self.relist = Some(Box::default()),
            watcher::Event::InitApply(object) => {
                self.insert(object.meta());
                if let Some(relist) = self.relist.as_mut() {
                    relist.insert(object.meta());
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = self.relist.take() {
                    *self = *relist;
                }
            }
        }
    }

    /// The keys an index answers for `namespace` or `selector`; `None`: it cannot (a
    /// cluster-wide list not by tenant), scan the store.
    pub(super) fn keys(
        &self,
        namespace: Option<&str>,
        wanted: &[(&str, &str)],
    ) -> Option<Vec<(Option<String>, String)>> {
        if let Some(namespace) = namespace {
            let names = self.by_namespace.get(namespace);
            return Some(
                names
                    .into_iter()
                    .flatten()
                    .map(|name| (Some(namespace.to_string()), name.clone()))
                    .collect(),
            );
        }
        let tenant = wanted
            .iter()
            .find(|(key, _)| *key == crate::labels::TENANT_UID)?
            .1;
        Some(
            self.by_tenant
                .get(tenant)
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        )
    }
}
