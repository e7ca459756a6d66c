//! `r8sctl version` and `r8sctl api-resources`.

use crate::printer::format_columns;
use crate::session::Session;

/// The Kubernetes version r8sctl speaks, as kubectl prints its own.
pub const CLIENT_VERSION: &str = concat!("v1.32.0-r8s.", env!("CARGO_PKG_VERSION"));

pub async fn version(session: &Session) -> anyhow::Result<()> {
    println!("Client Version: {CLIENT_VERSION}");
    let server = session.get("/version").await?;
    println!("Server Version: {}", server["gitVersion"].as_str().unwrap_or("unknown"));
    Ok(())
}

pub async fn api_resources(session: &Session) -> anyhow::Result<()> {
    let header: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"].map(String::from).to_vec();
    let mut resources = session.discovery().await?.all().to_vec();
    resources.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
    let rows: Vec<Vec<String>> = resources
        .iter()
        .map(|r| {
            vec![
                r.plural.clone(),
                r.short_names.join(","),
                r.api_version(),
                r.namespaced.to_string(),
                r.kind.clone(),
            ]
        })
        .collect();
    print!("{}", format_columns(&header, &rows));
    Ok(())
}
