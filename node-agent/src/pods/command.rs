//! The process a container runs: `command` and `args` from the pod against the
//! image's `Entrypoint` and `Cmd`, combined as Kubernetes (containerd, after
//! Docker) does, after `$(VAR)` expansion.

use std::collections::HashMap;

use super::env::expand;

/// The image's defaults, as its config says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// The argv to run:
/// - no `command`, no `args`: the image's Entrypoint + Cmd;
/// - only `args`: the image's Entrypoint + `args`;
/// - `command` (with or without `args`): `command` + `args`, the image's ignored.
pub fn effective_argv(command: &[String], args: &[String], image: &ImageProcess) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let args = if args.is_empty() { &image.cmd } else { args };
    image.entrypoint.iter().chain(args).cloned().collect()
}

/// `command` and `args` with `$(VAR)` references to the container's environment
/// expanded, as the kubelet does before handing them to the runtime.
pub fn expand_command(command: &[String], args: &[String], env: &HashMap<String, String>) -> (Vec<String>, Vec<String>) {
    let expand_all = |list: &[String]| list.iter().map(|item| expand(item, env)).collect();
    (expand_all(command), expand_all(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageProcess {
        ImageProcess { entrypoint: strings(&["/entry"]), cmd: strings(&["--default"]) }
    }

    #[test]
    fn combines_like_kubernetes() {
        assert_eq!(effective_argv(&[], &[], &image()), strings(&["/entry", "--default"]));
        assert_eq!(effective_argv(&[], &strings(&["-x"]), &image()), strings(&["/entry", "-x"]));
        assert_eq!(effective_argv(&strings(&["sh"]), &[], &image()), strings(&["sh"]));
        assert_eq!(effective_argv(&strings(&["sh"]), &strings(&["-c", "true"]), &image()), strings(&["sh", "-c", "true"]));
        let no_entrypoint = ImageProcess { entrypoint: vec![], cmd: strings(&["sh"]) };
        assert_eq!(effective_argv(&[], &[], &no_entrypoint), strings(&["sh"]));
        assert_eq!(effective_argv(&[], &strings(&["top"]), &no_entrypoint), strings(&["top"]));
    }

    #[test]
    fn expands_references_in_command_and_args() {
        let env = HashMap::from([("GREETING".to_string(), "hi".to_string())]);
        let (command, args) = expand_command(&strings(&["echo", "$(GREETING)"]), &strings(&["$$(GREETING)", "$(NOPE)"]), &env);
        assert_eq!(command, strings(&["echo", "hi"]));
        assert_eq!(args, strings(&["$(GREETING)", "$(NOPE)"]));
    }
}
