//! `r8sctl`: a kubectl-like command line for r8s (and any Kubernetes API
//! server). It reads kubeconfig as kubectl does and prints what kubectl prints.

mod commands;
mod discovery;
mod jsonpath;
mod manifest;
mod printer;
mod session;
mod targets;

use clap::{Parser, Subcommand};

use commands::{apply, config, delete, describe, exec, get, info, modify, wait};
use session::{GlobalArgs, ServerError, Session};

#[derive(Parser)]
#[command(name = "r8sctl", version = info::CLIENT_VERSION, about = "r8sctl controls an r8s (or any Kubernetes) cluster")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifests (client-side apply, kubectl-compatible).
    Apply(apply::FileArgs),
    /// Create objects from manifests.
    Create(apply::FileArgs),
    /// List or show objects.
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Delete objects.
    Delete(delete::DeleteArgs),
    /// Run a command in a container.
    Exec(exec::ExecArgs),
    /// Edit an object in $EDITOR.
    Edit(modify::EditArgs),
    /// Set or remove labels.
    Label(modify::MetadataArgs),
    /// Set or remove annotations.
    Annotate(modify::MetadataArgs),
    /// Set the replica count of a Deployment or ReplicaSet.
    Scale(modify::ScaleArgs),
    /// Wait until objects meet a condition or are deleted.
    Wait(wait::WaitArgs),
    /// List the resource types the server serves.
    ApiResources,
    /// Print the client and server versions.
    Version,
    /// Read and switch kubeconfig contexts.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        match e.downcast_ref::<ServerError>() {
            Some(server) => eprintln!("{server}"),
            None => eprintln!("error: {e:#}"),
        }
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config(command) = cli.command {
        return config::run(&cli.global, command);
    }
    let session = Session::connect(&cli.global).await?;
    match cli.command {
        Command::Apply(args) => apply::apply(&session, args).await,
        Command::Create(args) => apply::create(&session, args).await,
        Command::Get(args) => get::run(&session, args).await,
        Command::Describe(args) => describe::run(&session, args).await,
        Command::Delete(args) => delete::run(&session, args).await,
        Command::Exec(args) => exec::run(&session, args).await,
        Command::Edit(args) => modify::edit(&session, args).await,
        Command::Label(args) => modify::set_metadata(&session, modify::MetadataMap::Labels, args).await,
        Command::Annotate(args) => modify::set_metadata(&session, modify::MetadataMap::Annotations, args).await,
        Command::Scale(args) => modify::scale(&session, args).await,
        Command::Wait(args) => wait::run(&session, args).await,
        Command::ApiResources => info::api_resources(&session).await,
        Command::Version => info::version(&session).await,
        Command::Config(_) => unreachable!("handled above"),
    }
}
