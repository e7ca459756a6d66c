//! Commands that change one part of existing objects: `label`, `annotate`,
//! `scale` and `edit`.

use std::io::Write;

use anyhow::Context;
use http::Method;
use serde_json::{json, Map, Value};

use crate::printer::to_yaml;
use crate::session::{Session, JSON, MERGE_PATCH};
use crate::targets;

#[derive(clap::Args)]
pub struct MetadataArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY=VALUE to set and KEY- to remove.
    #[arg(required = true)]
    args: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    overwrite: bool,
}

/// Which map of `metadata` a command edits.
#[derive(Clone, Copy)]
pub enum MetadataMap {
    Labels,
    Annotations,
}

impl MetadataMap {
    fn field(self) -> &'static str {
        match self {
            MetadataMap::Labels => "labels",
            MetadataMap::Annotations => "annotations",
        }
    }

    fn past_tense(self) -> &'static str {
        match self {
            MetadataMap::Labels => "labeled",
            MetadataMap::Annotations => "annotated",
        }
    }
}

pub async fn set_metadata(session: &Session, which: MetadataMap, args: MetadataArgs) -> anyhow::Result<()> {
    let split = args
        .args
        .iter()
        .position(|a| a.contains('=') || (a.ends_with('-') && !a.contains('/')))
        .ok_or_else(|| anyhow::anyhow!("at least one {} update is required", &which.field()[..which.field().len() - 1]))?;
    let changes = parse_changes(&args.args[split..])?;
    for target in targets::named(session, &args.args[..split]).await? {
        let live = session.get(&target.path()).await?;
        let current = &live["metadata"][which.field()];
        if !args.overwrite {
            for (key, value) in &changes {
                if let (Some(new), Some(old)) = (value.as_str(), current[key].as_str()) {
                    if new != old {
                        anyhow::bail!("'{key}' already has a value ({old}), and --overwrite is false");
                    }
                }
            }
        }
        let patch = json!({"metadata": {which.field(): Value::Object(changes.clone())}});
        session.send_json(Method::PATCH, &target.path(), MERGE_PATCH, &patch).await?;
        println!("{} {}", target.display(), which.past_tense());
    }
    Ok(())
}

/// `a=1 b- c=` → {"a": "1", "b": null, "c": ""}.
fn parse_changes(args: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut changes = Map::new();
    for arg in args {
        if let Some((key, value)) = arg.split_once('=') {
            if key.is_empty() {
                anyhow::bail!("invalid label spec: {arg}");
            }
            changes.insert(key.to_string(), Value::String(value.to_string()));
        } else if let Some(key) = arg.strip_suffix('-') {
            changes.insert(key.to_string(), Value::Null);
        } else {
            anyhow::bail!("invalid label spec: {arg}");
        }
    }
    Ok(changes)
}

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    resources: Vec<String>,
    #[arg(long)]
    replicas: i32,
    /// Only scale if the current replica count is this.
    #[arg(long)]
    current_replicas: Option<i32>,
}

pub async fn scale(session: &Session, args: ScaleArgs) -> anyhow::Result<()> {
    if args.replicas < 0 {
        anyhow::bail!("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0");
    }
    for target in targets::named(session, &args.resources).await? {
        let path = format!("{}/scale", target.path());
        match args.current_replicas {
            // Compare-and-swap through the Scale's resourceVersion, as kubectl does.
            Some(expected) => {
                let mut scale = session.get(&path).await?;
                let current = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                if current != i64::from(expected) {
                    anyhow::bail!("Expected replicas to be {expected}, was {current}");
                }
                scale["spec"]["replicas"] = args.replicas.into();
                session.send_json(Method::PUT, &path, JSON, &scale).await?;
            }
            None => {
                let patch = json!({"spec": {"replicas": args.replicas}});
                session.send_json(Method::PATCH, &path, MERGE_PATCH, &patch).await?;
            }
        }
        println!("{} scaled", target.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    resources: Vec<String>,
}

/// Opens each object as YAML in `$KUBE_EDITOR` or `$EDITOR` (default `vi`) and
/// writes it back with an update, which fails with a conflict if the object
/// changed meanwhile.
pub async fn edit(session: &Session, args: EditArgs) -> anyhow::Result<()> {
    let editor = std::env::var("KUBE_EDITOR")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    for target in targets::named(session, &args.resources).await? {
        let original = session.get(&target.path()).await?;
        let mut file = tempfile::Builder::new().prefix("r8sctl-edit-").suffix(".yaml").tempfile()?;
        file.write_all(to_yaml(&original)?.as_bytes())?;
        file.flush()?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file.path())
            .status()
            .with_context(|| format!("running the editor {editor}"))?;
        if !status.success() {
            anyhow::bail!("the editor {editor} exited with {status}");
        }
        let text = std::fs::read_to_string(file.path())?;
        let edited = match api::decode::parse_manifest(text.as_bytes()).context("the edited file is not valid YAML")?.as_slice() {
            [one] => one.clone(),
            _ => anyhow::bail!("the edited file must hold exactly one object"),
        };
        if edited == original {
            println!("Edit cancelled, no changes made.");
            continue;
        }
        session.send_json(Method::PUT, &target.path(), JSON, &edited).await?;
        println!("{} edited", target.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_parse_like_kubectl() {
        let args: Vec<String> = ["a=1", "b-", "c="].iter().map(|s| s.to_string()).collect();
        let changes = parse_changes(&args).unwrap();
        assert_eq!(Value::Object(changes), json!({"a": "1", "b": null, "c": ""}));
        assert!(parse_changes(&["=x".to_string()]).is_err());
        assert!(parse_changes(&["novalue".to_string()]).is_err());
    }
}
