//! `r8sctl exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]`: runs a
//! command in a container through the API server's `pods/exec`, a WebSocket
//! speaking `v5.channel.k8s.io` (one byte of channel before each frame: 0
//! stdin, 1 stdout, 2 stderr, 3 the exit status, 255 close), and exits with
//! the command's status, as kubectl does.

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::session::{ServerError, Session};

const PROTOCOL: &str = "v5.channel.k8s.io";
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The pod.
    pod: String,
    /// The container (default: the pod's default-container annotation, else its first).
    #[arg(short, long)]
    container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs the command; exits the process with its status when it fails.
pub async fn run(session: &Session, args: ExecArgs) -> anyhow::Result<()> {
    let namespace = &session.namespace;
    let pod_path = format!("/api/v1/namespaces/{namespace}/pods/{}", args.pod);
    let pod = session.get(&pod_path).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    let container = args.container.clone().map_or_else(|| default_container(&pod), Ok)?;
    let mut query: Vec<(&str, &str)> = args.command.iter().map(|c| ("command", c.as_str())).collect();
    query.extend([("container", container.as_str()), ("stdout", "true"), ("stderr", if args.tty { "false" } else { "true" })]);
    query.extend([("stdin", if args.stdin { "true" } else { "false" }), ("tty", if args.tty { "true" } else { "false" })]);
    let server = session.server.to_string();
    let Some(base) = server.strip_prefix("http://") else {
        bail!("r8sctl exec speaks plain HTTP only; {server} needs TLS (use kubectl exec)");
    };
    let url = format!("ws://{}{pod_path}/exec?{}", base.trim_end_matches('/'), serde_urlencoded::to_string(&query)?);
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", PROTOCOL.parse()?);
    let socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(WsError::Http(response)) => return Err(refusal(response.status().as_u16(), response.body().as_deref().unwrap_or_default()).into()),
        Err(error) => return Err(error).context("connecting to the exec stream"),
    };
    let (mut to_server, mut from_server) = socket.split();
    let stdin = async {
        if !args.stdin {
            return std::future::pending().await;
        }
        let mut input = tokio::io::stdin();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let read = input.read(&mut buffer[1..]).await.unwrap_or(0);
            if read == 0 {
                // v5: tell the server that stdin is closed.
                let _ = to_server.send(Message::Binary(vec![255, 0].into())).await;
                return std::future::pending().await;
            }
            if to_server.send(Message::Binary(buffer[..=read].to_vec().into())).await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    let output = async {
        let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
        let mut status = Value::Null;
        while let Some(message) = from_server.next().await {
            let Message::Binary(bytes) = message.context("reading the exec stream")? else { continue };
            match bytes.split_first() {
                Some((1, data)) => stdout.write_all(data).await?,
                Some((2, data)) => stderr.write_all(data).await?,
                Some((3, data)) => status = serde_json::from_slice(data).unwrap_or_default(),
                _ => {}
            }
        }
        stdout.flush().await?;
        stderr.flush().await?;
        anyhow::Ok(status)
    };
    let status = tokio::select! {
        status = output => status?,
        () = stdin => unreachable!("stdin never ends the exec"),
    };
    match exit_code(&status) {
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code),
        Err(message) => bail!("{message}"),
    }
}

/// The annotated default container, else the first one.
fn default_container(pod: &Value) -> anyhow::Result<String> {
    if let Some(name) = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str() {
        return Ok(name.to_string());
    }
    pod["spec"]["containers"][0]["name"].as_str().map(str::to_string).context("the pod has no containers")
}

/// The command's exit code from the status frame; the message of any other failure.
fn exit_code(status: &Value) -> Result<i32, String> {
    match (status["status"].as_str(), status["reason"].as_str()) {
        (Some("Success") | None, _) => Ok(0),
        (_, Some("NonZeroExitCode")) => {
            let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
            let code = causes.iter().find(|c| c["reason"] == "ExitCode").and_then(|c| c["message"].as_str()?.parse().ok());
            Ok(code.unwrap_or(1))
        }
        _ => Err(status["message"].as_str().unwrap_or("the command failed").to_string()),
    }
}

/// A refused upgrade: the server's `Status`, as other commands show it.
fn refusal(code: u16, body: &[u8]) -> ServerError {
    let status: Value = serde_json::from_slice(body).unwrap_or_default();
    ServerError {
        code,
        reason: status["reason"].as_str().unwrap_or("Unknown").to_string(),
        message: status["message"].as_str().map_or_else(|| String::from_utf8_lossy(body).trim().to_string(), str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_codes_come_from_the_status_frame() {
        assert_eq!(exit_code(&json!({"status": "Success"})), Ok(0));
        let failed = json!({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_code(&failed), Ok(3));
        assert_eq!(exit_code(&json!({"status": "Failure", "reason": "InternalError", "message": "boom"})), Err("boom".into()));
    }
}
