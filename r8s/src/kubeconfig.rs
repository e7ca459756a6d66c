//! The kubeconfig a server writes for its cluster, so that `r8sctl` and the real
//! `kubectl` reach it with `KUBECONFIG=<path>` and nothing else.

use std::path::Path;

use anyhow::Context;

/// Writes a kubeconfig with one cluster, user and context, all named `name`,
/// pointing at `server_url`. Plain HTTP on loopback has no credentials yet.
pub fn write(path: &Path, name: &str, server_url: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {server_url}
users:
- name: {name}-admin
  user: {{}}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}-admin
    namespace: default
current-context: {name}
"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write then rename, so a reader never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}
