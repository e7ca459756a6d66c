//! The image store with real archives: OCI layouts (directory and tar),
//! `docker save` tars, and broken ones.

mod runtime_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use runtime::image::{defaults, Digest, ImageError, ImageStore};
use runtime_support::TestEnv;
use serde_json::json;

fn sha(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// A tar built entry by entry: (path, kind, content).
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Raw(&'a str),
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match entry {
            Entry::File(path, content) => {
                h.set_size(content.len() as u64);
                builder.append_data(&mut h, path, *content).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Raw(path) => {
                // A name append_data would refuse (`..`): written as it is.
                h.set_size(0);
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                builder.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

/// Writes an OCI image layout with `layers` (media type, blob) and returns
/// the digests of the layers.
fn oci_layout(dir: &Path, name: &str, layers: &[(&str, Vec<u8>)]) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha(bytes);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
        (digest, bytes.len())
    };
    let layer_descriptors: Vec<_> = layers
        .iter()
        .map(|(media_type, blob)| {
            let (digest, size) = put(blob);
            json!({ "mediaType": media_type, "digest": digest, "size": size })
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["ls /data"], "Env": ["A=1"], "WorkingDir": "/data", "User": "65534" },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap();
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": layer_descriptors,
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": name },
        }],
    })).unwrap()).unwrap();
    layers.iter().map(|(_, blob)| sha(blob)).collect()
}

