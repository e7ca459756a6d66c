//! `r8sctl wait --for=delete|condition=NAME[=VALUE]|jsonpath=TEMPLATE=VALUE`.

use std::time::Duration;

use serde_json::Value;

use crate::commands::delete::wait_until_gone;
use crate::jsonpath::Template;
use crate::session::Session;
use crate::targets;

#[derive(clap::Args)]
pub struct WaitArgs {
    /// TYPE NAME... or TYPE/NAME...
    #[arg(required = true)]
    resources: Vec<String>,
    /// `delete`, `condition=Ready`, `condition=Available=False`, `jsonpath={.status.phase}=Running`.
    #[arg(long = "for", required = true)]
    condition: WaitFor,
    /// How long to wait: `30s`, `5m`, `1h`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Clone, Debug)]
enum WaitFor {
    Delete,
    Condition { name: String, status: String },
    JsonPath { template: Template, value: String },
}

impl std::str::FromStr for WaitFor {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "delete" {
            return Ok(WaitFor::Delete);
        }
        if let Some(rest) = s.strip_prefix("condition=") {
            let (name, status) = rest.split_once('=').unwrap_or((rest, "True"));
            return Ok(WaitFor::Condition { name: name.to_string(), status: status.to_string() });
        }
        if let Some(rest) = s.strip_prefix("jsonpath=") {
            let close = rest.rfind('}').ok_or_else(|| anyhow::anyhow!("jsonpath wait format must be --for=jsonpath='{{JSONPath expression}}'=VALUE"))?;
            let value = rest[close + 1..].strip_prefix('=').unwrap_or_default();
            return Ok(WaitFor::JsonPath { template: rest[..=close].parse()?, value: value.to_string() });
        }
        anyhow::bail!("unrecognized condition: \"{s}\"")
    }
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| anyhow::anyhow!("invalid duration {s:?}"))?;
    Ok(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => anyhow::bail!("invalid duration {s:?}: use s, m or h"),
    }))
}

impl WaitFor {
    fn met_by(&self, object: &Value) -> anyhow::Result<bool> {
        Ok(match self {
            WaitFor::Delete => false,
            WaitFor::Condition { name, status } => object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(name)) && c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(status))),
            WaitFor::JsonPath { template, value } => template.render(object)? == *value,
        })
    }
}

pub async fn run(session: &Session, args: WaitArgs) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    for target in targets::named(session, &args.resources).await? {
        if let WaitFor::Delete = args.condition {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            wait_until_gone(session, &target, None, Some(left)).await?;
            println!("{} condition met", target.display());
            continue;
        }
        loop {
            if let Some(object) = session.get_opt(&target.path()).await? {
                if args.condition.met_by(&object)? {
                    println!("{} condition met", target.display());
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("timed out waiting for the condition on {}/{}", target.resource.plural, target.name);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_match_like_kubectl() {
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!("condition=Ready".parse::<WaitFor>().unwrap().met_by(&pod).unwrap());
        assert!("condition=ready".parse::<WaitFor>().unwrap().met_by(&pod).unwrap());
        assert!(!"condition=Ready=False".parse::<WaitFor>().unwrap().met_by(&pod).unwrap());
        assert!("jsonpath={.status.phase}=Running".parse::<WaitFor>().unwrap().met_by(&pod).unwrap());
        assert!("sometimes".parse::<WaitFor>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2d").is_err());
    }
}
