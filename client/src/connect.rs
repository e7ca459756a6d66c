//! Building a client: from an API server URL (how the in-process components and
//! tests reach the server) or from a kubeconfig (how anything else does).

use std::time::Duration;

use kube::Client;

use crate::{Error, Result};

/// A client for the API server at `url` (e.g. `http://127.0.0.1:6443`), without
/// credentials.
pub fn from_url(url: &str) -> Result<Client> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
    let mut config = kube::Config::new(uri);
    // Watches are long-lived; requests that are not watches answer quickly.
    config.read_timeout = Some(Duration::from_secs(330));
    Ok(Client::try_from(config)?)
}

/// A client from the kubeconfig that `KUBECONFIG` or `~/.kube/config` names, or
/// from the in-cluster environment.
pub async fn from_kubeconfig() -> Result<Client> {
    let config = kube::Config::infer().await.map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}
