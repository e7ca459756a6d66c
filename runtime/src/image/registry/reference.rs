//! Image references as Docker, containerd and Kubernetes read them:
//! `busybox` is `docker.io/library/busybox:latest`, `host:port/repo:tag`
//! names another registry, `repo@sha256:...` pins a manifest.

use std::fmt;

use crate::image::Digest;

/// Docker Hub's name in references, and the host that serves its API.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry: `docker.io`, `quay.io`, `127.0.0.1:5000`, ...
    pub registry: String,
    /// The repository within it: `library/busybox`.
    pub repository: String,
    /// The tag, `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct BadReference {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Self, BadReference> {
        let bad = |reason: &str| BadReference { reference: reference.to_string(), reason: reason.to_string() };
        if reference.is_empty() || reference.len() > 255 {
            return Err(bad("must be 1 to 255 characters"));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>().map_err(|e| bad(&e.to_string()))?)),
            None => (reference, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(bad("the tag must be 1 to 128 letters, digits, '.', '_' or '-'"));
            }
        }
        // The first component names a registry when it looks like a host.
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if registry.is_empty() || !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return Err(bad("the registry must be a host name with an optional port"));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad("repository names are lowercase letters, digits and separators ('.', '_', '-', '/')"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Self { registry, repository, tag, digest })
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host (and port) that serves the registry's API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `registry/repository` with neither tag nor digest.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(reference: &str) -> String {
        Reference::parse(reference).unwrap().to_string()
    }

    #[test]
    fn short_names_are_docker_hub_names_as_containerd_reads_them() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("bitnami/nginx"), "docker.io/bitnami/nginx:latest");
        assert_eq!(full("index.docker.io/library/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(Reference::parse("busybox").unwrap().api_host(), "registry-1.docker.io");
    }

    #[test]
    fn other_registries_ports_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "team/app", Some("v1")));
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let r = Reference::parse(&format!("localhost/app@{digest}")).unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref(), r.manifest_reference()), ("localhost", None, digest.clone()));
        assert_eq!(full(&format!("quay.io/a/b:1@{digest}")), format!("quay.io/a/b:1@{digest}"));
        assert_eq!(Reference::parse("localhost:5000/app").unwrap().tag.as_deref(), Some("latest"));
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for bad in ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "-x", "busybox:-1", "host:5000/UPPER"] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
