//! One connection to a cluster: the kubeconfig it came from, the namespace the
//! user means, and plain HTTP calls that turn API errors into kubectl's wording.

use std::path::PathBuf;

use anyhow::Context as _;
use futures::{AsyncBufReadExt, Stream, StreamExt};
use http::{Method, Request};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::discovery::{ApiResource, Discovery};

/// Flags every command shares, as kubectl spells them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace for this request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// The content types the API server answers in.
pub const JSON: &str = "application/json";
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// An error the API server answered with a `Status`, printed as kubectl does.
#[derive(Debug, thiserror::Error)]
#[error("Error from server ({reason}): {message}")]
pub struct ServerError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ServerError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

pub struct Session {
    client: kube::Client,
    /// The API server's URL (for what is not a plain request: `exec`).
    pub server: http::Uri,
    /// The namespace from `-n`, else the context's, else `default`.
    pub namespace: String,
    discovery: OnceCell<Discovery>,
}

impl Session {
    pub async fn connect(args: &GlobalArgs) -> anyhow::Result<Self> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .context("no usable kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config")?,
        };
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(Session {
            server: config.cluster_url.clone(),
            client: kube::Client::try_from(config)?,
            namespace,
            discovery: OnceCell::new(),
        })
    }

    /// Sends one request and returns the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        accept: &str,
    ) -> anyhow::Result<Value> {
        let request = build_request(method, path, body, accept)?;
        let text = self.client.request_text(request).await.map_err(api_error)?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("the server's answer to {path} is not JSON"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None, JSON).await
    }

    /// Like `get`, but `None` for 404.
    pub async fn get_opt(&self, path: &str) -> anyhow::Result<Option<Value>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.downcast_ref::<ServerError>().is_some_and(ServerError::is_not_found) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn send_json(&self, method: Method, path: &str, content_type: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(method, path, Some((content_type, serde_json::to_vec(body)?)), JSON)
            .await
    }

    /// A watch: one JSON event per line, as long as the server keeps it open.
    pub async fn watch(&self, path: &str, accept: &str) -> anyhow::Result<impl Stream<Item = anyhow::Result<Value>>> {
        let request = build_request(Method::GET, path, None, accept)?;
        let reader = self.client.request_stream(request).await.map_err(api_error)?;
        Ok(reader.lines().map(|line| {
            let line = line.context("reading the watch stream")?;
            serde_json::from_str(&line).context("a watch event that is not JSON")
        }))
    }

    /// The cluster's resources, read once per command.
    pub async fn discovery(&self) -> anyhow::Result<&Discovery> {
        self.discovery.get_or_try_init(|| Discovery::load(self)).await
    }

    pub async fn resource(&self, name: &str) -> anyhow::Result<ApiResource> {
        self.discovery().await?.resolve(name).cloned()
    }

    /// The namespace an object of `resource` lives in, given what it says itself.
    pub fn namespace_for(&self, resource: &ApiResource, object: Option<&Value>) -> Option<String> {
        if !resource.namespaced {
            return None;
        }
        let own = object
            .and_then(|o| o.pointer("/metadata/namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        Some(own.unwrap_or(&self.namespace).to_string())
    }
}

fn build_request(method: Method, path: &str, body: Option<(&str, Vec<u8>)>, accept: &str) -> anyhow::Result<Request<Vec<u8>>> {
    let mut builder = Request::builder().method(method).uri(path).header(http::header::ACCEPT, accept);
    let body = match body {
        Some((content_type, bytes)) => {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Vec::new(),
    };
    Ok(builder.body(body)?)
}

fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => ServerError {
            code: status.code,
            reason: if status.reason.is_empty() { "Unknown".into() } else { status.reason.clone() },
            message: status.message.clone(),
        }
        .into(),
        other => anyhow::Error::new(other),
    }
}
