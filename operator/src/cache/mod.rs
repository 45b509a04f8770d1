//! The operator's view of the objects it compares against, kept by watches rather than read
//! per reconcile: a reconcile of an unchanged tenant makes no read of the API server.
//!
//! Each cached kind has one reflector store, filled by the same watch that triggers the
//! Tenant controller (`Controller::watches_stream`): an event updates the store before it
//! triggers a reconcile, so the reconcile it causes sees it. `managedFields` and kubectl's
//! last-applied annotation are stripped before storing (they are most of an applied object's
//! size and nothing here reads them). A ConfigMap's long values (the published reports) are
//! held as digests ([`digest_value`]): the applier compares the desired values digested
//! alike, and nothing reads them otherwise.
//!
//! A cache answers what it holds; what it does not hold is read from the API server:
//! - a kind that is not cached (cert-manager's `Certificate`, say) is read as before;
//! - an object missing from its store is looked up by GET before it is created, so that an
//!   object someone else made under Enclave's name without its labels (a label-selected
//!   store does not hold it) is still found, and refused as foreign, never adopted; but in a
//!   zone namespace the same apply has just created, which nobody else can have written to
//!   yet (the tenant's access is applied last), what the store does not hold is absent.
//!
//! A write names the uid of the object it was decided on, so a store that lags (an object
//! deleted and made again under its name since) leads to a conflict, never to a write onto
//! the new object.
//!
//! Readers must tolerate a store that lags the API server by the watch's latency: a write it
//! missed brings an event, and the event another reconcile.

mod digest;
mod index;

use digest::digest;
pub use digest::{DIGESTED, digest_value};
use index::Index;

use futures::{Stream, TryStreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One cached kind: its store, and an index of it by namespace and by tenant.
struct Cached<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    index: Arc<RwLock<Index>>,
}

/// The stores of the cached kinds, by type.
#[derive(Clone)]
pub struct Caches {
    stores: Arc<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    synced: tokio::sync::watch::Receiver<usize>,
    total: usize,
}

