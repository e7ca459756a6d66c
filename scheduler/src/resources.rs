//! Resource amounts as the scheduler adds and compares them: CPU in millicores,
//! everything else in whole units, from Kubernetes quantities.

use std::collections::BTreeMap;

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityText;

/// Requests assumed for scoring when a container asks for nothing (Kubernetes'
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`), so that empty pods still
/// spread out.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`) and hugepages, in units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`allocatable` map; unparsable quantities count as zero
    /// (the API server rejects them at admission).
    pub fn from_map(map: &BTreeMap<String, QuantityText>) -> Self {
        let mut resources = Resources::default();
        for (name, text) in map {
            let Ok(quantity) = Quantity::parse(&text.0) else { continue };
            match name.as_str() {
                "cpu" => resources.milli_cpu = quantity.milli_value(),
                "memory" => resources.memory = quantity.value(),
                "ephemeral-storage" => resources.ephemeral_storage = quantity.value(),
                "pods" => {}
                other => {
                    resources.scalar.insert(other.to_string(), quantity.value());
                }
            }
        }
        resources
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_default();
            *entry = (*entry).max(*value);
        }
    }
}

fn requests(requirements: Option<&ResourceRequirements>) -> Resources {
    requirements.and_then(|r| r.requests.as_ref()).map(Resources::from_map).unwrap_or_default()
}

/// What a pod requests, as Kubernetes computes it: the sum over containers, at
/// least the largest init container, plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&requests(container.resources.as_ref()));
    }
    for init in spec.init_containers.iter().flatten() {
        total.max(&requests(init.resources.as_ref()));
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add(&Resources::from_map(overhead));
    }
    total
}

/// The requests used for scoring: containers that ask for no CPU or memory count
/// with the defaults.
pub fn pod_nonzero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else { return (DEFAULT_MILLI_CPU, DEFAULT_MEMORY) };
    spec.containers.iter().fold((0, 0), |(cpu, memory), container| {
        let r = requests(container.resources.as_ref());
        let cpu_request = if r.milli_cpu == 0 { DEFAULT_MILLI_CPU } else { r.milli_cpu };
        let memory_request = if r.memory == 0 { DEFAULT_MEMORY } else { r.memory };
        (cpu + cpu_request, memory + memory_request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn container(cpu: &str, memory: &str) -> Container {
        let requests = BTreeMap::from([
            ("cpu".to_string(), QuantityText(cpu.into())),
            ("memory".to_string(), QuantityText(memory.into())),
        ]);
        Container { resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn containers_add_up_and_init_containers_take_the_max() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("250m", "64Mi"), container("0.5", "64Mi")],
                init_containers: Some(vec![container("2", "1Mi")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let requests = pod_requests(&pod);
        assert_eq!(requests.milli_cpu, 2000);
        assert_eq!(requests.memory, 128 * 1024 * 1024);
    }

    #[test]
    fn empty_requests_score_with_defaults() {
        let pod = Pod { spec: Some(PodSpec { containers: vec![Container::default()], ..Default::default() }), ..Default::default() };
        assert_eq!(pod_nonzero_requests(&pod), (DEFAULT_MILLI_CPU, DEFAULT_MEMORY));
    }
}
