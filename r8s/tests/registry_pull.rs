//! Pulling images from a real registry (Debian's `docker-registry`) on
//! loopback: by tag and digest, a multi-arch index, Basic and Bearer auth,
//! errors users see (wrong credentials, unknown image, a corrupted blob),
//! concurrent pulls, and through CRI to a running container.

mod cri_support;
mod registry_support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use cri_support::runtime_support;
use registry_support::{Auth, Registry, PASSWORD, USER};
use runtime::cri::api::{AuthConfig, ImageSpec};
use runtime::image::registry::{Credentials, PullError, PullEvent, PullOptions};
use runtime::image::{Digest, ImageError, ImageStore};
use serde_json::json;
use tonic::Code;

const REPO: &str = "r8s-test/busybox";

/// A registry holding `r8s-test/busybox:1`: busybox with a marker file.
/// Returns the registry, its manifest digest and its config digest (image id).
async fn registry_with_busybox(auth: Auth) -> (Registry, String, String) {
    let registry = Registry::start(auth);
    let rootfs = registry.dir.path().join("rootfs");
    runtime_support::build_busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("etc/pulled-from"), "the registry\n").unwrap();
    let (manifest, config, _) = registry.push_image(REPO, "1", &rootfs, "amd64").await;
    (registry, manifest["digest"].as_str().unwrap().to_string(), config)
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::Builder::new().prefix("r8s-test-pull-").tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

fn tmp_entries(dir: &Path) -> Vec<String> {
    cri_support::entries(&dir.join("images/tmp"))
}

/// (digest, already present) of each blob a pull stored.
type Seen = Arc<Mutex<Vec<(Digest, bool)>>>;

