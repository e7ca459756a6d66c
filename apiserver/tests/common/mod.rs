//! An API server on 127.0.0.1:0 over a MemStore, and a small HTTP client.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use store::mem::{MemStore, MemStoreConfig};

pub struct Server {
    pub base: String,
    pub store: Arc<MemStore>,
    pub client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> Server {
    start_with(apiserver::Config {
        bookmark_interval: Duration::from_millis(200),
        watch_queue: 64,
        slow_watcher_grace: Duration::from_millis(200),
        ..Default::default()
    })
    .await
}

pub async fn start_with(config: apiserver::Config) -> Server {
    let store = MemStore::with_config(MemStoreConfig { compaction_interval: None, ..Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    apiserver::bootstrap(store.as_ref()).await.expect("bootstrap");
    let router = apiserver::router(store.clone(), config);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { base, store, client: reqwest::Client::new(), task }
}

pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Server {
    pub async fn call(&self, method: &str, path: &str, content_type: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let code = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { code, body, headers }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, "", None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, "application/json", Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, "application/json", Some(body)).await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: Value) -> Reply {
        self.call("PATCH", path, content_type, Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> Reply {
        self.call("DELETE", path, "application/json", body).await
    }
}

pub fn pod(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    })
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}
        }
    })
}
