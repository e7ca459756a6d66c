//! A list-and-watch cache of one resource type, like client-go's shared informer.
//!
//! kube-runtime's `watcher` does the listing, watching, relisting after a lost
//! watch and back-off; the informer keeps the objects (indexed by namespace, so a
//! controller can read "all pods of this namespace" without scanning the cluster)
//! and tells registered handlers about each change *after* the cache holds it, so a
//! reconcile started by a handler reads state at least as new as the change.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// One change the informer saw.
pub enum Change<K> {
    /// Added (`old` is `None`) or modified.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, for a deletion).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(old) => old,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;
type Objects<K> = HashMap<String, HashMap<String, Arc<K>>>;

struct Shared<K> {
    /// namespace ("" for cluster-scoped) → name → object.
    objects: RwLock<Objects<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

/// A cache of one resource type kept current by a watch. Cheap to clone.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<K> Default for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (synced, _) = tokio::sync::watch::channel(false);
        Self {
            shared: Arc::new(Shared { objects: RwLock::default(), handlers: RwLock::default(), synced }),
        }
    }

    /// Registers a handler, called on the informer's task for every change. Handlers
    /// must be quick (typically: put keys on a work queue).
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        write(&self.shared.handlers).push(Box::new(handler));
    }

    /// Starts listing and watching `api` on a task of its own. The task ends when
    /// the returned handle is aborted.
    pub fn start(&self, api: Api<K>, config: watcher::Config) -> JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut relist: Option<Objects<K>> = None;
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(object)) => {
                        if let Some(listed) = relist.as_mut() {
                            let namespace = object.namespace().unwrap_or_default();
                            listed.entry(namespace).or_default().insert(object.name_any(), Arc::new(object));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(listed) = relist.take() {
                            shared.replace_all(listed);
                        }
                        shared.synced.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(object)) => shared.apply(Arc::new(object)),
                    Ok(watcher::Event::Delete(object)) => shared.delete(&object),
                    Err(error) => tracing::debug!(%error, kind = %K::kind(&()), "watch failed; retrying"),
                }
            }
        })
    }

    /// Waits until the first complete list is in the cache.
    pub async fn wait_synced(&self) {
        let mut synced = self.shared.synced.subscribe();
        // The sender lives as long as `self`, so this only ends when synced.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        read(&self.shared.objects).get(namespace.unwrap_or_default())?.get(name).cloned()
    }

    /// The object with a key made by [`crate::object_key`].
    pub fn get_by_key(&self, key: &str) -> Option<Arc<K>> {
        let (namespace, name) = crate::split_key(key);
        self.get(namespace, name)
    }

    /// Every object in the cache.
    pub fn list(&self) -> Vec<Arc<K>> {
        read(&self.shared.objects).values().flat_map(|names| names.values().cloned()).collect()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        read(&self.shared.objects).get(namespace).map(|names| names.values().cloned().collect()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        read(&self.shared.objects).values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Resource<DynamicType = ()>> Shared<K> {
    fn notify(&self, change: Change<K>) {
        for handler in read(&self.handlers).iter() {
            handler(&change);
        }
    }

    fn apply(&self, object: Arc<K>) {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().unwrap_or_default();
        let old = write(&self.objects).entry(namespace).or_default().insert(name, object.clone());
        self.notify(Change::Applied { old, new: object });
    }

    fn delete(&self, object: &K) {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().unwrap_or_default();
        let removed = write(&self.objects).get_mut(&namespace).and_then(|names| names.remove(&name));
        if let Some(old) = removed {
            self.notify(Change::Deleted(old));
        }
    }

    /// After a (re)list: the listed objects replace the cache; handlers hear of every
    /// listed object and of every cached one that the list no longer has.
    fn replace_all(&self, listed: Objects<K>) {
        let previous = std::mem::replace(&mut *write(&self.objects), listed.clone());
        for (namespace, names) in &listed {
            for (name, object) in names {
                let old = previous.get(namespace).and_then(|n| n.get(name)).cloned();
                self.notify(Change::Applied { old, new: object.clone() });
            }
        }
        for (namespace, names) in previous {
            for (name, object) in names {
                if !listed.get(&namespace).is_some_and(|n| n.contains_key(&name)) {
                    self.notify(Change::Deleted(object));
                }
            }
        }
    }
}

/// Locks that survive a panicking handler: the data is a cache, never half-written.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
