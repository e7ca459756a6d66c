//! What resources the cluster serves, read from its legacy discovery documents
//! (`/api`, `/apis`, then one `APIResourceList` per preferred group version), and
//! how a name the user types (`po`, `pods`, `pod`, `deploy`, `deployments.apps`)
//! maps to one of them.

use serde_json::Value;

use crate::session::Session;

#[derive(Clone, Debug, PartialEq)]
pub struct ApiResource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The resource name in paths: `pods`, `deployments`.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
}

impl ApiResource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn group_version_root(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The list path: in one namespace, or across all of them with `None`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{}/namespaces/{}/{}", self.group_version_root(), ns, self.plural),
            None => format!("{}/{}", self.group_version_root(), self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection_path(namespace), name)
    }

    /// How kubectl names the type in its messages: `pod`, `deployment.apps`.
    pub fn type_name(&self) -> String {
        let singular = if self.singular.is_empty() {
            self.kind.to_lowercase()
        } else {
            self.singular.clone()
        };
        if self.group.is_empty() {
            singular
        } else {
            format!("{singular}.{}", self.group)
        }
    }
}

pub struct Discovery {
    resources: Vec<ApiResource>,
}

impl Discovery {
    pub async fn load(session: &Session) -> anyhow::Result<Self> {
        let mut group_versions = Vec::new();
        let core = session.get("/api").await?;
        for v in strings(&core["versions"]) {
            group_versions.push((String::new(), v));
        }
        let groups = session.get("/apis").await?;
        for group in groups["groups"].as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default().to_string();
            let version = group["preferredVersion"]["version"]
                .as_str()
                .or_else(|| group["versions"][0]["version"].as_str());
            if let Some(version) = version {
                group_versions.push((name, version.to_string()));
            }
        }
        let mut resources = Vec::new();
        for (group, version) in group_versions {
            let path = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let list = session.get(&path).await?;
            resources.extend(parse_resource_list(&group, &version, &list));
        }
        Ok(Discovery { resources })
    }

    pub fn all(&self) -> &[ApiResource] {
        &self.resources
    }

    /// Finds the resource a user means. Accepts the plural, the singular, a short
    /// name or the kind, each optionally qualified by its group (`deploy.apps`).
    pub fn resolve(&self, name: &str) -> anyhow::Result<&ApiResource> {
        let lower = name.to_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((base, group)) => (base.to_string(), Some(group.to_string())),
            None => (lower.clone(), None),
        };
        self.resources
            .iter()
            .filter(|r| group.as_ref().is_none_or(|g| &r.group == g || r.group.starts_with(&format!("{g}."))))
            .find(|r| {
                r.plural == base
                    || r.singular == base
                    || r.kind.to_lowercase() == base
                    || r.short_names.iter().any(|s| s == &base)
            })
            .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{name}\""))
    }

    /// The resource that holds objects of `kind` in `api_version` (from a manifest).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> anyhow::Result<&ApiResource> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure the kind is supported by the server"
                )
            })
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn parse_resource_list(group: &str, version: &str, list: &Value) -> Vec<ApiResource> {
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let plural = r["name"].as_str()?;
            if plural.contains('/') {
                return None; // a subresource such as pods/status
            }
            Some(ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                kind: r["kind"].as_str()?.to_string(),
                plural: plural.to_string(),
                singular: r["singularName"].as_str().unwrap_or_default().to_string(),
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                short_names: strings(&r["shortNames"]),
                verbs: strings(&r["verbs"]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery() -> Discovery {
        let core = serde_json::json!({"resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"], "verbs": ["get"]},
            {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "shortNames": ["no"], "verbs": ["get"]},
        ]});
        let apps = serde_json::json!({"resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"], "verbs": ["get"]},
        ]});
        let mut resources = parse_resource_list("", "v1", &core);
        resources.extend(parse_resource_list("apps", "v1", &apps));
        Discovery { resources }
    }

    #[test]
    fn resolves_every_name_kubectl_accepts() {
        let d = discovery();
        for name in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(d.resolve(name).unwrap().plural, "pods", "{name}");
        }
        for name in ["deploy", "deployment", "deployments.apps", "deploy.apps"] {
            assert_eq!(d.resolve(name).unwrap().plural, "deployments", "{name}");
        }
        let err = d.resolve("widgets").unwrap_err().to_string();
        assert_eq!(err, "the server doesn't have a resource type \"widgets\"");
        assert!(d.resolve("pods.apps").is_err());
    }

    #[test]
    fn paths_and_names_follow_kubernetes() {
        let d = discovery();
        let deploy = d.resolve("deploy").unwrap();
        assert_eq!(deploy.object_path(Some("ns1"), "web"), "/apis/apps/v1/namespaces/ns1/deployments/web");
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(deploy.type_name(), "deployment.apps");
        let node = d.resolve("no").unwrap();
        assert_eq!(node.object_path(Some("ignored"), "n1"), "/api/v1/nodes/n1");
        assert_eq!(node.type_name(), "node");
        assert_eq!(d.for_kind("apps/v1", "Deployment").unwrap().plural, "deployments");
        assert!(d.for_kind("v1", "Deployment").is_err());
    }
}
