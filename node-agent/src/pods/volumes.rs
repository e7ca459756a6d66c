//! A pod's volumes on the host (under `<root>/pods/<uid>/volumes/<name>`) and
//! the CRI mounts of each container.
//!
//! emptyDir (on disk, or tmpfs for `medium: Memory`), hostPath (with its type
//! checks), configMap, secret, downwardAPI and projected (of those three) are
//! supported; any other type is an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use client::k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::env::{field_value, resource_value, secret_data, EnvError};
use super::sources::Sources;
use crate::cri::api as cri;

const DEFAULT_MODE: i32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("r8s does not support volume type {kind:?} (volume {volume:?})")]
    Unsupported { volume: String, kind: String },
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigKey(String),
    #[error("secret references non-existent secret key: {0}")]
    MissingSecretKey(String),
    #[error("hostPath type check failed: {path} is not a {kind}")]
    HostPathType { path: String, kind: String },
    #[error("invalid path {0:?}: must be relative and must not contain '..'")]
    BadPath(String),
    #[error("unable to find volume {0:?} for the mount")]
    NoSuchVolume(String),
    #[error(transparent)]
    Field(#[from] EnvError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.display().to_string(), source }
}

/// The directory of a pod's volumes.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// Makes every volume of `pod` ready on the host; returns its host path by
/// volume name. Safe to call again: files are rewritten with current values.
pub fn set_up(root: &Path, pod: &Pod, sources: &Sources) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let base = pod_dir(root, uid).join("volumes");
    let mut paths = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = set_up_volume(&base, pod, volume, sources)?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

fn set_up_volume(base: &Path, pod: &Pod, volume: &Volume, sources: &Sources) -> Result<PathBuf, VolumeError> {
    let dir = base.join(&volume.name);
    if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    }
    if let Some(empty) = &volume.empty_dir {
        make_dir(&dir)?;
        if empty.medium.as_deref() == Some("Memory") {
            let size = empty.size_limit.as_ref().and_then(|q| api::Quantity::parse(&q.0).ok()).map(|q| q.value());
            mount_tmpfs(&dir, size)?;
        }
        return Ok(dir);
    }
    let files = if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        config_map_files(&source.name, source.items.as_deref(), optional, source.default_mode, sources)?
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        secret_files(&name, source.items.as_deref(), source.optional.unwrap_or(false), source.default_mode, sources)?
    } else if let Some(source) = &volume.downward_api {
        let mut files = Vec::new();
        for item in source.items.iter().flatten() {
            files.push(downward_file(pod, item.path.clone(), item.field_ref.as_ref().map(|f| f.field_path.as_str()), item.resource_field_ref.as_ref(), item.mode.or(source.default_mode), sources)?);
        }
        files
    } else if let Some(projected) = &volume.projected {
        let mut files = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(map) = &source.config_map {
                files.extend(config_map_files(&map.name, map.items.as_deref(), map.optional.unwrap_or(false), projected.default_mode, sources)?);
            } else if let Some(secret) = &source.secret {
                files.extend(secret_files(&secret.name, secret.items.as_deref(), secret.optional.unwrap_or(false), projected.default_mode, sources)?);
            } else if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    files.push(downward_file(pod, item.path.clone(), item.field_ref.as_ref().map(|f| f.field_path.as_str()), item.resource_field_ref.as_ref(), item.mode.or(projected.default_mode), sources)?);
                }
            } else {
                return Err(unsupported(volume, &serde_json::to_value(source).unwrap_or_default()));
            }
        }
        files
    } else {
        return Err(unsupported(volume, &serde_json::to_value(volume).unwrap_or_default()));
    };
    write_files(&dir, &files)?;
    Ok(dir)
}

fn unsupported(volume: &Volume, source: &serde_json::Value) -> VolumeError {
    let kind = source.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()).unwrap_or_else(|| "unknown".into());
    VolumeError::Unsupported { volume: volume.name.clone(), kind }
}

/// One file of a projected volume: relative path, content, mode.
type File = (String, Vec<u8>, i32);

fn pick(data: BTreeMap<String, Vec<u8>>, items: Option<&[KeyToPath]>, default_mode: Option<i32>, missing: impl Fn(String) -> VolumeError) -> Result<Vec<File>, VolumeError> {
    let mode = default_mode.unwrap_or(DEFAULT_MODE);
    match items {
        None | Some([]) => Ok(data.into_iter().map(|(key, value)| (key, value, mode)).collect()),
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data.get(&item.key).cloned().ok_or_else(|| missing(item.key.clone()))?;
                Ok((item.path.clone(), value, item.mode.unwrap_or(mode)))
            })
            .collect(),
    }
}

