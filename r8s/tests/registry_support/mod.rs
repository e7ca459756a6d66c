//! Shared by the pull tests: Debian's `docker-registry` (distribution 2.8) on
//! a loopback port with its storage in the test's directory, optionally
//! behind htpasswd (Basic) or token (Bearer) auth; a token server for the
//! latter (the registry verifies its ES256 tokens against the certificate
//! in its config, as with any real token service); and a small push client.
//! The registry and token server stop when dropped, also when a test fails.

#![allow(dead_code)] // each test uses part of it

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-pw";
const SERVICE: &str = "r8s-test-registry";
const ISSUER: &str = "r8s-test-issuer";

pub enum Auth {
    Anonymous,
    /// htpasswd with [`USER`] and [`PASSWORD`].
    Basic,
    /// Tokens from a [`TokenServer`] that checks [`USER`] and [`PASSWORD`].
    Bearer,
}

pub struct Registry {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    child: Child,
    pub token_server: Option<TokenServer>,
}

impl Registry {
    pub fn start(auth: Auth) -> Self {
        let dir = tempfile::Builder::new().prefix("r8s-test-registry-").tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut token_server = None;
        let auth_config = match auth {
            Auth::Anonymous => String::new(),
            Auth::Basic => {
                let line = format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 5).unwrap());
                std::fs::write(dir.path().join("htpasswd"), line).unwrap();
                format!("auth:\n  htpasswd:\n    realm: r8s-test\n    path: {}\n", dir.path().join("htpasswd").display())
            }
            Auth::Bearer => {
                let server = TokenServer::start(dir.path());
                let config = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.address,
                    server.cert_path.display()
                );
                token_server = Some(server);
                config
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_config}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry, see scripts/setup.sh)");
        let registry = Registry { dir, host, child, token_server };
        for _ in 0..200 {
            if TcpStream::connect(&registry.host).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {}: {}", registry.host, std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default());
    }

    /// The `Authorization` value a pusher sends.
    fn push_authorization(&self, repository: &str) -> Option<String> {
        if let Some(server) = &self.token_server {
            return Some(format!("Bearer {}", server.token(repository, &["pull", "push"])));
        }
        self.dir.path().join("htpasswd").exists().then(|| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")))
        })
    }

    /// Uploads `content` as a blob of `repository`; returns its descriptor.
    pub async fn push_blob(&self, repository: &str, media_type: &str, content: &[u8]) -> serde_json::Value {
        let digest = sha256(content);
        let http = reqwest::Client::new();
        let auth = self.push_authorization(repository);
        let with_auth = |r: reqwest::RequestBuilder| match &auth {
            Some(value) => r.header("Authorization", value),
            None => r,
        };
        let started = with_auth(http.post(format!("http://{}/v2/{repository}/blobs/uploads/", self.host))).send().await.unwrap();
        assert_eq!(started.status(), 202, "starting an upload: {:?}", started.text().await);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') { format!("http://{}{location}", self.host) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = with_auth(http.put(format!("{location}{separator}digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201, "finishing an upload: {:?}", done.text().await);
        json!({ "mediaType": media_type, "digest": digest, "size": content.len() })
    }

    /// Puts a manifest (or index) under `tag`; returns its digest.
    pub async fn push_manifest(&self, repository: &str, tag: &str, manifest: &serde_json::Value) -> String {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let mut request = reqwest::Client::new()
            .put(format!("http://{}/v2/{repository}/manifests/{tag}", self.host))
            .header("Content-Type", manifest["mediaType"].as_str().unwrap())
            .body(bytes.clone());
        if let Some(value) = self.push_authorization(repository) {
            request = request.header("Authorization", value);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), 201, "putting a manifest: {:?}", reply.text().await);
        sha256(&bytes)
    }

    /// Pushes a one-layer image (a gzipped tar of `rootfs`) for `arch`;
    /// returns (manifest descriptor, config digest, layer digest).
    pub async fn push_image(&self, repository: &str, tag: &str, rootfs: &Path, arch: &str) -> (serde_json::Value, String, String) {
        let layer = gzip(&tar_dir(rootfs));
        let diff_id = sha256(&tar_dir(rootfs));
        let layer = self.push_blob(repository, "application/vnd.oci.image.layer.v1.tar+gzip", &layer).await;
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": { "Cmd": ["sh"], "Env": ["PATH=/bin", "PULLED=yes"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))
        .unwrap();
        let config = self.push_blob(repository, "application/vnd.oci.image.config.v1+json", &config).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [layer],
        });
        let digest = self.push_manifest(repository, tag, &manifest).await;
        let size = serde_json::to_vec(&manifest).unwrap().len();
        let descriptor = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
            "platform": { "architecture": arch, "os": "linux" },
        });
        (descriptor, config["digest"].as_str().unwrap().to_string(), layer["digest"].as_str().unwrap().to_string())
    }

    /// The file the registry keeps blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker token service: GET /token?service=..&scope=repository:NAME:ACTIONS
