//! Kubernetes events (core/v1 `Event`), written the way client-go's EventRecorder
//! writes them, so `kubectl describe` and `kubectl get events` show them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};

/// `Normal` or `Warning`, the two event types Kubernetes knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events on behalf of one component (e.g. `default-scheduler`).
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    host: Option<String>,
}

impl EventRecorder {
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        Self { client, component: component.into(), host: None }
    }

    /// The host the component runs on (set by node agents).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Writes an event about `object` and waits for the API to take it.
    pub async fn record(&self, regarding: &ObjectReference, kind: EventType, reason: &str, message: &str) -> crate::Result<()> {
        let namespace = regarding.namespace.clone().filter(|ns| !ns.is_empty()).unwrap_or_else(|| "default".into());
        let now = crate::time::now();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("unknown"),
            now.0.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource { component: Some(self.component.clone()), host: self.host.clone() }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        Ok(())
    }

    /// Writes an event in the background; a failure is logged, never returned, as
    /// events are best effort in Kubernetes too.
    pub fn emit(&self, regarding: ObjectReference, kind: EventType, reason: &str, message: String) {
        let recorder = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = recorder.record(&regarding, kind, &reason, &message).await {
                tracing::debug!(%error, %reason, "could not record event");
            }
        });
    }
}

/// The reference an event uses for `object`.
pub fn reference_to<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..Default::default()
    }
}
