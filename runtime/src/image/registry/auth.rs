//! Registry authentication: the credentials CRI's AuthConfig carries, the
//! `WWW-Authenticate` challenge a registry answers 401 with, and the token
//! a Bearer challenge's realm hands out (Docker's token and OAuth2 flows).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

/// Credentials for one registry. Every field may be empty (anonymous pull).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    pub identity_token: String,
    /// A bearer token sent to the registry as it is.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid registry auth: {0}")]
pub struct BadAuth(String);

impl Credentials {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: password.into(), ..Default::default() }
    }

    /// Credentials from the `auth` field of a docker config (base64 of
    /// `user:password`), used when no username is given separately.
    pub fn from_auth_field(auth: &str) -> Result<Self, BadAuth> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| BadAuth(format!("auth is not base64: {e}")))?;
        let decoded = String::from_utf8(decoded).map_err(|_| BadAuth("auth is not UTF-8".into()))?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| BadAuth("auth is not user:password".into()))?;
        Ok(Self::basic(username, password))
    }

    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty() && self.identity_token.is_empty() && self.registry_token.is_empty()
    }

    /// The `Authorization` value for a registry that asks for Basic auth.
    pub fn basic_header(&self) -> Option<String> {
        (!self.username.is_empty()).then(|| {
            let pair = format!("{}:{}", self.username, self.password);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        })
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = HashMap::new();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    // A quoted value may hold commas ("pull,push") and \-escapes.
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let end = loop {
                        match chars.next()? {
                            (i, '"') => break i,
                            (_, '\\') => value.push(chars.next()?.1),
                            (_, c) => value.push(c),
                        }
                    };
                    (value, &quoted[end + 1..])
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (after[..end].trim().to_string(), &after[end..])
                }
            };
            params.insert(key.trim().to_ascii_lowercase(), value);
            rest = after.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self { scheme: scheme.to_ascii_lowercase(), params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// What a token endpoint answers (Docker's `token`, OAuth2's `access_token`).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        [self.token, self.access_token].into_iter().find(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull,push"));
        let basic = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((basic.scheme.as_str(), basic.param("realm")), ("basic", Some("Registry Realm")));
        assert_eq!(Challenge::parse("Bearer realm=\"unterminated"), None);
    }

    #[test]
    fn docker_config_auth_fields_decode_and_secrets_stay_out_of_debug() {
        let creds = Credentials::from_auth_field("YWxpY2U6cyNjcjN0OndpdGg6Y29sb25z").unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("alice", "s#cr3t:with:colons"));
        assert!(!format!("{creds:?}").contains("s#cr3t"));
        assert_eq!(creds.basic_header().unwrap(), "Basic YWxpY2U6cyNjcjN0OndpdGg6Y29sb25z");
        assert!(Credentials::from_auth_field("not base64!").is_err());
        assert!(Credentials::default().is_anonymous());
    }
}
