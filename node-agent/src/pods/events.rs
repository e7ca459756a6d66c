//! Events about pods and their containers, with the kubelet's reasons and the
//! `fieldPath` (`spec.containers{web}`) that `describe` shows.

use client::events::{reference_to, EventRecorder, EventType};
use client::k8s_openapi::api::core::v1::Pod;

/// Emits events about one pod.
#[derive(Clone)]
pub struct PodEvents {
    recorder: EventRecorder,
    pod: Pod,
}

impl PodEvents {
    pub fn new(recorder: EventRecorder, pod: &Pod) -> Self {
        Self { recorder, pod: pod.clone() }
    }

    pub fn pod(&self, kind: EventType, reason: &str, message: String) {
        self.recorder.emit(reference_to(&self.pod), kind, reason, message);
    }

    /// An event about the container `name` (an init container if the spec says so).
    pub fn container(&self, name: &str, kind: EventType, reason: &str, message: String) {
        let mut reference = reference_to(&self.pod);
        let init = self.pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten()).any(|c| c.name == name);
        let field = if init { "initContainers" } else { "containers" };
        reference.field_path = Some(format!("spec.{field}{{{name}}}"));
        self.recorder.emit(reference, kind, reason, message);
    }
}