fn config_map_files(name: &str, items: Option<&[KeyToPath]>, optional: bool, mode: Option<i32>, sources: &Sources) -> Result<Vec<File>, VolumeError> {
    match sources.config_maps.get(name).cloned().flatten() {
        Some(map) => {
            let mut data: BTreeMap<String, Vec<u8>> = map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            data.extend(map.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            pick(data, items, mode, VolumeError::MissingConfigKey)
        }
        None if optional => Ok(Vec::new()),
        None => Err(VolumeError::ConfigMapNotFound(name.to_string())),
    }
}

fn secret_files(name: &str, items: Option<&[KeyToPath]>, optional: bool, mode: Option<i32>, sources: &Sources) -> Result<Vec<File>, VolumeError> {
    match sources.secrets.get(name).cloned().flatten() {
        Some(secret) => {
            let data = secret_data(&secret).into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            pick(data, items, mode, VolumeError::MissingSecretKey)
        }
        None if optional => Ok(Vec::new()),
        None => Err(VolumeError::SecretNotFound(name.to_string())),
    }
}

fn downward_file(
    pod: &Pod,
    path: String,
    field: Option<&str>,
    resource: Option<&client::k8s_openapi::api::core::v1::ResourceFieldSelector>,
    mode: Option<i32>,
    sources: &Sources,
) -> Result<File, VolumeError> {
    let value = match (field, resource) {
        (Some(field), _) => field_value(pod, field)?,
        (None, Some(resource)) => {
            let name = resource.container_name.as_deref().unwrap_or_default();
            let container = pod.spec.iter().flat_map(|s| s.containers.iter()).find(|c| c.name == name).ok_or_else(|| EnvError::UnsupportedResource(format!("container {name:?}")))?;
            resource_value(container, &resource.resource, resource.divisor.as_ref().map(|d| d.0.as_str()), sources)?
        }
        (None, None) => String::new(),
    };
    Ok((path, value.into_bytes(), mode.unwrap_or(DEFAULT_MODE)))
}

/// A relative path that stays inside its directory.
fn safe_join(dir: &Path, relative: &str) -> Result<PathBuf, VolumeError> {
    let path = Path::new(relative);
    if relative.is_empty() || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(VolumeError::BadPath(relative.to_string()));
    }
    Ok(dir.join(path))
}

fn write_files(dir: &Path, files: &[File]) -> Result<(), VolumeError> {
    make_dir(dir)?;
    for (relative, content, mode) in files {
        let path = safe_join(dir, relative)?;
        if let Some(parent) = path.parent() {
            make_dir(parent)?;
        }
        // Write aside, then rename: a reader never sees half a file.
        let temporary = path.with_extension("r8s-tmp");
        std::fs::write(&temporary, content).map_err(io(&temporary))?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(*mode as u32 & 0o7777)).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

fn host_path(path: &str, kind: &str) -> Result<PathBuf, VolumeError> {
    let host = PathBuf::from(path);
    let wrong = |kind: &str| VolumeError::HostPathType { path: path.to_string(), kind: kind.to_string() };
    let meta = std::fs::metadata(&host).ok();
    use std::os::unix::fs::FileTypeExt;
    match kind {
        "" => {}
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(&host).map_err(io(&host))?;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).map_err(io(&host))?;
        }
        "DirectoryOrCreate" | "Directory" if !meta.as_ref().is_some_and(|m| m.is_dir()) => return Err(wrong("directory")),
        "FileOrCreate" if meta.is_none() => {
            if let Some(parent) = host.parent() {
                make_dir(parent)?;
            }
            std::fs::File::create(&host).map_err(io(&host))?;
        }
        "FileOrCreate" | "File" if !meta.as_ref().is_some_and(|m| m.is_file()) => return Err(wrong("file")),
        "Socket" if !meta.as_ref().is_some_and(|m| m.file_type().is_socket()) => return Err(wrong("socket")),
        "CharDevice" if !meta.as_ref().is_some_and(|m| m.file_type().is_char_device()) => return Err(wrong("character device")),
        "BlockDevice" if !meta.as_ref().is_some_and(|m| m.file_type().is_block_device()) => return Err(wrong("block device")),
        _ => {}
    }
    Ok(host)
}

fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(own), Some(Ok(parent))) => own.dev() != parent.dev(),
        _ => false,
    }
}

fn c_path(path: &Path) -> Result<CString, VolumeError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| VolumeError::BadPath(path.display().to_string()))
}