/// Builds [`Caches`]: one watch per kind, handed to the controller as its trigger stream.
pub struct CachesBuilder {
    stores: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    synced: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for CachesBuilder {
    fn default() -> Self {
        Self {
            stores: HashMap::new(),
            synced: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

/// Removes from an object what no reader needs and most of its size: `managedFields` and
/// kubectl's last-applied configuration.
pub fn strip<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`strip`], and of an object Enclave does not manage (what the whole-cluster watches hold:
/// tenants' Services, Ingresses, bindings, policies) every annotation but the source-range
/// filters the exposure report and the ingress firewall read: a tenant's large annotations
/// cost the operator no memory.
pub fn strip_cached<K: Resource + 'static>(object: &mut K) {
    strip(object);
    let meta = object.meta_mut();
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::labels::MANAGED_BY))
        .is_some_and(|m| m == crate::labels::MANAGER);
    if let (false, Some(annotations)) = (managed, meta.annotations.as_mut()) {
        annotations.retain(|key, _| key.contains("source-range"));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    digest(object);
}

impl CachesBuilder {
    /// Watches `api` under `config` into a new store of `K`, and returns the watch's stream of
    /// touched objects (applied or deleted) for the controller; the store is updated before
    /// each object is passed on.
    pub fn watch<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store::<K>();
        let index = Arc::new(RwLock::new(Index::default()));
        let indexing = index.clone();
        let held = store.clone();
        let waiting = store.clone();
        let synced = self.synced.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut warned = false;
            // A store wakes one waiter only; look again now and then.
            loop {
                if !warned && started.elapsed() > Duration::from_secs(30) {
                    warned = true;
                    tracing::warn!(
                        kind = K::kind(&()).as_ref(),
                        "cache not filled after 30 s: no tenant is reconciled until it is (can the operator list and watch this kind?)"
                    );
                }
                match tokio::time::timeout(Duration::from_millis(250), waiting.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => {
                        synced.send_modify(|n| *n += 1);
                        return;
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
        self.stores
            .insert(TypeId::of::<K>(), Box::new(Cached { store, index }));
        watcher(api, config)
            .modify(strip_cached::<K>)
            .inspect_ok(move |event| {
                if let Ok(mut index) = indexing.write() {
                    index.follow(event, |object| held.get(&ObjectRef::from_obj(object)));
                }
            })
            .reflect(writer)
            .touched_objects()
    }

    /// The store of `K`, once its watch is registered (for a mapper that reads it).
    #[must_use]
    pub fn store<K: Resource<DynamicType = ()> + Clone + 'static>(&self) -> Option<Store<K>> {
        let cached: &Cached<K> = self.stores.get(&TypeId::of::<K>())?.downcast_ref()?;
        Some(cached.store.clone())
    }

    /// The caches, once every watch is registered.
    #[must_use]
    pub fn build(self) -> Caches {
        let total = self.stores.len();
        Caches {
            stores: Arc::new(self.stores),
            synced: self.synced.subscribe(),
            total,
        }
    }
}

/// What a cache knows of one object.
pub enum Lookup<K> {
    /// The kind is not cached: read it from the API server.
    NotCached,
    /// Not in the store: absent, or not selected by its watch (read it to know which).
    Missing,
    /// In the store.
    Found(Arc<K>),
}

impl Caches {
    /// Caches of no kind: every read goes to the API server (tools and tests that run a
    /// single step).
    #[must_use]
    pub fn none() -> Self {
        CachesBuilder::default().build()
    }

    fn cached<K: Resource<DynamicType = ()> + Clone + 'static>(&self) -> Option<&Cached<K>> {
        self.stores.get(&TypeId::of::<K>())?.downcast_ref()
    }

    fn store<K: Resource<DynamicType = ()> + Clone + 'static>(&self) -> Option<&Store<K>> {
        self.cached::<K>().map(|cached| &cached.store)
    }

    /// Waits until every store holds its first full list. A reconcile before that would
    /// compare against empty stores.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let total = self.total;
        let _ = synced.wait_for(|n| *n >= total).await;
    }

    /// Whether every store holds its first full list.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow() >= self.total
    }

    /// The object of kind `K` named `name` (in `namespace`), as the cache knows it.
    #[must_use]
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Lookup<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let Some(store) = self.store::<K>() else {
            return Lookup::NotCached;
        };
        let mut key = ObjectRef::<K>::new(name);
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        store.get(&key).map_or(Lookup::Missing, Lookup::Found)
    }

    /// The cached objects of kind `K` carrying every label of `selector` (`k=v,k=v`; empty:
    /// all) and in `namespace` when given; `None` when `K` is not cached.
    #[must_use]
    pub fn list<K>(&self, namespace: Option<&str>, selector: &str) -> Option<Vec<Arc<K>>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let cached = self.cached::<K>()?;
        let wanted = parse_selector(selector);
        let selected = |object: &K| {
            namespace.is_none_or(|ns| object.meta().namespace.as_deref() == Some(ns))
                && matches(object.labels(), &wanted)
        };
        let keys = cached
            .index
            .read()
            .ok()
            .and_then(|index| index.keys(namespace, &wanted));
        let Some(keys) = keys else {
            return Some(cached.store.state_filter(selected));
        };
        Some(
            keys.into_iter()
                .filter_map(|(namespace, name)| {
                    let mut key = ObjectRef::<K>::new(&name);
                    if let Some(namespace) = namespace {
                        key = key.within(&namespace);
                    }
                    cached.store.get(&key)
                })
                .filter(|object| selected(object))
                .collect(),
        )
    }
}

