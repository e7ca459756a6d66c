//! One repository on one registry over the distribution API: manifests and
//! blobs by GET, authenticating on the first 401 (Basic, or a Bearer token
//! from the challenge's realm) and reusing that for the rest of the pull.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use tokio::sync::Mutex;

use super::auth::{Challenge, Credentials, TokenResponse};
use super::{PullError, Reference};

/// One client for every pull: it pools connections and loads the system's
/// CA certificates once.
fn http() -> Result<&'static reqwest::Client, PullError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("r8s/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // No overall timeout: a big layer takes as long as it takes, but a
        // registry that stops sending is given up on.
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| PullError::Registry { registry: String::new(), reason: format!("making an HTTP client: {e}") })?;
    Ok(CLIENT.get_or_init(|| client))
}

pub struct Session {
    /// `http://host:port` or `https://host`.
    base: String,
    registry: String,
    repository: String,
    credentials: Credentials,
    /// The `Authorization` value that worked, sent with every later request.
    authorization: Mutex<Option<String>>,
}

impl Session {
    pub fn new(reference: &Reference, credentials: Credentials, plain_http: bool) -> Self {
        let scheme = if plain_http { "http" } else { "https" };
        Self {
            base: format!("{scheme}://{}", reference.api_host()),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// GET `/v2/<repository>/<path>`; a 2xx response, else an error that names
    /// the registry (401, 403) or `what` (404).
    pub async fn get(&self, path: &str, accept: &str, what: &str) -> Result<Response, PullError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        let mut authenticated = false;
        loop {
            let mut request = http()?.get(&url).header(ACCEPT, accept);
            if let Some(value) = self.authorization.lock().await.as_deref() {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(|e| self.unreachable(e))?;
            match response.status() {
                status if status.is_success() => return Ok(response),
                StatusCode::UNAUTHORIZED if !authenticated => {
                    let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(Challenge::parse);
                    let challenge = challenge.ok_or_else(|| self.unauthenticated("it answered 401 without a usable WWW-Authenticate challenge"))?;
                    let value = self.authorize(&challenge).await?;
                    *self.authorization.lock().await = Some(value);
                    authenticated = true;
                }
                StatusCode::UNAUTHORIZED => {
                    let reason = if self.credentials.is_anonymous() {
                        "it requires credentials and none were given (401 Unauthorized)"
                    } else {
                        "it refused the credentials (401 Unauthorized)"
                    };
                    return Err(self.unauthenticated(reason));
                }
                StatusCode::FORBIDDEN => {
                    return Err(PullError::Denied { registry: self.registry.clone(), reason: format!("access to {what} denied (403 Forbidden)") })
                }
                StatusCode::NOT_FOUND => return Err(PullError::NotFound { what: what.to_string() }),
                status => {
                    let body = response.text().await.unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    return Err(PullError::Registry { registry: self.registry.clone(), reason: format!("GET {url}: {status}: {}", body.trim()) });
                }
            }
        }
    }

    /// The `Authorization` value that answers `challenge`.
    async fn authorize(&self, challenge: &Challenge) -> Result<String, PullError> {
        match challenge.scheme.as_str() {
            "basic" => self.credentials.basic_header().ok_or_else(|| self.unauthenticated("it requires credentials and none were given (Basic)")),
            "bearer" if !self.credentials.registry_token.is_empty() => Ok(format!("Bearer {}", self.credentials.registry_token)),
            "bearer" => Ok(format!("Bearer {}", self.fetch_token(challenge).await?)),
            other => Err(self.unauthenticated(&format!("it asks for the unsupported auth scheme {other:?}"))),
        }
    }

    /// A token from the challenge's realm: GET with Basic credentials (or
    /// none), or, holding an identity token, the OAuth2 refresh-token POST.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<String, PullError> {
        let realm = challenge.param("realm").ok_or_else(|| self.unauthenticated("its Bearer challenge names no realm"))?;
        let default_scope = format!("repository:{}:pull", self.repository);
        let scope = challenge.param("scope").unwrap_or(&default_scope);
        let service = challenge.param("service").unwrap_or_default();
        let request = if self.credentials.identity_token.is_empty() {
            let mut request = http()?.get(realm).query(&[("service", service), ("scope", scope)]);
            if let Some(value) = self.credentials.basic_header() {
                request = request.header(AUTHORIZATION, value);
            }
            request
        } else {
            http()?.post(realm).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.credentials.identity_token.as_str()),
                ("service", service),
                ("scope", scope),
                ("client_id", "r8s"),
            ])
        };
        let response = request.send().await.map_err(|e| self.unauthenticated(&format!("its token endpoint {realm} is unreachable: {e}")))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthenticated(&format!("its token endpoint {realm} refused the credentials ({})", response.status())))
            }
            status => return Err(self.unauthenticated(&format!("its token endpoint {realm} answered {status}"))),
        }
        let token: TokenResponse =
            response.json().await.map_err(|e| self.unauthenticated(&format!("its token endpoint {realm} sent no token: {e}")))?;
        token.into_token().ok_or_else(|| self.unauthenticated(&format!("its token endpoint {realm} sent an empty token")))
    }

    fn unauthenticated(&self, reason: &str) -> PullError {
        PullError::Unauthenticated { registry: self.registry.clone(), reason: reason.to_string() }
    }

    fn unreachable(&self, error: reqwest::Error) -> PullError {
        // reqwest's message alone hides the cause (connection refused, TLS).
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        PullError::Registry { registry: self.registry.clone(), reason }
    }
}

/// The media type a response says it holds, without parameters.
pub fn content_type(response: &Response) -> String {
    let value = response.headers().get(CONTENT_TYPE).map(HeaderValue::to_str);
    let value = value.and_then(Result::ok).unwrap_or_default();
    value.split(';').next().unwrap_or_default().trim().to_string()
}
