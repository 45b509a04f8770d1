//! What the guard and the credentials broker read on every request, from caches kept by watches
//! on every replica (leader or not): the namespaces' labels and the Tenants. A miss (an object
//! created a moment ago, not yet seen by the watch) is read from the API server, so a cache that
//! lags never decides. The rare reads about one live object (the pod of an `exec`, the Job of a
//! backup pod, a Secret handed out) stay reads of that object as it is now.

use enclave_crds::Tenant;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The guard's and the broker's caches.
#[derive(Clone)]
pub struct Caches {
    client: kube::Client,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    tenants: Store<Tenant>,
}

impl Caches {
    /// Starts the watches that fill the caches; they run as long as the process.
    #[must_use]
    pub fn start(client: kube::Client) -> Self {
        let (namespaces, namespace_writer) = reflector::store();
        let (tenants, tenant_writer) = reflector::store();
        let config = watcher::Config::default().any_semantic();
        let namespace_stream = reflector::reflector(
            namespace_writer,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                config.clone(),
            ),
        )
        .default_backoff()
        .touched_objects()
        .for_each(|_| futures::future::ready(()));
        let tenant_stream = reflector::reflector(
            tenant_writer,
            watcher(Api::<Tenant>::all(client.clone()), config),
        )
        .default_backoff()
        .touched_objects()
        .for_each(|_| futures::future::ready(()));
        tokio::spawn(namespace_stream);
        tokio::spawn(tenant_stream);
        Self {
            client,
            namespaces,
            tenants,
        }
    }

    /// Waits until both caches hold a first full list.
    pub async fn synced(&self) {
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.tenants.wait_until_ready().await;
    }

    /// The labels of namespace `name`; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// When a namespace missing from the cache cannot be read.
    pub async fn namespace_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
        if let Some(namespace) = self.namespaces.get(&ObjectRef::new(name)) {
            return Ok(Some(namespace.metadata.labels.clone().unwrap_or_default()));
        }
        Ok(Api::<Namespace>::all(self.client.clone())
            .get_metadata_opt(name)
            .await?
            .map(|n| n.metadata.labels.unwrap_or_default()))
    }

    /// The Tenant `name`.
    ///
    /// # Errors
    /// When a Tenant missing from the cache cannot be read.
    pub async fn tenant(&self, name: &str) -> Result<Option<Arc<Tenant>>, kube::Error> {
        if let Some(tenant) = self.tenants.get(&ObjectRef::new(name)) {
            return Ok(Some(tenant));
        }
        Ok(Api::<Tenant>::all(self.client.clone())
            .get_opt(name)
            .await?
            .map(Arc::new))
    }

    /// The Tenant whose uid is `uid`.
    ///
    /// # Errors
    /// When the Tenants cannot be listed (on a cache miss).
    pub async fn tenant_by_uid(&self, uid: &str) -> Result<Option<Arc<Tenant>>, kube::Error> {
        let by_uid = |t: &Arc<Tenant>| t.metadata.uid.as_deref() == Some(uid);
        if let Some(tenant) = self.tenants.state().into_iter().find(by_uid) {
            return Ok(Some(tenant));
        }
        Ok(Api::<Tenant>::all(self.client.clone())
            .list(&kube::api::ListParams::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .find(by_uid))
    }
}