/// Pull options that record what each blob was.
fn recording() -> (PullOptions, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let progress = Arc::new(move |event: PullEvent<'_>| {
        if let PullEvent::Stored { digest, present, .. } = event {
            record.lock().unwrap().push((digest.clone(), present));
        }
    });
    (PullOptions { progress: Some(progress), ..Default::default() }, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_by_tag_and_by_digest_and_downloads_nothing_twice() {
    let (registry, manifest, config) = registry_with_busybox(Auth::Anonymous).await;
    let (dir, store) = store();
    let (options, seen) = recording();

    let reference = format!("{}/{REPO}:1", registry.host);
    let image = store.pull(&reference, &options).await.unwrap();
    assert_eq!(image.name, reference);
    assert_eq!(image.id.to_string(), config);
    assert_eq!(image.manifest.to_string(), manifest);
    assert_eq!(image.defaults.env, ["PATH=/bin", "PULLED=yes"]);
    let layers = store.layer_dirs(&image).unwrap();
    assert_eq!(std::fs::read_to_string(layers[0].join("etc/pulled-from")).unwrap(), "the registry\n");
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(store.get(&reference).unwrap(), image);
    let downloaded = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(downloaded.len(), 2, "config and one layer: {downloaded:?}");
    assert!(downloaded.iter().all(|(_, present)| !present));

    let pinned = format!("{}/{REPO}@{manifest}", registry.host);
    let by_digest = store.pull(&pinned, &options).await.unwrap();
    assert_eq!((by_digest.name.as_str(), &by_digest.id), (pinned.as_str(), &image.id));
    assert!(seen.lock().unwrap().iter().all(|(_, present)| *present), "the second pull found every blob stored");
    assert!(tmp_entries(dir.path()).is_empty());

    // A digest the registry does not have under that name.
    let other = format!("{}/{REPO}@{}", registry.host, Digest::of(b"other"));
    let err = store.pull(&other, &options).await.unwrap_err();
    assert!(matches!(err, PullError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&Digest::of(b"other").to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_this_machines_entry_of_a_multi_arch_index() {
    let registry = Registry::start(Auth::Anonymous);
    let rootfs = registry.dir.path().join("rootfs");
    runtime_support::build_busybox_rootfs(&rootfs);
    let other_rootfs = registry.dir.path().join("other");
    std::fs::create_dir_all(other_rootfs.join("etc")).unwrap();
    std::fs::write(other_rootfs.join("etc/arch"), "arm64\n").unwrap();
    let (arm, _, arm_layer) = registry.push_image("r8s-test/multi", "arm64-only", &other_rootfs, "arm64").await;
    let (amd, amd_config, _) = registry.push_image("r8s-test/multi", "amd64-only", &rootfs, "amd64").await;
    let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm, amd] });
    registry.push_manifest("r8s-test/multi", "both", &index).await;
    let (_dir, store) = store();

    let image = store.pull(&format!("{}/r8s-test/multi:both", registry.host), &PullOptions::default()).await.unwrap();
    assert_eq!(image.id.to_string(), amd_config);
    assert_eq!(image.manifest.to_string(), amd["digest"].as_str().unwrap());
    assert!(!store.blobs().contains(&arm_layer.parse().unwrap()), "the other architecture's layer is not downloaded");

    let only_arm = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm] });
    registry.push_manifest("r8s-test/multi", "arm-index", &only_arm).await;
    let err = store.pull(&format!("{}/r8s-test/multi:arm-index", registry.host), &PullOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("no manifest for linux/amd64"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_takes_the_right_credentials_and_names_the_registry_otherwise() {
    let (registry, _, config) = registry_with_busybox(Auth::Basic).await;
    let (dir, store) = store();
    let reference = format!("{}/{REPO}:1", registry.host);

    let anonymous = store.pull(&reference, &PullOptions::default()).await.unwrap_err();
    assert!(matches!(anonymous, PullError::Unauthenticated { .. }), "{anonymous}");
    assert!(anonymous.to_string().contains(&registry.host) && anonymous.to_string().contains("none were given"), "{anonymous}");

    let wrong = PullOptions { credentials: Credentials::basic(USER, "wrong"), ..Default::default() };
    let err = store.pull(&reference, &wrong).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthenticated { .. }), "{err}");
    assert!(err.to_string().contains(&registry.host) && err.to_string().contains("refused the credentials"), "{err}");
    assert!(store.list().unwrap().is_empty());

    let right = PullOptions { credentials: Credentials::basic(USER, PASSWORD), ..Default::default() };
    assert_eq!(store.pull(&reference, &right).await.unwrap().id.to_string(), config);

    // The command line, with --username and --password, into another store.
    let cli_root = dir.path().join("cli-images");
    let pull = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_r8s"))
            .args(["image", "pull", &reference, "--username", USER, "--password", password, "--image-root"])
            .arg(&cli_root)
            .output()
            .unwrap()
    };
    let ok = pull(PASSWORD);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), format!("{reference} {config}"));
    let refused = pull("wrong");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused the credentials") && stderr.contains(&registry.host), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_come_from_the_realm_with_the_credentials() {
    let (registry, _, config) = registry_with_busybox(Auth::Bearer).await;
    let (_dir, store) = store();
    let reference = format!("{}/{REPO}:1", registry.host);

    let wrong = PullOptions { credentials: Credentials::basic(USER, "wrong"), ..Default::default() };
    let err = store.pull(&reference, &wrong).await.unwrap_err();
    assert!(matches!(err, PullError::Unauthenticated { .. }), "{err}");
    assert!(err.to_string().contains(&registry.host) && err.to_string().contains("token endpoint"), "{err}");

    let right = PullOptions { credentials: Credentials::basic(USER, PASSWORD), ..Default::default() };
    assert_eq!(store.pull(&reference, &right).await.unwrap().id.to_string(), config);

    // A registry token (CRI's registry_token) is sent as it is.
    let token = registry.token_server.as_ref().unwrap().token(REPO, &["pull"]);
    let (_dir, fresh) = self::store();
    let with_token = PullOptions { credentials: Credentials { registry_token: token, ..Default::default() }, ..Default::default() };
    assert_eq!(fresh.pull(&reference, &with_token).await.unwrap().id.to_string(), config);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let registry = Registry::start(Auth::Anonymous);
    let rootfs = registry.dir.path().join("rootfs");
    runtime_support::build_busybox_rootfs(&rootfs);
    let (_, _, layer) = registry.push_image("r8s-test/corrupt", "1", &rootfs, "amd64").await;
    // Same size, different bytes: only the digest can tell.
    let file = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let (dir, store) = store();

    let err = store.pull(&format!("{}/r8s-test/corrupt:1", registry.host), &PullOptions::default()).await.unwrap_err();
    assert!(matches!(err, PullError::Image(ImageError::DigestMismatch { .. })), "{err}");
    assert!(err.to_string().contains(&layer), "the error names the blob: {err}");
    assert!(store.list().unwrap().is_empty(), "no image recorded");
    assert!(!store.blobs().contains(&layer.parse().unwrap()), "the bad blob is not stored");
    assert!(cri_support::entries(&dir.path().join("images/layers")).is_empty(), "nothing unpacked");
    assert!(tmp_entries(dir.path()).is_empty(), "no temporary file left");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pulls_of_one_image_at_once_both_succeed() {
    let (registry, _, config) = registry_with_busybox(Auth::Anonymous).await;
    let (dir, store) = store();
    let other_handle = ImageStore::open(&dir.path().join("images")).unwrap();
    let reference = format!("{}/{REPO}:1", registry.host);
    let options = PullOptions::default();
    let (a, b) = tokio::join!(store.pull(&reference, &options), other_handle.pull(&reference, &options));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.id.to_string(), config);
    let layers = store.layer_dirs(&a).unwrap();
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(cri_support::entries(&dir.path().join("images/layers")).len(), 1);
    assert!(tmp_entries(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_pull_image_honours_auth_and_the_pulled_image_runs() {
    let (registry, _, config) = registry_with_busybox(Auth::Basic).await;
    let node = cri_support::Node::new(None).await;
    let mut cri = node.start().await;
    let reference = format!("{}/{REPO}:1", registry.host);
    let spec = |image: &str| ImageSpec { image: image.to_string(), ..Default::default() };

    let wrong = AuthConfig { username: USER.into(), password: "wrong".into(), ..Default::default() };
    let status = cri.client.images.pull_image(spec(&reference), Some(wrong), None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains(&registry.host) && status.message().contains(&reference), "{status:?}");

    let unknown = format!("{}/r8s-test/nosuch:1", registry.host);
    let right = AuthConfig { username: USER.into(), password: PASSWORD.into(), ..Default::default() };
    let status = cri.client.images.pull_image(spec(&unknown), Some(right), None).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains(&unknown), "{status:?}");

    // The docker config form: base64 of user:password in `auth`.
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{USER}:{PASSWORD}"));
    let docker_config = AuthConfig { auth: encoded, server_address: registry.host.clone(), ..Default::default() };
    let pulled = cri.client.images.pull_image(spec(&reference), Some(docker_config), None).await.unwrap();
    assert_eq!(pulled, config, "containerd answers with the image id");
    let status = cri.client.images.image_status(spec(&reference), false).await.unwrap();
    assert_eq!(status.image.unwrap().id, config);

    let sandbox = cri.run_pod("pulled", |_| {}).await.unwrap();
    let mut container = cri_support::container_config("app", &["sleep", "60"]);
    container.image = Some(ImageSpec { image: reference.clone(), ..Default::default() });
    let created = cri.client.runtime.create_container(&sandbox, container, None).await.unwrap();
    cri.client.runtime.start_container(&created).await.unwrap();
    let (code, out, err) = cri.exec(&created, &["sh", "-c", "cat /etc/pulled-from; echo $PULLED"]).await;
    assert_eq!((code, out.as_str()), (0, "the registry\nyes\n"), "{err}");
    cri.remove_pod(&sandbox).await;
    cri.shutdown().await;
}
