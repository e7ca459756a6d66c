//! The table of every resource r8s serves. The API server builds its routes,
//! discovery documents and OpenAPI from it, so each entry matches what
//! Kubernetes 1.33 publishes for the same resource.

use schemars::{Schema, SchemaGenerator};

/// A resource's verbs, in the order Kubernetes lists them in discovery.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Writes an object's schema into a generator and returns the reference to it.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug)]
pub struct Subresource {
    /// The part after the slash: `status`, `scale`, `binding`, `log`, `exec`.
    pub name: &'static str,
    /// What the subresource takes and returns (`responseKind` in discovery).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One resource (a kind served at a plural path).
#[derive(Debug)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The resource name in paths: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The kind's OpenAPI schema, from k8s-openapi's schemars implementation.
    pub schema: SchemaFn,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path of the collection, without namespace: `/api/v1/pods`, `/apis/apps/v1/deployments`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            "/api".to_string()
        } else {
            format!("/apis/{}", self.group)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{root}/{}/namespaces/{ns}/{}", self.version, self.plural),
            None => format!("{root}/{}/{}", self.version, self.plural),
        }
    }

    /// The kind's OpenAPI v3 schema, self-contained (see [`crate::schema::schema_for_kind`]).
    pub fn schema_value(&self) -> Option<serde_json::Value> {
        crate::schema::schema_for_kind(self.group, self.version, self.kind)
    }

    /// Paths of fields in `object` that this kind does not have (`spec.containers[0].imagee`).
    pub fn unknown_fields(&self, object: &serde_json::Value) -> Vec<String> {
        crate::decode::unknown_fields(self.group, self.version, self.kind, object)
            .unwrap_or_default()
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `name` names this resource as kubectl accepts it: plural, singular,
    /// a short name or the kind, in any case, optionally with `.group`.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (name, group) = match name.split_once('.') {
            Some((n, g)) => (n.to_string(), Some(g.to_string())),
            None => (name, None),
        };
        if group.is_some_and(|g| g != self.group) {
            return false;
        }
        name == self.plural
            || name == self.singular
            || name == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&name.as_str())
    }
}

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    scheduling::v1 as scheduling,
};

/// Every resource r8s serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: NO_COLLECTION_DELETE,
        subresources: &[
            status("", "v1", "Namespace"),
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
        ],
        schema: schema_of::<core::Namespace>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[status("", "v1", "Node")],
        schema: schema_of::<core::Node>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            status("", "v1", "Pod"),
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
        ],
        schema: schema_of::<core::Pod>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        list_kind: "ServiceList",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("", "v1", "Service")],
        schema: schema_of::<core::Service>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<core::ServiceAccount>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<core::Endpoints>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<core::ConfigMap>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        list_kind: "SecretList",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<core::Secret>,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<core::Event>,
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        list_kind: "LeaseList",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<coordination::Lease>,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "v1", "Deployment"), scale()],
        schema: schema_of::<apps::Deployment>,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "v1", "ReplicaSet"), scale()],
        schema: schema_of::<apps::ReplicaSet>,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("apps", "v1", "DaemonSet")],
        schema: schema_of::<apps::DaemonSet>,
    },
    ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        list_kind: "JobList",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[status("batch", "v1", "Job")],
        schema: schema_of::<batch::Job>,
    },
    ResourceInfo {
        group: "scheduling.k8s.io",
        version: "v1",
        kind: "PriorityClass",
        list_kind: "PriorityClassList",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        schema: schema_of::<scheduling::PriorityClass>,
    },
];

/// The resource served at `/apis/{group}/{version}/{plural}` (group "" for `/api/v1`).
pub fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in an `apiVersion` (`v1`, `apps/v1`).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The resources of a kind in any group (`Pod`, `Deployment`).
pub fn by_kind_name(kind: &str) -> impl Iterator<Item = &'static ResourceInfo> + '_ {
    RESOURCES.iter().filter(move |r| r.kind == kind)
}

/// The resources a kubectl-style name (`po`, `pods`, `Pod`, `deploy`, `deployments.apps`) refers to.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.is_named(name))
}

/// The resources in category `category` (`all`).
pub fn in_category(category: &str) -> impl Iterator<Item = &'static ResourceInfo> + '_ {
    RESOURCES
        .iter()
        .filter(move |r| r.categories.contains(&category))
}

/// Every (group, version) served, core first, in table order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen = Vec::new();
    for r in RESOURCES {
        if !seen.contains(&(r.group, r.version)) {
            seen.push((r.group, r.version));
        }
    }
    seen
}

/// The resources of one group version.
pub fn resources_in<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let pods = by_resource("", "v1", "pods").unwrap();
        assert_eq!(
            (pods.kind, pods.namespaced, pods.short_names),
            ("Pod", true, &["po"][..])
        );
        assert_eq!(pods.subresource("binding").unwrap().kind, "Binding");
        assert_eq!(
            by_resource("apps", "v1", "deployments")
                .unwrap()
                .subresource("scale")
                .unwrap()
                .group,
            "autoscaling"
        );
        assert!(by_resource("", "v1", "deployments").is_none());
        assert_eq!(
            by_kind("apps/v1", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
        assert!(by_kind("v1", "Deployment").is_none());
        assert_eq!(
            by_kind_name("Lease").next().unwrap().group,
            "coordination.k8s.io"
        );
        for (name, plural) in [
            ("po", "pods"),
            ("Pods", "pods"),
            ("deploy", "deployments"),
            ("deployments.apps", "deployments"),
            ("svc", "services"),
            ("ep", "endpoints"),
            ("cm", "configmaps"),
            ("ns", "namespaces"),
            ("no", "nodes"),
            ("rs", "replicasets"),
            ("ds", "daemonsets"),
            ("ev", "events"),
            ("sa", "serviceaccounts"),
            ("job", "jobs"),
            ("lease", "leases"),
            ("pc", "priorityclasses"),
        ] {
            assert_eq!(resolve(name).map(|r| r.plural), Some(plural), "{name}");
        }
        assert!(resolve("pods.apps").is_none());
        let all: Vec<&str> = in_category("all").map(|r| r.plural).collect();
        assert_eq!(
            all,
            [
                "pods",
                "services",
                "deployments",
                "replicasets",
                "daemonsets",
                "jobs"
            ]
        );
        assert_eq!(
            group_versions(),
            [
                ("", "v1"),
                ("coordination.k8s.io", "v1"),
                ("apps", "v1"),
                ("batch", "v1"),
                ("scheduling.k8s.io", "v1")
            ]
        );
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(
            by_kind_name("Node")
                .next()
                .unwrap()
                .collection_path(Some("x")),
            "/api/v1/nodes"
        );
        assert_eq!(
            by_kind_name("Job").next().unwrap().collection_path(None),
            "/apis/batch/v1/jobs"
        );
    }

    #[test]
    fn table_is_consistent() {
        for r in RESOURCES {
            assert_eq!(r.list_kind, format!("{}List", r.kind));
            assert_eq!(r.singular, r.kind.to_ascii_lowercase());
            assert_eq!(
                RESOURCES
                    .iter()
                    .filter(|o| o.group == r.group && o.plural == r.plural)
                    .count(),
                1
            );
        }
    }
}
