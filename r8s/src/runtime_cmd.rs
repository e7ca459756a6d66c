//! `r8s runtime ...`: run and inspect containers with r8s's own runtime, and
//! the hidden entry points the runtime re-executes (`shim`, `exec-init`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use runtime::{ContainerSpec, ExecSpec, Output, Rootfs, Runtime, RuntimeConfig, SeccompPolicy, Signal, Status};

#[derive(clap::Args)]
pub struct RuntimeArgs {
    /// One directory per container.
    #[arg(long, env = "R8S_STATE_ROOT", default_value = "/run/r8s/runtime", global = true)]
    state_root: PathBuf,
    /// r8s's cgroup subtree (`<controller>/<name>` on v1, `<name>` on v2).
    #[arg(long, env = "R8S_CGROUP_ROOT", default_value = "r8s", global = true)]
    cgroup_root: String,
    /// The image store.
    #[arg(long, env = "R8S_IMAGE_ROOT", default_value = crate::image_cmd::DEFAULT_IMAGE_ROOT, global = true)]
    image_root: PathBuf,
    #[command(subcommand)]
    command: RuntimeCommand,
}

#[derive(clap::Subcommand)]
enum RuntimeCommand {
    /// Run one container in the foreground and remove it afterwards (`podman run --rm`).
    Run(RunArgs),
    /// List containers.
    Ps,
    /// Run a command in a running container.
    Exec {
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a container: SIGTERM, then SIGKILL after the timeout.
    Stop {
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        id: String,
    },
    /// Remove a stopped container (with --force, a running one).
    Rm {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Print a container's output (detached containers).
    Logs { id: String },
    /// Serve CRI v1 (RuntimeService, ImageService) on a unix socket.
    Serve(crate::runtime_serve::ServeArgs),
    /// (internal) Hold a pod sandbox's namespaces.
    #[command(hide = true)]
    Pause {
        #[arg(long)]
        netns: Option<PathBuf>,
        #[arg(long)]
        ipc: bool,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        pid: bool,
    },
    /// (internal) The per-container supervisor.
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// (internal) Enter a running container and run a process.
    #[command(hide = true)]
    ExecInit {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        process: String,
        #[arg(long)]
        tty: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Container id (default: a generated one).
    #[arg(long)]
    name: Option<String>,
    /// Memory limit, e.g. 64Mi.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long)]
    pids: Option<i64>,
    #[arg(long)]
    hostname: Option<String>,
    /// NAME=value, repeatable.
    #[arg(short, long)]
    env: Vec<String>,
    /// Run detached, output to the container's log; remove with `rm`.
    #[arg(short, long)]
    detach: bool,
    /// Use this directory as the root instead of an image (writes reach it).
    #[arg(long, conflicts_with = "image")]
    rootfs: Option<PathBuf>,
    /// No seccomp filter.
    #[arg(long)]
    unconfined: bool,
    /// An image in the store, NAME[:TAG].
    #[arg(required_unless_present = "rootfs")]
    image: Option<String>,
    /// The command (default: the image's entrypoint and cmd).
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: RuntimeArgs) -> anyhow::Result<()> {
    match args.command {
        // The re-executed entry points never return.
        RuntimeCommand::Shim { state_dir } => runtime::shim::run(&state_dir, runtime::shim::Creator::Service),
        RuntimeCommand::ExecInit { state_dir, process, tty } => runtime::exec::run(&state_dir, &process, tty),
        RuntimeCommand::Pause { netns, ipc, hostname, pid } => {
            runtime::sandbox::pause::run(&runtime::sandbox::PauseOptions { netns, new_ipc: ipc, hostname, new_pid: pid })
        }
        command => {
            let mut config = RuntimeConfig::new(std::env::current_exe().context("finding the r8s binary")?);
            config.state_root = args.state_root;
            config.cgroup_root = args.cgroup_root;
            if let RuntimeCommand::Serve(serve) = command {
                return crate::runtime_serve::run(config, args.image_root, serve);
            }
            let rt = Runtime::new(config)?;
            match command {
                RuntimeCommand::Run(run) => run_container(&rt, &args.image_root, run),
                RuntimeCommand::Ps => ps(&rt),
                RuntimeCommand::Exec { tty, id, command } => {
                    let exec = ExecSpec { args: command, tty, ..Default::default() };
                    let status = rt.exec_command(&id, &exec)?.status().context("running exec")?;
                    std::process::exit(status.code().unwrap_or(1))
                }
                RuntimeCommand::Stop { time, id } => {
                    let exit = rt.stop(&id, Signal::SIGTERM, Duration::from_secs(time))?;
                    println!("{id} exited with code {}", exit.code);
                    Ok(())
                }
                RuntimeCommand::Rm { force, id } => Ok(rt.delete(&id, force)?),
                RuntimeCommand::Logs { id } => logs(&rt, &id),
                RuntimeCommand::Shim { .. } | RuntimeCommand::ExecInit { .. } | RuntimeCommand::Pause { .. } | RuntimeCommand::Serve(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

fn run_container(rt: &Runtime, image_root: &std::path::Path, args: RunArgs) -> anyhow::Result<()> {
    let id = args.name.clone().unwrap_or_else(generated_id);
    let (rootfs, mut oci) = match (&args.rootfs, &args.image) {
        (Some(dir), _) => (Rootfs::Directory(dir.clone()), runtime::default_spec(args.command.clone())),
        (None, Some(image)) => crate::image_cmd::container_from_image(image_root, image, &args.command)?,
        (None, None) => bail!("give an IMAGE or --rootfs"),
    };
    if oci.process().as_ref().and_then(|p| p.args().as_ref()).is_none_or(|a| a.is_empty()) {
        bail!("no command given and the image has none");
    }
    oci.set_hostname(Some(args.hostname.clone().unwrap_or_else(|| id.clone())));
    if let Some(process) = oci.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(args.env.iter().cloned());
        process.set_env(Some(env));
    }
    set_resources(&mut oci, &args)?;
    let output = if args.detach {
        Output::Log(rt.config().state_root.join(&id).join("container.log"))
    } else {
        Output::Inherit
    };
    let seccomp = if args.unconfined { SeccompPolicy::Unconfined } else { SeccompPolicy::RuntimeDefault };
    let spec = ContainerSpec { id: id.clone(), rootfs, oci, seccomp, output, stdin: Default::default() };
    rt.create_started(spec)?;
    if args.detach {
        println!("{id}");
        return Ok(());
    }
    let exit = rt.wait(&id);
    rt.delete(&id, true)?;
    let exit = exit?;
    if exit.oom_killed {
        eprintln!("r8s: container {id} was killed for exceeding its memory limit (OOMKilled)");
    }
    if let Some(reason) = &exit.reason {
        eprintln!("r8s: {reason}");
    }
    std::io::stdout().flush()?;
    std::process::exit(exit.code)
}

fn set_resources(oci: &mut runtime::config::Spec, args: &RunArgs) -> anyhow::Result<()> {
    use runtime::config::resources;
    let memory = args.memory.as_deref().map(parse_quantity).transpose()?;
    let linux = oci.linux_mut().get_or_insert_with(Default::default);
    linux.set_resources(Some(resources(memory, args.cpus, args.pids)));
    Ok(())
}

/// Kubernetes-style memory quantities: 64Mi, 1Gi, 500M, 1000000.
fn parse_quantity(text: &str) -> anyhow::Result<i64> {
    const UNITS: [(&str, i64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, unit) = UNITS
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((text, 1));
    let number: i64 = number.parse().with_context(|| format!("bad quantity {text:?}"))?;
    number.checked_mul(unit).with_context(|| format!("quantity {text:?} too large"))
}

fn generated_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("run-{}-{nanos:x}", std::process::id())
}

fn ps(rt: &Runtime) -> anyhow::Result<()> {
    println!("{:<32} {:<8} {:>8} {:<36} EXIT", "ID", "STATUS", "PID", "CREATED");
    for c in rt.list()? {
        let status = match c.status {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        };
        let (pid, created) = c.pids.map_or((0, String::new()), |p| (p.init, p.created_at));
        let exit = c.exit.map(|e| if e.oom_killed { format!("{} (OOMKilled)", e.code) } else { e.code.to_string() });
        println!("{:<32} {:<8} {:>8} {:<36} {}", c.id, status, pid, created, exit.unwrap_or_default());
    }
    Ok(())
}

fn logs(rt: &Runtime, id: &str) -> anyhow::Result<()> {
    let info = rt.info(id)?;
    let Output::Log(path) = &info.bundle.spec.output else {
        bail!("container {id} has no log (it was not run detached)");
    };
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    runtime::logs::print_log(std::io::BufReader::new(file), &mut std::io::stdout(), &mut std::io::stderr())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("4096").unwrap(), 4096);
        assert!(parse_quantity("lots").is_err());
    }
}
