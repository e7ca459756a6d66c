//! Path handling inside a container's root: every path from a spec is resolved
//! with symlinks interpreted relative to the root, so a hostile image cannot
//! make the runtime mount or write outside it.

use std::path::{Component, Path, PathBuf};

/// Resolves `unsafe_path` inside `root` as if `root` were `/`: `..` cannot
/// climb above `root` and symlinks (absolute or relative) are followed within
/// it. Missing components are kept as they are. The result is always below
/// `root` (as `filepath-securejoin` does for runc).
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<PathBuf> = unsafe_path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links_followed = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) | Some(Component::Prefix(_)) => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
        }
        let candidate = root.join(&resolved).join(&part);
        match std::fs::read_link(&candidate) {
            Ok(target) if links_followed < 255 => {
                links_followed += 1;
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            _ => resolved.push(&part),
        }
    }
    root.join(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("data")).unwrap();
        symlink("/etc", r.join("etc-link")).unwrap();
        symlink("../../../../data", r.join("data/up")).unwrap();
        assert_eq!(secure_join(r, Path::new("/etc-link/passwd")), r.join("etc/passwd"));
        assert_eq!(secure_join(r, Path::new("../../x")), r.join("x"));
        assert_eq!(secure_join(r, Path::new("/data/up/file")), r.join("data/file"));
        assert_eq!(secure_join(r, Path::new("/a/./b/../c")), r.join("a/c"));
    }

    #[test]
    fn symlink_loops_end() {
        let root = tempfile::tempdir().unwrap();
        symlink("loop", root.path().join("loop")).unwrap();
        assert!(secure_join(root.path(), Path::new("/loop/x")).starts_with(root.path()));
    }
}
