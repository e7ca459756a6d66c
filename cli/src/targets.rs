//! What a command acts on, written as kubectl accepts it: `TYPE NAME...`,
//! `TYPE/NAME...`, or `TYPE` with `-l`/`--all`, or the objects of `-f` files.

use std::path::PathBuf;

use serde_json::Value;

use crate::discovery::ApiResource;
use crate::manifest;
use crate::session::Session;

/// One named object.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
}

impl Target {
    pub fn path(&self) -> String {
        self.resource.object_path(self.namespace.as_deref(), &self.name)
    }

    /// `deployment.apps/web`.
    pub fn display(&self) -> String {
        format!("{}/{}", self.resource.type_name(), self.name)
    }
}

/// Resolves positional arguments into named targets.
pub async fn named(session: &Session, args: &[String]) -> anyhow::Result<Vec<Target>> {
    let Some(first) = args.first() else {
        anyhow::bail!("you must specify the type of resource and its name");
    };
    let mut targets = Vec::new();
    if first.contains('/') {
        for arg in args {
            let (kind, name) = arg
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
                .ok_or_else(|| anyhow::anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'r8sctl get resource/<resource_name>' instead of 'r8sctl get resource resource/<resource_name>'): {arg}"))?;
            targets.push(target(session, session.resource(kind).await?, name));
        }
    } else {
        let resource = session.resource(first).await?;
        if args.len() == 1 {
            anyhow::bail!("resource(s) were provided, but no name was specified");
        }
        for name in &args[1..] {
            targets.push(target(session, resource.clone(), name));
        }
    }
    Ok(targets)
}

fn target(session: &Session, resource: ApiResource, name: &str) -> Target {
    let namespace = session.namespace_for(&resource, None);
    Target { resource, namespace, name: name.to_string() }
}

/// The objects of `-f` manifests, each with the resource that holds it.
pub async fn from_files(session: &Session, files: &[PathBuf]) -> anyhow::Result<Vec<(Target, Value)>> {
    let discovery = session.discovery().await?;
    let mut out = Vec::new();
    for doc in manifest::read_all(files)? {
        let object = doc.object;
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        if api_version.is_empty() || kind.is_empty() {
            anyhow::bail!("error validating \"{}\": apiVersion and kind must be set in every object", doc.source);
        }
        let resource = discovery.for_kind(api_version, kind)?.clone();
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = session.namespace_for(&resource, Some(&object));
        out.push((Target { resource, namespace, name }, object));
    }
    Ok(out)
}
