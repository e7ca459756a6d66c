//! `r8sctl describe`: an object in kubectl's generic describe layout
//! (`Name:`, `Namespace:`, `Labels:`, ... then the rest of the object as an
//! indented outline), followed by its events.

use serde_json::{Map, Value};

use crate::commands::get::encode;
use crate::printer::{format_columns, human_duration};
use crate::session::Session;
use crate::targets;

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// TYPE NAME... or TYPE/NAME...
    #[arg(required = true)]
    resources: Vec<String>,
}

pub async fn run(session: &Session, args: DescribeArgs) -> anyhow::Result<()> {
    let events = session.resource("events").await?;
    for (i, target) in targets::named(session, &args.resources).await?.into_iter().enumerate() {
        if i > 0 {
            println!("\n");
        }
        let object = session.get(&target.path()).await?;
        print!("{}", describe_object(&object));
        let metadata = &object["metadata"];
        let mut selector = format!("involvedObject.name={}", metadata["name"].as_str().unwrap_or_default());
        if let Some(ns) = metadata["namespace"].as_str() {
            selector.push_str(&format!(",involvedObject.namespace={ns}"));
        }
        if let Some(uid) = metadata["uid"].as_str() {
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let path = format!(
            "{}?fieldSelector={}",
            events.collection_path(target.namespace.as_deref()),
            encode(&selector)
        );
        let list = session.get(&path).await?;
        print!("{}", describe_events(list["items"].as_array().map_or(&[][..], Vec::as_slice), now()));
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn describe_object(object: &Value) -> String {
    let metadata = &object["metadata"];
    let mut out = String::new();
    field(&mut out, "Name", metadata["name"].as_str().unwrap_or_default());
    if let Some(ns) = metadata["namespace"].as_str() {
        field(&mut out, "Namespace", ns);
    }
    map_field(&mut out, "Labels", &metadata["labels"]);
    map_field(&mut out, "Annotations", &metadata["annotations"]);
    field(&mut out, "API Version", object["apiVersion"].as_str().unwrap_or_default());
    field(&mut out, "Kind", object["kind"].as_str().unwrap_or_default());
    let rest: Map<String, Value> = object
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind"))
        .map(|(k, v)| {
            let v = if k == "metadata" { without(v, &["name", "namespace", "labels", "annotations", "managedFields"]) } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    outline(&mut out, &Value::Object(rest), 0);
    out
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        for key in keys {
            map.remove(*key);
        }
    }
    v
}

fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("{:<14}{}\n", format!("{name}:"), value));
}

fn map_field(out: &mut String, name: &str, map: &Value) {
    let entries: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if entries.is_empty() {
        field(out, name, "<none>");
        return;
    }
    field(out, name, &entries[0]);
    for entry in &entries[1..] {
        // Continuation lines carry no name, aligned under the first value.
        out.push_str(&format!("{:14}{entry}\n", ""));
    }
}

/// `resourceVersion` → `Resource Version`, as kubectl's generic describer titles keys.
fn title(key: &str) -> String {
    let mut out = String::new();
    let mut previous_upper = true;
    for c in key.chars() {
        if out.is_empty() {
            out.extend(c.to_uppercase());
        } else {
            // A new word starts at an upper-case letter, but not inside an acronym (`podIP`).
            if c.is_uppercase() && !previous_upper {
                out.push(' ');
            }
            out.push(c);
        }
        previous_upper = c.is_uppercase();
    }
    out
}

fn outline(out: &mut String, value: &Value, depth: usize) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::Object(m) if m.is_empty() => {}
                    Value::Array(a) if a.is_empty() => {}
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{indent}{}:\n", title(key)));
                        outline(out, v, depth + 1);
                    }
                    scalar => out.push_str(&format!("{indent}{}:  {}\n", title(key), scalar_text(scalar))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => outline(out, item, depth),
                    scalar => out.push_str(&format!("{indent}{}\n", scalar_text(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{indent}{}\n", scalar_text(scalar))),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe_events(events: &[Value], now: i64) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".into();
    }
    let header: Vec<String> = ["Type", "Reason", "Age", "From", "Message"].map(String::from).to_vec();
    let mut rows = vec![header.iter().map(|h| "-".repeat(h.len())).collect::<Vec<_>>()];
    for e in events {
        let time = e["lastTimestamp"].as_str().or(e["eventTime"].as_str()).or(e["metadata"]["creationTimestamp"].as_str());
        let age = time.and_then(parse_rfc3339).map_or("<unknown>".into(), |t| human_duration(now - t));
        let from = e["source"]["component"].as_str().or(e["reportingComponent"].as_str()).unwrap_or_default();
        rows.push(vec![
            e["type"].as_str().unwrap_or_default().to_string(),
            e["reason"].as_str().unwrap_or_default().to_string(),
            age,
            from.to_string(),
            e["message"].as_str().unwrap_or_default().trim().to_string(),
        ]);
    }
    let table = format_columns(&header, &rows);
    let mut out = String::from("Events:\n");
    for line in table.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Seconds since the epoch of `2024-05-01T10:00:00Z` (the form Kubernetes writes).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + min * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_read_like_kubectls_generic_describe() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "resourceVersion": "7"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}
        });
        let text = describe_object(&pod);
        assert!(text.starts_with("Name:         web\nNamespace:    default\nLabels:       app=web\nAnnotations:  <none>\nAPI Version:  v1\nKind:         Pod\n"), "{text}");
        assert!(text.contains("Metadata:\n  Resource Version:  7\n"), "{text}");
        assert!(text.contains("Spec:\n  Containers:\n    Image:  busybox\n    Name:   c\n") || text.contains("    Image:  busybox\n"), "{text}");
        assert!(text.contains("  Node Name:  n1\n"), "{text}");
    }

    #[test]
    fn events_are_a_table_with_ages() {
        let events = [json!({"type": "Normal", "reason": "Scheduled", "lastTimestamp": "2024-05-01T10:00:00Z",
            "source": {"component": "default-scheduler"}, "message": "Successfully assigned default/web to n1"})];
        let now = parse_rfc3339("2024-05-01T10:00:42Z").unwrap();
        let text = describe_events(&events, now);
        assert_eq!(
            text,
            "Events:\n  Type     Reason      Age   From                Message\n  ----     ------      ---   ----                -------\n  Normal   Scheduled   42s   default-scheduler   Successfully assigned default/web to n1\n"
        );
        assert_eq!(describe_events(&[], now), "Events:       <none>\n");
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86401));
        assert_eq!(parse_rfc3339("2024-05-01T10:00:00.123456Z"), parse_rfc3339("2024-05-01T10:00:00Z"));
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
