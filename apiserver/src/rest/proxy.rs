//! `pods/log`: proxied to the node agent of the pod's node (its kubelet port),
//! streamed back as it comes. The container and agent lookups here serve
//! `pods/exec` too (see `stream`).

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{get_object, store_error, ApiRequest};
use crate::objects;
use crate::status::{ApiError, ApiResult, QualifiedResource};

/// The agent port when a node does not say (the kubelet's).
const DEFAULT_AGENT_PORT: i64 = 10250;

/// The annotation naming the container that commands default to (kubectl reads it too).
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The container a request means: the one named, else the one the pod's
/// default-container annotation names, else the pod's only one.
fn container_name(pod: &Value, requested: Option<String>) -> ApiResult<String> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let pod_name = objects::name(pod);
    let annotated = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str().filter(|name| names.contains(name));
    match requested.filter(|c| !c.is_empty()) {
        Some(name) if names.contains(&name.as_str()) => Ok(name),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None => match (annotated, names.as_slice()) {
            (Some(default), _) | (None, &[default]) => Ok(default.to_string()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
    }
}

/// The address of a node's agent: its InternalIP and kubelet endpoint port.
async fn agent_address(request: &ApiRequest, node_name: &str) -> ApiResult<String> {
    let nodes = QualifiedResource::new("", "nodes");
    let kv = request
        .state
        .store
        .get(&format!("/registry/nodes/{node_name}"), None)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(&nodes, node_name))?;
    let node = objects::from_kv(&kv)?;
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str()))
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().unwrap_or(DEFAULT_AGENT_PORT);
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    Ok(format!("{host}:{port}"))
}

/// A container of a pod, as the agent of the pod's node serves it.
pub(super) struct AgentContainer {
    pub pod: Value,
    /// `host:port` of the agent.
    pub address: String,
    /// `{namespace}/{pod}/{container}`, as the agent's paths end.
    pub path: String,
    /// The request's query without `container`, passed on to the agent.
    pub query: String,
}

/// Finds the pod (404), its container (400) and its node's agent.
pub(super) async fn locate(request: &ApiRequest) -> ApiResult<AgentContainer> {
    let name = request.target.object_name().to_string();
    let (_, pod) = get_object(request, &name).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&request.query).unwrap_or_default();
    let requested = pairs.iter().find(|(key, _)| key == "container").map(|(_, value)| value.clone());
    let container = container_name(&pod, requested)?;
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    let address = agent_address(request, node).await?;
    let namespace = request.target.namespace.clone().unwrap_or_default();
    let passed_on: Vec<(String, String)> = pairs.into_iter().filter(|(key, _)| key != "container").collect();
    let query = serde_urlencoded::to_string(&passed_on).unwrap_or_default();
    Ok(AgentContainer { pod, address, path: format!("{namespace}/{name}/{container}"), query })
}

/// `GET pods/NAME/log?container=&follow=&tailLines=&...`.
pub async fn logs(request: ApiRequest) -> ApiResult<Response> {
    let target = locate(&request).await?;
    let url = format!("http://{}/containerLogs/{}?{}", target.address, target.path, target.query);
    let reply = request
        .state
        .http
        .get(&url)
        .send()
        .await
        .map_err(|error| ApiError::internal(format!("Get \"{url}\": {error}")))?;
    let status = reply.status();
    if !status.is_success() {
        let message = reply.text().await.unwrap_or_default();
        return Err(ApiError::upstream(status.as_u16(), message.trim()));
    }
    let body = Body::from_stream(reply.bytes_stream());
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_container() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(container_name(&one, None).unwrap(), "app");
        assert_eq!(container_name(&one, Some("app".into())).unwrap(), "app");
        assert_eq!(container_name(&one, Some("nope".into())).unwrap_err().code, 400);
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            container_name(&two, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let annotated = json!({"metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER: "b"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(container_name(&annotated, None).unwrap(), "b");
    }
}