fn mount_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), VolumeError> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let target = c_path(dir)?;
    let options = CString::new(match size {
        Some(bytes) if bytes > 0 => format!("mode=0777,size={bytes}"),
        _ => "mode=0777".to_string(),
    })
    .map_err(|_| VolumeError::BadPath(dir.display().to_string()))?;
    let fstype = c"tmpfs";
    // SAFETY: valid C strings; the mount is made on r8s's own directory.
    let rc = unsafe { libc::mount(c"r8s-tmpfs".as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, options.as_ptr().cast()) };
    if rc != 0 {
        return Err(io(dir)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Unmounts the pod's tmpfs volumes and removes its volume directory.
pub fn tear_down(root: &Path, uid: &str) -> Result<(), VolumeError> {
    let dir = pod_dir(root, uid);
    let volumes = dir.join("volumes");
    if let Ok(entries) = std::fs::read_dir(&volumes) {
        for entry in entries.flatten() {
            let path = entry.path();
            if is_mount_point(&path) {
                let target = c_path(&path)?;
                // SAFETY: a valid C string naming a mount r8s made.
                if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
                    return Err(io(&path)(std::io::Error::last_os_error()));
                }
            }
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(error)),
        _ => Ok(()),
    }
}

/// The CRI mounts of `container` (`subPath` inside the volume, `readOnly`).
pub fn mounts(container: &Container, volumes: &HashMap<String, PathBuf>) -> Result<Vec<cri::Mount>, VolumeError> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| {
            let base = volumes.get(&mount.name).ok_or_else(|| VolumeError::NoSuchVolume(mount.name.clone()))?;
            let host = match mount.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => {
                    let path = safe_join(base, sub)?;
                    if !path.exists() {
                        make_dir(&path)?;
                    }
                    path
                }
                _ => base.clone(),
            };
            Ok(cri::Mount {
                container_path: mount.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: mount.read_only.unwrap_or(false),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::k8s_openapi::api::core::v1::{ConfigMap, Secret};

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let mut sources = Sources::default();
        let map: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "cfg"}, "data": {"a.conf": "A", "b.conf": "B"}})).unwrap();
        sources.config_maps.insert("cfg".into(), Some(map));
        let secret: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "s"}, "data": {"token": "c2VjcmV0"}})).unwrap();
        sources.secrets.insert("s".into(), Some(secret));
        sources
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn projects_config_maps_secrets_and_downward_api() {
        let root = tempfile::tempdir().unwrap();
        let p = pod(serde_json::json!([
            {"name": "config", "configMap": {"name": "cfg"}},
            {"name": "picked", "configMap": {"name": "cfg", "items": [{"key": "b.conf", "path": "sub/b", "mode": 0o600}]}},
            {"name": "secret", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "scratch", "emptyDir": {}},
        ]));
        let paths = set_up(root.path(), &p, &sources()).unwrap();
        assert_eq!(std::fs::read_to_string(paths["config"].join("a.conf")).unwrap(), "A");
        assert_eq!(mode(&paths["config"].join("a.conf")), 0o644);
        assert!(!paths["picked"].join("a.conf").exists());
        assert_eq!(std::fs::read_to_string(paths["picked"].join("sub/b")).unwrap(), "B");
        assert_eq!(mode(&paths["picked"].join("sub/b")), 0o600);
        assert_eq!(std::fs::read_to_string(paths["secret"].join("token")).unwrap(), "secret");
        assert_eq!(mode(&paths["secret"].join("token")), 0o400);
        assert_eq!(std::fs::read_to_string(paths["info"].join("labels")).unwrap(), "app=\"web\"");
        assert!(paths["scratch"].is_dir());

        let container: Container = serde_json::from_value(serde_json::json!({"name": "c", "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": true},
            {"name": "scratch", "mountPath": "/data", "subPath": "part"}]}))
        .unwrap();
        let mounts = mounts(&container, &paths).unwrap();
        assert!(mounts[0].readonly);
        assert!(mounts[1].host_path.ends_with("scratch/part") && Path::new(&mounts[1].host_path).is_dir());
        tear_down(root.path(), "uid-1").unwrap();
        assert!(!pod_dir(root.path(), "uid-1").exists());
    }

    #[test]
    fn bad_volumes_are_clear_errors() {
        let root = tempfile::tempdir().unwrap();
        let nfs = pod(serde_json::json!([{"name": "share", "nfs": {"server": "x", "path": "/"}}]));
        assert_eq!(set_up(root.path(), &nfs, &sources()).unwrap_err().to_string(), "r8s does not support volume type \"nfs\" (volume \"share\")");
        let missing = pod(serde_json::json!([{"name": "c", "configMap": {"name": "nope"}}]));
        assert_eq!(set_up(root.path(), &missing, &sources()).unwrap_err().to_string(), "configmap \"nope\" not found");
        let escape = pod(serde_json::json!([{"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "../x"}]}}]));
        assert!(matches!(set_up(root.path(), &escape, &sources()), Err(VolumeError::BadPath(_))));
        let not_dir = pod(serde_json::json!([{"name": "h", "hostPath": {"path": "/etc/hostname", "type": "Directory"}}]));
        assert!(matches!(set_up(root.path(), &not_dir, &sources()), Err(VolumeError::HostPathType { .. })));
    }

    #[test]
    fn memory_empty_dir_is_tmpfs() {
        let root = tempfile::tempdir().unwrap();
        let p = pod(serde_json::json!([{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]));
        let paths = set_up(root.path(), &p, &sources()).unwrap();
        assert!(is_mount_point(&paths["mem"]));
        tear_down(root.path(), "uid-1").unwrap();
        assert!(!paths["mem"].exists());
    }
}