impl Caches {
    /// The object named `name` (in `namespace`) from the cache, or else from the API server:
    /// a kind not cached, or an object the store does not hold, is read. Either way a
    /// ConfigMap's long values are digests ([`digest_value`]): for its data, read the API.
    ///
    /// # Errors
    /// When the API server refuses the read.
    pub async fn get_or_read<K>(
        &self,
        client: &Client,
        namespace: Option<&str>,
        name: &str,
    ) -> kube::Result<Option<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        if let Lookup::Found(object) = self.get::<K>(namespace, name) {
            return Ok(Some((*object).clone()));
        }
        dynamic_api::<K>(client, namespace)
            .get_opt(name)
            .await?
            .map(typed)
            .transpose()
    }

    /// The objects of `K` carrying `selector`'s labels (in `namespace` when given), from the
    /// cache, or from the API server when the kind is not cached.
    ///
    /// # Errors
    /// When the API server refuses the list.
    pub async fn list_or_read<K>(
        &self,
        client: &Client,
        namespace: Option<&str>,
        selector: &str,
    ) -> kube::Result<Vec<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
    {
        if let Some(cached) = self.list::<K>(namespace, selector) {
            return Ok(cached.iter().map(|o| (**o).clone()).collect());
        }
        dynamic_api::<K>(client, namespace)
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .into_iter()
            .map(typed)
            .collect()
    }

    /// The metadata of the objects of `K` carrying `selector`'s labels, from the cache; `None`
    /// when the kind is not cached.
    #[must_use]
    pub fn metadata<K>(&self, selector: &str) -> Option<Vec<ObjectMeta>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        self.list::<K>(None, selector)
            .map(|objects| objects.iter().map(|o| o.meta().clone()).collect())
    }
}

/// An API of `K`'s resource in `namespace` (all namespaces when none), whatever `K`'s scope.
fn dynamic_api<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<K>(&());
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// A read object, its ConfigMap values digested as its store would hold them ([`digest`]):
/// what the cache answers and what the API server answers compare alike.
fn typed<K: DeserializeOwned + 'static>(object: DynamicObject) -> kube::Result<K> {
    let mut typed: K = serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(kube::Error::SerdeError)?;
    digest(&mut typed);
    Ok(typed)
}

