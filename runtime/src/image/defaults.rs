//! A container spec from an image: the image's entrypoint, cmd, env, working
//! directory and user become the process's defaults, overridden by the
//! caller's command and args as Kubernetes does.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Spec, User};

use super::{Image, ImageError};
use crate::config::Rootfs;

/// Fills `spec`'s process from `image`. `command` replaces the entrypoint and
/// `args` the cmd (a command alone also drops the image's cmd). `layers` are
/// the image's unpacked layers (bottom first), read for user names.
pub fn apply_image(
    spec: &mut Spec,
    image: &Image,
    layers: &[PathBuf],
    command: &[String],
    args: &[String],
) -> Result<(), ImageError> {
    let defaults = &image.defaults;
    let entrypoint = if command.is_empty() { defaults.entrypoint.clone() } else { command.to_vec() };
    let cmd = match (command.is_empty(), args.is_empty()) {
        (_, false) => args.to_vec(),
        (true, true) => defaults.cmd.clone(),
        (false, true) => Vec::new(),
    };
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(entrypoint.into_iter().chain(cmd).collect()));
    let mut env = defaults.env.clone();
    for entry in process.env().iter().flatten() {
        let name = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(dir) = &defaults.working_dir {
        process.set_cwd(PathBuf::from(dir));
    }
    if let Some(user) = &defaults.user {
        process.set_user(resolve_user(user, layers)?);
    }
    spec.set_process(Some(process));
    Ok(())
}

/// The root filesystem of a container of an image.
pub fn rootfs(layers: Vec<PathBuf>) -> Rootfs {
    Rootfs::Overlay { layers }
}

/// `uid`, `uid:gid`, `name` or `name:group`, names looked up in the image's
/// /etc/passwd and /etc/group (the topmost layer that has the file).
fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<User, ImageError> {
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let unknown = |what: &str| ImageError::BadArchive { what: "image config".into(), reason: format!("unknown {what} in User {user:?}") };
    let passwd = top_file(layers, "etc/passwd");
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => (uid, lookup(&passwd, |f| f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid), 3).unwrap_or(0)),
        Err(_) => {
            let uid = lookup(&passwd, |f| f.first() == Some(&name), 2).ok_or_else(|| unknown("user"))?;
            (uid, lookup(&passwd, |f| f.first() == Some(&name), 3).unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&top_file(layers, "etc/group"), |f| f.first() == Some(&g), 2).ok_or_else(|| unknown("group"))?,
        },
    };
    let mut resolved = User::default();
    resolved.set_uid(uid);
    resolved.set_gid(gid);
    Ok(resolved)
}

fn top_file(layers: &[PathBuf], relative: &str) -> String {
    layers
        .iter()
        .rev()
        .map(|l| l.join(relative))
        .find(|p| Path::new(p).is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// Field `field` of the first `:`-separated line that `matches`.
fn lookup(content: &str, matches: impl Fn(&[&str]) -> bool, field: usize) -> Option<u32> {
    content
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| matches(f))
        .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, ImageDefaults};

    fn image(defaults: ImageDefaults) -> Image {
        Image { name: "x:latest".into(), id: Digest::of(b"c"), manifest: Digest::of(b"m"), layers: vec![], defaults, size: 0 }
    }

    fn args_of(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().args().clone().unwrap()
    }

    #[test]
    fn command_and_args_override_like_kubernetes() {
        let img = image(ImageDefaults { entrypoint: vec!["/ep".into()], cmd: vec!["c".into()], ..Default::default() });
        let s = |cmd: &[&str], args: &[&str]| {
            let mut spec = crate::default_spec(vec![]);
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            apply_image(&mut spec, &img, &[], &cmd, &args).unwrap();
            args_of(&spec)
        };
        assert_eq!(s(&[], &[]), ["/ep", "c"]);
        assert_eq!(s(&["/x"], &[]), ["/x"]);
        assert_eq!(s(&[], &["a"]), ["/ep", "a"]);
        assert_eq!(s(&["/x"], &["a"]), ["/x", "a"]);
    }

    #[test]
    fn users_resolve_from_the_top_layer() {
        let base = tempfile::tempdir().unwrap();
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("etc")).unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        std::fs::write(base.path().join("etc/passwd"), "web:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::write(top.path().join("etc/passwd"), "web:x:33:34::/:/bin/sh\n").unwrap();
        std::fs::write(top.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = vec![base.path().to_path_buf(), top.path().to_path_buf()];
        let user = resolve_user("web", &layers).unwrap();
        assert_eq!((user.uid(), user.gid()), (33, 34));
        let user = resolve_user("web:staff", &layers).unwrap();
        assert_eq!((user.uid(), user.gid()), (33, 50));
        let user = resolve_user("1000:1000", &layers).unwrap();
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
        assert!(resolve_user("nobody", &layers).is_err());
    }
}
