//! `r8sctl delete`: by name, by `-f` manifests, or by label selector; waits
//! until the objects are really gone unless `--wait=false`, as kubectl does.

use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::commands::get::{encode, no_resources_message};
use crate::session::{Session, JSON};
use crate::targets::{self, Target};

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l or --all.
    resources: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    all: bool,
    /// Seconds the objects get to stop; 0 means at once.
    #[arg(long)]
    grace_period: Option<i64>,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    wait: bool,
    /// Don't fail when an object does not exist.
    #[arg(long)]
    ignore_not_found: bool,
}

pub async fn run(session: &Session, args: DeleteArgs) -> anyhow::Result<()> {
    let targets = select(session, &args).await?;
    let mut body = json!({"propagationPolicy": "Background"});
    if let Some(seconds) = args.grace_period {
        body["gracePeriodSeconds"] = seconds.into();
    }
    let mut deleted = Vec::new();
    for target in targets {
        match session.send_json(Method::DELETE, &target.path(), JSON, &body).await {
            Ok(answer) => {
                println!("{} \"{}\" deleted", target.resource.type_name(), target.name);
                let uid = answer["metadata"]["uid"].as_str().map(str::to_string);
                deleted.push((target, uid));
            }
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if args.wait {
        for (target, uid) in &deleted {
            wait_until_gone(session, target, uid.as_deref(), None).await?;
        }
    }
    Ok(())
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::session::ServerError>().is_some_and(|s| s.is_not_found())
}

async fn select(session: &Session, args: &DeleteArgs) -> anyhow::Result<Vec<Target>> {
    if !args.files.is_empty() {
        return Ok(targets::from_files(session, &args.files).await?.into_iter().map(|(t, _)| t).collect());
    }
    if args.selector.is_none() && !args.all {
        return targets::named(session, &args.resources).await;
    }
    let [kind] = args.resources.as_slice() else {
        anyhow::bail!("with --selector or --all, name exactly one resource type");
    };
    let resource = session.resource(kind).await?;
    let namespace = session.namespace_for(&resource, None);
    let mut path = resource.collection_path(namespace.as_deref());
    if let Some(selector) = &args.selector {
        path = format!("{path}?labelSelector={}", encode(selector));
    }
    let list = session.get(&path).await?;
    let names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if names.is_empty() {
        eprintln!("{}", no_resources_message(namespace.as_deref(), resource.namespaced));
    }
    Ok(names
        .into_iter()
        .map(|name| Target { resource: resource.clone(), namespace: namespace.clone(), name })
        .collect())
}

/// Polls until the object is gone (or `timeout` passes). With `uid`, a new
/// object that took the same name counts as the old one gone.
pub async fn wait_until_gone(
    session: &Session,
    target: &Target,
    uid: Option<&str>,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        match session.get_opt(&target.path()).await? {
            None => return Ok(()),
            Some(object) if uid.is_some_and(|u| object["metadata"]["uid"] != u) => return Ok(()),
            Some(_) => {}
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            anyhow::bail!("timed out waiting for the condition on {}", target.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
