//! The HTTP server: configuration, shared state, routes and start-up.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use store::Store;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::allocator::ServiceRanges;
use crate::metrics::{Metrics, TimedStore};
use crate::resources::Registry;
use crate::system_services::{self, SystemServices};
use crate::{discovery, health, model, objects, openapi, rest};

#[derive(Clone, Debug)]
pub struct Config {
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Events a watch may have queued for a slow client.
    pub watch_queue: usize,
    /// How long a watch with a full queue waits for its client before dropping
    /// it (the client then re-lists), as Kubernetes' watch cache does.
    pub slow_watcher_grace: Duration,
    /// Where Services get cluster IPs and node ports.
    pub service_ranges: ServiceRanges,
    /// Keep the `kubernetes` (and `kube-dns`) Services, as `r8s server` does;
    /// `None` leaves them out (most tests).
    pub system_services: Option<SystemServices>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(60),
            watch_queue: 1024,
            slow_watcher_grace: Duration::from_secs(10),
            service_ranges: ServiceRanges::default(),
            system_services: None,
        }
    }
}

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    /// For what the server proxies to node agents (`pods/log`).
    pub http: reqwest::Client,
    pub health_log: health::HealthLog,
}

pub type SharedState = Arc<AppState>;

/// The namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-node-lease", "kube-public"];

/// The router of the whole API, over `store`. Call [`bootstrap`] once per store
/// before serving.
pub fn router(store: Arc<dyn Store>, config: Config) -> Router {
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(TimedStore { inner: store, metrics: metrics.clone() });
    let state = Arc::new(AppState { store, registry: model::registry(), metrics, config, http: reqwest::Client::new(), health_log: Default::default() });
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(health::healthz))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/healthz/{check}", get(health::healthz_check))
        .route("/livez/{check}", get(health::livez_check))
        .route("/readyz/{check}", get(health::readyz_check))
        .route("/metrics", get(serve_metrics))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::groups))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*path}", get(openapi::document))
        .fallback(rest::handle)
        // Bodies are read by the handlers, with the limit and a Kubernetes error.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// Creates the system namespaces that do not exist yet.
pub async fn bootstrap(store: &dyn Store) -> Result<(), store::StoreError> {
    for name in SYSTEM_NAMESPACES {
        let namespace = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": objects::now_timestamp(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        let bytes = objects::to_store_bytes(&namespace).map_err(|e| store::StoreError::Internal(e.message))?;
        match store.create(&format!("/registry/namespaces/{name}"), bytes).await {
            Ok(_) | Err(store::StoreError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    crate::priority::bootstrap(store).await
}

/// Serves the API on `listener` until the future is dropped or fails.
pub async fn serve(store: Arc<dyn Store>, listener: TcpListener, config: Config) -> std::io::Result<()> {
    bootstrap(store.as_ref()).await.map_err(std::io::Error::other)?;
    let _system_services = match config.system_services.clone() {
        Some(wanted) => {
            let keeper = system_services::keep(listener.local_addr()?, wanted, config.service_ranges.clone());
            Some(AbortOnDrop(tokio::spawn(keeper)))
        }
        None => None,
    };
    axum::serve(listener, router(store, config)).await
}

/// Ends a background task with the server (also when its future is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn trace_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
    async move {
        let response = next.run(request).await;
        tracing::debug!(status = response.status().as_u16(), "done");
        response
    }
    .instrument(span)
    .await
}

async fn version() -> impl IntoResponse {
    axum::Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-r8s",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn serve_metrics(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
