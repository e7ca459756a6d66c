//! The Kubernetes types r8s serves, from k8s-openapi (Kubernetes 1.33 API),
//! re-exported under one roof.

pub use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, Deployment, DeploymentSpec, DeploymentStatus,
    DeploymentStrategy, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
};
pub use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
pub use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
pub use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
pub use k8s_openapi::api::scheduling::v1::PriorityClass;
pub use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, ContainerPort, ContainerStatus, EndpointAddress, EndpointPort,
    EndpointSubset, Endpoints, Event, Namespace, NamespaceSpec, NamespaceStatus, Node, NodeSpec,
    NodeStatus, ObjectReference, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Secret,
    Service, ServiceAccount, ServicePort, ServiceSpec, ServiceStatus,
};
pub use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, Condition, DeleteOptions,
    LabelSelector, LabelSelectorRequirement, ListMeta, MicroTime, ObjectMeta, OwnerReference,
    Status, StatusCause, StatusDetails, Time, WatchEvent,
};
pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
pub use k8s_openapi::{ByteString, List, Resource};

/// The list types (`PodList`, ...), which k8s-openapi models as `List<T>`.
pub type NamespaceList = List<Namespace>;
pub type NodeList = List<Node>;
pub type PodList = List<Pod>;
pub type ServiceList = List<Service>;
pub type ServiceAccountList = List<ServiceAccount>;
pub type EndpointsList = List<Endpoints>;
pub type ConfigMapList = List<ConfigMap>;
pub type SecretList = List<Secret>;
pub type EventList = List<Event>;
pub type LeaseList = List<Lease>;
pub type DeploymentList = List<Deployment>;
pub type ReplicaSetList = List<ReplicaSet>;
pub type DaemonSetList = List<DaemonSet>;
pub type JobList = List<Job>;
pub type PriorityClassList = List<PriorityClass>;
