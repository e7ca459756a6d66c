//! `pods/exec` and `pods/attach`: a stream between a client and a container.
//! As Kubernetes' API server does, the server checks the pod and the container,
//! then passes the client's upgrade request (a WebSocket offering
//! `v5.channel.k8s.io` and older channel protocols, or SPDY) on to the agent of
//! the pod's node. Once the agent has switched protocols, the two connections
//! are spliced byte for byte: which protocol they speak is the agent's
//! business, and an agent's refusal reaches the client as a `Status`.

use axum::body::Body;
use axum::http::{header, HeaderName, Method, Request, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;

use super::proxy::{locate, AgentContainer};
use super::ApiRequest;
use crate::status::{ApiError, ApiResult};

/// Request headers that carry the protocol switch to the agent.
const UPGRADE_HEADERS: [HeaderName; 7] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    HeaderName::from_static("x-stream-protocol-version"),
];

/// The most of an agent's refusal that is read.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// `GET|POST pods/NAME/exec?command=..&container=&stdin=&stdout=&stderr=&tty=`
/// and `pods/NAME/attach`.
pub async fn stream(mut request: ApiRequest) -> ApiResult<Response> {
    let attach = request.target.subresource.as_deref() == Some("attach");
    // The agent serves both under the subresource's name.
    let endpoint = if attach { "attach" } else { "exec" };
    let target = locate(&request).await?;
    let phase = target.pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        let what = if attach { "attach to" } else { "exec into" };
        return Err(ApiError::bad_request(format!(
            "cannot {what} a container in a completed pod; current phase is {phase}"
        )));
    }
    let client_side = match request.upgrade.take() {
        Some(upgrade) if request.headers.contains_key(header::UPGRADE) => upgrade,
        _ => return Err(ApiError::bad_request("Upgrade request required")),
    };
    let mut reply = switch_agent(&request, &target, endpoint).await?;
    if reply.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = reply.status().as_u16();
        let refusal = axum::body::to_bytes(Body::new(reply.into_body()), MAX_REFUSAL_BYTES)
            .await
            .unwrap_or_default();
        return Err(ApiError::upstream(
            code,
            String::from_utf8_lossy(&refusal).trim(),
        ));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = reply.headers().clone();
    let agent_side = hyper::upgrade::on(&mut reply);
    tokio::spawn(async move {
        match tokio::try_join!(client_side, agent_side) {
            Ok((client, agent)) => {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(agent),
                )
                .await;
            }
            Err(error) => tracing::debug!(%error, endpoint, "stream not established"),
        }
    });
    Ok(response)
}

/// Sends the client's upgrade request on to the agent's `/exec/...` or
/// `/attach/...`; the agent's answer, 101 or a refusal.
async fn switch_agent(
    request: &ApiRequest,
    target: &AgentContainer,
    endpoint: &str,
) -> ApiResult<hyper::Response<hyper::body::Incoming>> {
    let unreachable = |error: &dyn std::fmt::Display| {
        ApiError::internal(format!("error dialing backend: {error}"))
    };
    let tcp = tokio::net::TcpStream::connect(&target.address)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(connection.with_upgrades());
    let mut upstream = Request::builder()
        .method(Method::GET)
        .uri(format!("/{endpoint}/{}?{}", target.path, target.query))
        .header(header::HOST, &target.address);
    for name in UPGRADE_HEADERS {
        for value in request.headers.get_all(&name) {
            upstream = upstream.header(&name, value);
        }
    }
    let upstream = upstream.body(Body::empty()).map_err(ApiError::internal)?;
    sender
        .send_request(upstream)
        .await
        .map_err(|e| unreachable(&e))
}
