//! A pod's imagePullSecrets as CRI's AuthConfig: the entry of its docker
//! config Secrets (`kubernetes.io/dockerconfigjson`, or the older
//! `kubernetes.io/dockercfg`) whose registry matches the image, the most
//! specific first, as the kubelet's keyring picks them.

use std::collections::HashMap;

use client::k8s_openapi::api::core::v1::Secret;
use runtime::image::registry::Reference;
use serde::Deserialize;

use crate::cri::api as cri;

#[derive(Debug, Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `user:password`.
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

/// The registry (and optional path) a docker config key names, as an image
/// reference spells it: `https://index.docker.io/v1/` is `docker.io`.
fn key_location(key: &str) -> String {
    let key = key.trim_start_matches("https://").trim_start_matches("http://");
    let key = key.trim_end_matches('/');
    let key = key.strip_suffix("/v1").or_else(|| key.strip_suffix("/v2")).unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    };
    if path.is_empty() { host.to_string() } else { format!("{host}/{path}") }
}

fn entries(secret: &Secret) -> HashMap<String, Entry> {
    let data = secret.data.as_ref();
    if let Some(json) = data.and_then(|d| d.get(".dockerconfigjson")) {
        return serde_json::from_slice::<DockerConfigJson>(&json.0).map(|c| c.auths).unwrap_or_default();
    }
    if let Some(json) = data.and_then(|d| d.get(".dockercfg")) {
        return serde_json::from_slice(&json.0).unwrap_or_default();
    }
    HashMap::new()
}

/// The credentials in `secrets` for `image`; `None`: pull anonymously.
pub fn auth_for(image: &str, secrets: &[Secret]) -> Option<cri::AuthConfig> {
    let reference = Reference::parse(image).ok()?;
    let repository = reference.repository_name();
    secrets
        .iter()
        .flat_map(entries)
        .map(|(key, entry)| (key_location(&key), key, entry))
        .filter(|(location, _, _)| repository == *location || repository.starts_with(&format!("{location}/")))
        .max_by_key(|(location, _, _)| location.len())
        .map(|(_, key, entry)| cri::AuthConfig {
            username: entry.username,
            password: entry.password,
            auth: entry.auth,
            server_address: key,
            identity_token: entry.identitytoken,
            registry_token: entry.registrytoken,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(key: &str, value: serde_json::Value) -> Secret {
        Secret {
            data: Some([(key.to_string(), ByteString(serde_json::to_vec(&value).unwrap()))].into()),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_matching_registry_entry_becomes_the_auth_config() {
        let secrets = [
            secret(".dockerconfigjson", json!({ "auths": {
                "https://index.docker.io/v1/": { "auth": "aHViOnB3" },
                "127.0.0.1:5000": { "username": "alice", "password": "pw" },
                "quay.io/team": { "username": "team", "password": "t" },
                "quay.io": { "username": "any", "password": "a" },
            }})),
            secret(".dockercfg", json!({ "registry.lan": { "registrytoken": "tok" } })),
        ];
        let hub = auth_for("busybox", &secrets).unwrap();
        assert_eq!((hub.auth.as_str(), hub.server_address.as_str()), ("aHViOnB3", "https://index.docker.io/v1/"));
        let local = auth_for("127.0.0.1:5000/app:1", &secrets).unwrap();
        assert_eq!((local.username.as_str(), local.password.as_str()), ("alice", "pw"));
        assert_eq!(auth_for("quay.io/team/app", &secrets).unwrap().username, "team", "the most specific entry wins");
        assert_eq!(auth_for("quay.io/other/app", &secrets).unwrap().username, "any");
        assert_eq!(auth_for("registry.lan/x", &secrets).unwrap().registry_token, "tok");
        assert!(auth_for("127.0.0.1:5001/app", &secrets).is_none(), "another port is another registry");
        assert!(auth_for("ghcr.io/x/y", &secrets).is_none());
    }
}
