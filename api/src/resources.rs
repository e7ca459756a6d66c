//! What a pod asks of a node: effective requests and limits summed over its
//! containers the way the scheduler and kubelet count them
//! (`k8s.io/component-helpers/resource.PodRequests`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::quantity::Quantity;

/// Resource name → amount (`cpu` → `1500m`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a resource list, skipping entries that are not quantities (validation reports those).
pub fn parse_resource_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), Quantity::try_from(q).ok()?)))
        .collect()
}

/// Adds `add` into `total`, resource by resource.
pub(crate) fn add_into(total: &mut ResourceList, add: &ResourceList) {
    for (name, q) in add {
        let sum = match total.get(name) {
            Some(existing) => existing.checked_add(q).unwrap_or(*existing),
            None => *q,
        };
        total.insert(name.clone(), sum);
    }
}

fn max_into(total: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        if total.get(name).is_none_or(|existing| q > existing) {
            total.insert(name.clone(), *q);
        }
    }
}

fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective resources of one kind (requests or limits): all app
/// containers and sidecars together, or the largest init container step if
/// larger, plus the pod overhead.
fn effective(spec: &PodSpec, pick: fn(&Container) -> ResourceList) -> ResourceList {
    let mut total = ResourceList::new();
    for container in &spec.containers {
        add_into(&mut total, &pick(container));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for init in spec.init_containers.iter().flatten() {
        let own = pick(init);
        if is_sidecar(init) {
            add_into(&mut sidecars, &own);
            // A sidecar runs beside every later step and the app containers.
            add_into(&mut total, &own);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut step = sidecars.clone();
            add_into(&mut step, &own);
            max_into(&mut init_peak, &step);
        }
    }
    max_into(&mut total, &init_peak);
    add_into(&mut total, &parse_resource_list(spec.overhead.as_ref()));
    total
}

fn container_requests(c: &Container) -> ResourceList {
    parse_resource_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn container_limits(c: &Container) -> ResourceList {
    parse_resource_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// The requests the scheduler fits onto a node.
pub fn pod_requests(spec: &PodSpec) -> ResourceList {
    effective(spec, container_requests)
}

/// The limits the pod's cgroup gets (resources without a limit are absent).
pub fn pod_limits(spec: &PodSpec) -> ResourceList {
    effective(spec, container_limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn show(list: &ResourceList) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    #[test]
    fn sums_containers_and_takes_the_init_peak() {
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
            ],
            "initContainers": [
                {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "32Mi"}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}
            ],
            "overhead": {"memory": "1Mi"}
        }));
        let requests = pod_requests(&s);
        assert_eq!(
            show(&requests),
            BTreeMap::from([
                ("cpu".to_string(), "2".to_string()),
                ("memory".to_string(), "65Mi".to_string())
            ])
        );
        assert_eq!(
            show(&pod_limits(&s)),
            BTreeMap::from([
                ("cpu".to_string(), "1".to_string()),
                ("memory".to_string(), "1Mi".to_string())
            ])
        );
        let sidecar_first = spec(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "500m"}}}
            ]
        }));
        assert_eq!(show(&pod_requests(&sidecar_first))["cpu"], "550m");
    }
}
