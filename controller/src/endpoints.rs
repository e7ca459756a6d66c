//! The Endpoints controller: for each Service with a selector, the addresses of
//! the pods it selects, ready ones in `addresses` and the others in
//! `notReadyAddresses`, with target ports resolved by name through the pods'
//! container ports, grouped into subsets by identical port lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use client::queue::{run_workers, Requeue, WorkQueue};
use client::{is_not_found, object_key, split_key};

use crate::pods;
use crate::{Result, SharedContext};

/// The port a service port reaches on `pod`, if the pod has it.
fn target_port(pod: &Pod, port: &k8s_openapi::api::core::v1::ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == port.protocol.as_deref().unwrap_or("TCP"))
            .map(|p| p.container_port),
    }
}

/// The Endpoints a Service should have, from the pods of its namespace; `None`
/// for Services without a selector (their Endpoints are managed by hand).
pub fn desired(service: &Service, namespace_pods: &[Arc<Pod>]) -> Option<Endpoints> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    // Pods with the same ports share a subset; subsets keyed by their port list.
    let mut subsets: BTreeMap<Vec<(String, i32, String)>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in namespace_pods {
        let labels = pods::labels(&pod.metadata);
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) || !pods::is_active(pod) {
            continue;
        }
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), target_port(pod, p)?, p.protocol.clone().unwrap_or_else(|| "TCP".into()))))
            .collect();
        if ports.is_empty() && spec.ports.as_ref().is_some_and(|p| !p.is_empty()) {
            continue;
        }
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            hostname: None,
        };
        let (ready, not_ready) = subsets.entry(ports).or_default();
        if publish_not_ready || pods::is_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| a.ip.cmp(&b.ip);
    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect();
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: service.metadata.labels.clone(),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

pub struct EndpointsController {
    ctx: SharedContext,
    queue: WorkQueue,
}

impl EndpointsController {
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let controller = Arc::new(Self { ctx: ctx.clone(), queue: WorkQueue::new() });
        let queue = controller.queue.clone();
        ctx.informers.services.on_change(move |change| {
            let service = change.object();
            queue.add(object_key(service.metadata.namespace.as_deref(), &service.name_any()));
        });
        let (queue, services) = (controller.queue.clone(), ctx.informers.services.clone());
        ctx.informers.pods.on_change(move |change| {
            let pod = change.object();
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let mut labels = vec![pods::labels(&pod.metadata).clone()];
            if let client::informer::Change::Applied { old: Some(old), .. } = change {
                labels.push(pods::labels(&old.metadata).clone());
            }
            for service in services.list_namespace(&namespace) {
                let selects = service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|selector| {
                    !selector.is_empty() && labels.iter().any(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
                });
                if selects {
                    queue.add(object_key(Some(&namespace), &service.name_any()));
                }
            }
        });
        controller
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = self.clone();
        run_workers("endpoints", self.queue.clone(), workers, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let (namespace, name) = split_key(key);
        let namespace = namespace.unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), namespace);
        let current = self.ctx.informers.endpoints.get(Some(namespace), name);
        let Some(service) = self.ctx.informers.services.get(Some(namespace), name) else {
            if current.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Err(error) if !is_not_found(&error) => return Err(error.into()),
                    _ => {}
                }
            }
            return Ok(Requeue::No);
        };
        let Some(mut wanted) = desired(&service, &self.ctx.informers.pods.list_namespace(namespace)) else { return Ok(Requeue::No) };
        match current {
            None => {
                api.create(&PostParams::default(), &wanted).await?;
            }
            Some(current) if current.subsets != wanted.subsets || current.metadata.labels != wanted.metadata.labels => {
                wanted.metadata.resource_version = current.metadata.resource_version.clone();
                api.replace(name, &PostParams::default(), &wanted).await?;
            }
            Some(_) => {}
        }
        Ok(Requeue::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ServicePort, ServiceSpec};
    use k8s_openapi::jiff::Timestamp;

    fn service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, target_port: Some(target), ..Default::default() }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn with_ip(mut pod: Pod, ip: &str, port_name: Option<&str>) -> Arc<Pod> {
        pod.status.get_or_insert_with(Default::default).pod_ip = Some(ip.into());
        if let Some(name) = port_name {
            pod.spec.as_mut().unwrap().containers = vec![k8s_openapi::api::core::v1::Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort { name: Some(name.into()), container_port: 8080, ..Default::default() }]),
                ..Default::default()
            }];
        }
        Arc::new(pod)
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_apart() {
        let pods = vec![
            with_ip(running_ready(pod("a", &[("app", "web")]), "n1", Timestamp::UNIX_EPOCH), "10.0.0.2", None),
            with_ip(pod("b", &[("app", "web")]), "10.0.0.1", None),
            with_ip(pod("other", &[("app", "db")]), "10.0.0.3", None),
        ];
        let endpoints = desired(&service(IntOrString::Int(8080)), &pods).unwrap();
        let subset = &endpoints.subsets.unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap().iter().map(|a| a.ip.as_str()).collect::<Vec<_>>(), ["10.0.0.2"]);
        assert_eq!(subset.not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(subset.addresses.as_ref().unwrap()[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pods = vec![
            with_ip(running_ready(pod("a", &[("app", "web")]), "n1", Timestamp::UNIX_EPOCH), "10.0.0.1", Some("web")),
            with_ip(running_ready(pod("b", &[("app", "web")]), "n1", Timestamp::UNIX_EPOCH), "10.0.0.2", Some("other")),
        ];
        let endpoints = desired(&service(IntOrString::String("web".into())), &pods).unwrap();
        let subsets = endpoints.subsets.unwrap();
        assert_eq!(subsets.len(), 1, "the pod without the named port is left out");
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
    }

    #[test]
    fn services_without_selectors_are_left_alone() {
        let mut manual = service(IntOrString::Int(80));
        manual.spec.as_mut().unwrap().selector = None;
        assert!(desired(&manual, &[]).is_none());
    }
}