/// A two-layer image: the second deletes `/data/gone` and replaces `/opaque`.
fn whiteout_layers() -> Vec<(&'static str, Vec<u8>)> {
    let base = tar_of(&[
        Entry::Dir("data"),
        Entry::File("data/gone", b"old"),
        Entry::File("data/kept", b"kept"),
        Entry::Dir("opaque"),
        Entry::File("opaque/old", b"old"),
    ]);
    let top = tar_of(&[
        Entry::File("data/.wh.gone", b""),
        Entry::Dir("opaque"),
        Entry::File("opaque/.wh..wh..opq", b""),
        Entry::File("opaque/new", b"new"),
    ]);
    vec![
        ("application/vnd.oci.image.layer.v1.tar+gzip", gzip(&base)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", zstd::encode_all(&top[..], 1).unwrap()),
    ]
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::Builder::new().prefix("r8s-test-images-").tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn tmp_is_empty(dir: &tempfile::TempDir) -> bool {
    std::fs::read_dir(dir.path().join("store/tmp")).unwrap().next().is_none()
}

#[test]
fn import_rootfs_keeps_ownership_modes_and_links_and_survives_reopening() {
    let (dir, store) = store();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::write(rootfs.join("bin/tool"), "#!/bin/sh\n").unwrap();
    // chown clears setuid bits: it comes first.
    std::os::unix::fs::chown(rootfs.join("bin/tool"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(rootfs.join("bin/tool"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    std::os::unix::fs::symlink("tool", rootfs.join("bin/link")).unwrap();
    std::fs::hard_link(rootfs.join("bin/tool"), rootfs.join("bin/hard")).unwrap();
    let image = store.import_rootfs(&rootfs, "local/tool:v1").unwrap();
    assert_eq!(image.layers.len(), 1);

    let reopened = ImageStore::open(&dir.path().join("store")).unwrap();
    let image = reopened.get("local/tool:v1").unwrap();
    let layer = &reopened.layer_dirs(&image).unwrap()[0];
    let meta = std::fs::symlink_metadata(layer.join("bin/tool")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 5678, 0o4750));
    assert_eq!(std::fs::read_link(layer.join("bin/link")).unwrap(), Path::new("tool"));
    assert_eq!(std::fs::metadata(layer.join("bin/hard")).unwrap().ino(), meta.ino());
    assert_eq!(reopened.list().unwrap().len(), 1);
}

#[test]
fn oci_layout_directory_and_tar_import_with_whiteouts_and_defaults() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    let layers = oci_layout(&layout, "example.org/app:1.0", &whiteout_layers());
    let images = store.import_archive(&layout, None).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.name, "example.org/app:1.0");
    assert_eq!(image.layers.iter().map(|d| d.to_string()).collect::<Vec<_>>(), layers);
    assert_eq!(image.defaults.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(image.defaults.working_dir.as_deref(), Some("/data"));
    let dirs = store.layer_dirs(image).unwrap();
    let whiteout = std::fs::symlink_metadata(dirs[1].join("data/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert_eq!(xattr::get(dirs[1].join("opaque"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));

    // The same layout as a tar, under another name.
    let tar_path = dir.path().join("layout.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    builder.append_dir_all(".", &layout).unwrap();
    builder.finish().unwrap();
    drop(builder);
    let images = store.import_archive(&tar_path, Some("renamed")).unwrap();
    assert_eq!(images[0].name, "renamed:latest");
    assert_eq!(images[0].id, image.id);
    assert!(tmp_is_empty(&dir));
}

#[test]
fn docker_save_archives_import() {
    let (dir, store) = store();
    let save = dir.path().join("save");
    std::fs::create_dir_all(save.join("abc")).unwrap();
    let layer = tar_of(&[Entry::File("hello", b"world")]);
    std::fs::write(save.join("abc/layer.tar"), &layer).unwrap();
    let config = br#"{"config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    std::fs::write(save.join("cfg.json"), config).unwrap();
    std::fs::write(save.join("manifest.json"), r#"[{"Config":"cfg.json","RepoTags":["saved:1"],"Layers":["abc/layer.tar"]}]"#).unwrap();
    let tar_path = dir.path().join("save.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    builder.append_dir_all(".", &save).unwrap();
    builder.finish().unwrap();
    drop(builder);
    let image = store.import_archive(&tar_path, None).unwrap().remove(0);
    assert_eq!(image.name, "saved:1");
    assert_eq!(image.defaults.cmd, ["/hello"]);
    assert_eq!(image.id.to_string(), sha(config));
    let dirs = store.layer_dirs(&image).unwrap();
    assert_eq!(std::fs::read(dirs[0].join("hello")).unwrap(), b"world");
}

/// Replaces the blob `digest` of a layout with `content`, keeping its name.
fn corrupt(layout: &Path, digest: &str, content: &[u8]) {
    std::fs::write(layout.join("blobs/sha256").join(&digest["sha256:".len()..]), content).unwrap();
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_by_name() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    let layers = oci_layout(&layout, "bad:1", &whiteout_layers());
    let original = std::fs::read(layout.join("blobs/sha256").join(&layers[0]["sha256:".len()..])).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    corrupt(&layout, &layers[0], &tampered);
    let err = store.import_archive(&layout, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layers[0]), "{err}");

    corrupt(&layout, &layers[0], &original[..original.len() / 2]);
    let err = store.import_archive(&layout, None).unwrap_err();
    assert!(err.to_string().contains("truncated") && err.to_string().contains(&layers[0]), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(tmp_is_empty(&dir));
}

#[test]
fn an_unknown_layer_media_type_is_refused_by_name() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    let layers = oci_layout(&layout, "odd:1", &[("application/x-something", tar_of(&[Entry::File("a", b"a")]))]);
    let err = store.import_archive(&layout, None).unwrap_err();
    assert!(err.to_string().contains("unsupported media type") && err.to_string().contains(&layers[0]), "{err}");
}

#[test]
fn an_escaping_layer_is_refused_and_nothing_is_left_half_unpacked() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    let evil = tar_of(&[Entry::File("fine", b"x"), Entry::Raw("../escaped")]);
    let layers = oci_layout(&layout, "evil:1", &[("application/vnd.oci.image.layer.v1.tar", evil)]);
    let err = store.import_archive(&layout, None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&layers[0]) && text.contains("escapes the layer"), "{text}");
    assert!(!dir.path().join("store/escaped").exists() && !dir.path().join("escaped").exists());
    assert!(std::fs::read_dir(dir.path().join("store/layers")).unwrap().next().is_none());
    assert!(tmp_is_empty(&dir));
    assert!(matches!(store.get("evil:1"), Err(ImageError::NotFound(_))));
}

#[test]
fn concurrent_imports_of_one_image_agree() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "shared:1", &whiteout_layers());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.import_archive(&layout, None))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<Digest> = results.into_iter().map(|r| r.unwrap().remove(0).id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(tmp_is_empty(&dir));
}

#[test]
fn removed_images_are_pruned() {
    let (dir, store) = store();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "gone:1", &whiteout_layers());
    store.import_archive(&layout, None).unwrap();
    assert_eq!(store.prune().unwrap(), Default::default(), "nothing unused yet");
    store.remove("gone:1").unwrap();
    let pruned = store.prune().unwrap();
    assert_eq!((pruned.blobs, pruned.layers), (4, 2));
    assert!(store.blobs().list().unwrap().is_empty());
}

#[test]
fn a_container_sees_the_layers_through_overlayfs() {
    let env = TestEnv::new();
    let layout = env.dir.path().join("layout");
    let mut layers = whiteout_layers();
    // busybox below, so that the image's shell runs.
    let busybox = env.store.get("busybox").unwrap();
    let busybox_blob = std::fs::read(env.store.blobs().path(&busybox.layers[0])).unwrap();
    layers.insert(0, ("application/vnd.oci.image.layer.v1.tar", busybox_blob));
    oci_layout(&layout, "layered:1", &layers);
    let image = env.store.import_archive(&layout, None).unwrap().remove(0);
    let dirs: Vec<PathBuf> = env.store.layer_dirs(&image).unwrap();
    let mut spec = env.spec("layered", &[]);
    defaults::apply_image(&mut spec.oci, &image, &dirs, &[], &["pwd; id -u; echo $A; ls /data /opaque".to_string()]).unwrap();
    spec.rootfs = defaults::rootfs(dirs);
    let (exit, out) = env.run(spec);
    assert_eq!(exit.code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["/data", "65534", "1"], "{out}");
    assert!(out.contains("kept") && !out.contains("gone"), "whiteout hides the file: {out}");
    assert!(out.contains("new") && !out.contains("old"), "opaque directory hides the lower one: {out}");
}
