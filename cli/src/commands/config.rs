//! `r8sctl config`: read and switch kubeconfig contexts, as `kubectl config` does.
//! Works on the file alone; no cluster is contacted.

use std::path::PathBuf;

use anyhow::Context as _;
use kube::config::Kubeconfig;

use crate::printer::{format_columns, to_yaml};
use crate::session::GlobalArgs;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the kubeconfig.
    View,
    /// List the contexts; `*` marks the current one.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make NAME the current context.
    UseContext { name: String },
    /// Change a context's namespace (`--current` for the current one).
    SetContext {
        name: Option<String>,
        #[arg(long)]
        current: bool,
        #[arg(long = "namespace")]
        context_namespace: Option<String>,
    },
}

/// The file kubectl would use: `--kubeconfig`, else the first of `$KUBECONFIG`,
/// else `~/.kube/config`.
fn kubeconfig_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &global.kubeconfig {
        return Ok(path.clone());
    }
    if let Some(first) = std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next()) {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

pub fn run(global: &GlobalArgs, command: ConfigCommand) -> anyhow::Result<()> {
    let path = kubeconfig_path(global)?;
    let mut config = Kubeconfig::read_from(&path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    match command {
        ConfigCommand::View => print!("{}", to_yaml(&serde_json::to_value(&config)?)?),
        ConfigCommand::GetContexts => {
            let header: Vec<String> = ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"].map(String::from).to_vec();
            let rows: Vec<Vec<String>> = config
                .contexts
                .iter()
                .map(|named| {
                    let context = named.context.clone().unwrap_or_default();
                    vec![
                        if config.current_context.as_deref() == Some(&named.name) { "*".into() } else { String::new() },
                        named.name.clone(),
                        context.cluster,
                        context.user.unwrap_or_default(),
                        context.namespace.unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", format_columns(&header, &rows));
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(name) => println!("{name}"),
            None => anyhow::bail!("current-context is not set"),
        },
        ConfigCommand::UseContext { name } => {
            if !config.contexts.iter().any(|c| c.name == name) {
                anyhow::bail!("no context exists with the name: \"{name}\"");
            }
            config.current_context = Some(name.clone());
            write(&path, &config)?;
            println!("Switched to context \"{name}\".");
        }
        ConfigCommand::SetContext { name, current, context_namespace } => {
            let name = match (name, current) {
                (Some(name), false) => name,
                (None, true) => config.current_context.clone().ok_or_else(|| anyhow::anyhow!("current-context is not set"))?,
                _ => anyhow::bail!("give a context name or --current"),
            };
            let named = config
                .contexts
                .iter_mut()
                .find(|c| c.name == name)
                .ok_or_else(|| anyhow::anyhow!("no context exists with the name: \"{name}\""))?;
            if let Some(ns) = context_namespace {
                named.context.get_or_insert_with(Default::default).namespace = Some(ns);
            }
            write(&path, &config)?;
            println!("Context \"{name}\" modified.");
        }
    }
    Ok(())
}

fn write(path: &PathBuf, config: &Kubeconfig) -> anyhow::Result<()> {
    let text = to_yaml(&serde_json::to_value(config)?)?;
    std::fs::write(path, text).with_context(|| format!("writing kubeconfig {}", path.display()))
}