/// with Basic credentials answers `{"token": JWT}`, signed ES256 with a key
/// whose certificate the registry trusts.
pub struct TokenServer {
    pub address: String,
    cert_path: PathBuf,
    key: Arc<ring::signature::EcdsaKeyPair>,
    cert_der: Vec<u8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(dir: &Path) -> Self {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["r8s-test-token".to_string()]).unwrap().self_signed(&key_pair).unwrap();
        let cert_path = dir.join("token.crt");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &key_pair.serialize_der(), &rng).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let mut server = TokenServer { address, cert_path, key: Arc::new(key), cert_der: cert.der().to_vec(), stop: Arc::new(AtomicBool::new(false)), thread: None };
        let (stop, signer) = (server.stop.clone(), server.signer());
        server.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => answer_token_request(stream, &signer),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
        server
    }

    fn signer(&self) -> Signer {
        Signer { key: self.key.clone(), cert_der: self.cert_der.clone() }
    }

    /// A token for `repository` with `actions`.
    pub fn token(&self, repository: &str, actions: &[&str]) -> String {
        self.signer().sign(repository, actions)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone)]
struct Signer {
    key: Arc<ring::signature::EcdsaKeyPair>,
    cert_der: Vec<u8>,
}

impl Signer {
    fn sign(&self, repository: &str, actions: &[&str]) -> String {
        let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)] });
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let secs = now.as_secs();
        let claims = json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": secs + 600, "nbf": secs - 60, "iat": secs,
            "jti": now.as_nanos().to_string(),
            "access": [{ "type": "repository", "name": repository, "actions": actions }],
        });
        let signing_input = format!("{}.{}", url(&serde_json::to_vec(&header).unwrap()), url(&serde_json::to_vec(&claims).unwrap()));
        let signature = self.key.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", url(signature.as_ref()))
    }
}

/// One HTTP/1.1 request: 401 unless the Basic credentials are [`USER`]:[`PASSWORD`].
fn answer_token_request(stream: TcpStream, signer: &Signer) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap_or_default();
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
                authorized = value.trim() == format!("Basic {expected}");
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let scope = query.split('&').find_map(|kv| kv.strip_prefix("scope=")).map(percent_decode).unwrap_or_default();
    let mut parts = scope.splitn(3, ':');
    let (_, repository) = (parts.next(), parts.next().unwrap_or_default().to_string());
    let (status, body) = if authorized {
        ("200 OK", json!({ "token": signer.sign(&repository, &["pull"]) }).to_string())
    } else {
        ("401 Unauthorized", json!({ "details": "wrong credentials" }).to_string())
    };
    let mut stream = reader.into_inner();
    let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn sha256(bytes: &[u8]) -> String {
    runtime::image::Digest::of(bytes).to_string()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A tar of the tree under `dir` (symlinks kept as links), in a stable order.
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}
