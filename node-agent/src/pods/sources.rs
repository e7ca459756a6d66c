//! The ConfigMaps and Secrets a pod refers to (in env, envFrom and volumes),
//! fetched from the API before its containers are made.

use std::collections::{BTreeMap, HashMap};

use api::Quantity;
use client::k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use client::kube::{Api, Client};

/// The referenced objects by name (`None`: it does not exist).
#[derive(Default)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    /// The node's allocatable cpu and memory, for resource fields without limits.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// The names of the ConfigMaps and Secrets that `pod` refers to.
pub fn references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut maps, mut secrets) = (Vec::new(), Vec::new());
    let Some(spec) = &pod.spec else { return (maps, secrets) };
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for from in container.env_from.iter().flatten() {
            maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            maps.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    maps.sort();
    maps.dedup();
    secrets.sort();
    secrets.dedup();
    (maps, secrets)
}

/// Fetches what `pod` refers to from its namespace.
pub async fn fetch(client: &Client, pod: &Pod, node_allocatable: BTreeMap<String, Quantity>) -> Result<Sources, client::kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (map_names, secret_names) = references(pod);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut sources = Sources { node_allocatable, ..Default::default() };
    for name in map_names {
        sources.config_maps.insert(name.clone(), maps.get_opt(&name).await?);
    }
    for name in secret_names {
        sources.secrets.insert(name.clone(), secrets.get_opt(&name).await?);
    }
    Ok(sources)
}