/// `k=v,k2=v2` as pairs; a selector of other forms is not used by the operator.
fn parse_selector(selector: &str) -> Vec<(&str, &str)> {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

fn matches(labels: &BTreeMap<String, String>, wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[test]
    fn strip_drops_managed_fields_and_last_applied_only() {
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                annotations: Some(BTreeMap::from([
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".into(),
                        "{}".into(),
                    ),
                    ("keep".into(), "me".into()),
                ])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        strip(&mut cm);
        assert!(cm.metadata.managed_fields.is_none());
        assert_eq!(
            cm.metadata.annotations,
            Some(BTreeMap::from([("keep".into(), "me".into())]))
        );
    }

    #[test]
    fn cached_objects_enclave_does_not_manage_keep_only_source_ranges() {
        let mut ingress = k8s_openapi::api::networking::v1::Ingress {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                annotations: Some(BTreeMap::from([
                    ("big".into(), "x".repeat(200_000)),
                    (
                        "nginx.ingress.kubernetes.io/whitelist-source-range".into(),
                        "10.0.0.0/8".into(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        strip_cached(&mut ingress);
        assert_eq!(
            ingress.metadata.annotations,
            Some(BTreeMap::from([(
                "nginx.ingress.kubernetes.io/whitelist-source-range".into(),
                "10.0.0.0/8".into()
            )]))
        );
        let mut binding = k8s_openapi::api::rbac::v1::RoleBinding {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([("note".into(), "y".repeat(10))])),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        let mut managed = binding.clone();
        strip_cached(&mut binding);
        assert!(binding.metadata.annotations.is_none());
        managed.metadata.labels = Some(BTreeMap::from([(
            crate::labels::MANAGED_BY.into(),
            crate::labels::MANAGER.into(),
        )]));
        strip_cached(&mut managed);
        assert!(
            managed.metadata.annotations.is_some(),
            "Enclave's own keep theirs"
        );
    }

    #[test]
    fn selectors_match_every_pair() {
        let labels = BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]);
        assert!(matches(&labels, &parse_selector("a=1,b=2")));
        assert!(matches(&labels, &parse_selector("")));
        assert!(!matches(&labels, &parse_selector("a=1,b=3")));
        assert!(!matches(&labels, &parse_selector("c=1")));
    }

    fn map(namespace: Option<&str>, name: &str, tenant: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: namespace.map(Into::into),
                labels: Some(BTreeMap::from([(
                    crate::labels::TENANT_UID.to_string(),
                    tenant.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn lists_by_namespace_and_by_tenant_follow_the_watch_through_a_relist() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let index = Arc::new(RwLock::new(Index::default()));
        let mut stores: HashMap<TypeId, Box<dyn Any + Send + Sync>> = HashMap::new();
        stores.insert(
            TypeId::of::<ConfigMap>(),
            Box::new(Cached {
                store,
                index: index.clone(),
            }),
        );
        let caches = Caches {
            stores: Arc::new(stores),
            synced: tokio::sync::watch::channel(0).1,
            total: 0,
        };
        let held = caches.store::<ConfigMap>().expect("cached").clone();
        let mut follow = |event: watcher::Event<ConfigMap>| {
            index
                .write()
                .expect("index")
                .follow(&event, |o| held.get(&ObjectRef::from_obj(o)));
            writer.apply_watcher_event(&event);
        };
        let names = |mut found: Vec<Arc<ConfigMap>>| {
            found.sort_by_key(|m| m.name_any());
            found.iter().map(|m| m.name_any()).collect::<Vec<_>>()
        };
        for object in [
            map(Some("a"), "one", "u1"),
            map(Some("a"), "two", "u2"),
            map(Some("b"), "three", "u1"),
            map(None, "four", "u1"),
        ] {
            follow(watcher::Event::Apply(object));
        }
        let tenant = |uid: &str| format!("{}={uid}", crate::labels::TENANT_UID);
        assert_eq!(
            names(caches.list(Some("a"), "").expect("cached")),
            ["one", "two"]
        );
        assert_eq!(
            names(caches.list(None, &tenant("u1")).expect("cached")),
            ["four", "one", "three"]
        );
        assert_eq!(
            names(caches.list(Some("a"), &tenant("u1")).expect("cached")),
            ["one"]
        );
        // Not answerable by the index: the whole store, filtered.
        assert_eq!(names(caches.list(None, "").expect("cached")).len(), 4);
        follow(watcher::Event::Delete(map(Some("a"), "one", "u1")));
        assert_eq!(names(caches.list(Some("a"), "").expect("cached")), ["two"]);
        // Relabelled to another tenant: found under the new one only.
        follow(watcher::Event::Apply(map(Some("b"), "three", "u2")));
        assert_eq!(
            names(caches.list(None, &tenant("u2")).expect("cached")),
            ["three", "two"]
        );
        assert_eq!(
            names(caches.list(None, &tenant("u1")).expect("cached")),
            ["four"]
        );
        assert!(
            !index.read().expect("index").by_tenant["u1"]
                .contains(&(Some("b".to_string()), "three".to_string())),
            "a relabelled object leaves its old tenant's entry"
        );
        // A relist after a gap in which "four" was deleted: the index is the relist's.
        follow(watcher::Event::Init);
        follow(watcher::Event::InitApply(map(Some("a"), "two", "u2")));
        assert_eq!(
            names(caches.list(None, &tenant("u1")).expect("cached")),
            ["four"],
            "the store answers from the old list until the relist ends"
        );
        follow(watcher::Event::InitDone);
        assert!(
            caches
                .list::<ConfigMap>(None, &tenant("u1"))
                .expect("cached")
                .is_empty()
        );
        assert_eq!(
            names(caches.list(None, &tenant("u2")).expect("cached")),
            ["two"]
        );
        let index = index.read().expect("index");
        assert!(!index.by_tenant.contains_key("u1") && !index.by_namespace.contains_key("b"));
    }

    #[test]
    fn an_uncached_kind_says_so() {
        let caches = Caches::none();
        assert!(matches!(
            caches.get::<ConfigMap>(Some("ns"), "a"),
            Lookup::NotCached
        ));
        assert!(caches.list::<ConfigMap>(None, "").is_none());
        assert!(caches.is_synced());
    }
}
