//! `Table` responses (Accept `application/json;as=Table;v=v1;g=meta.k8s.io`):
//! the columns `kubectl get` prints, per resource.

use serde_json::{json, Value};

use crate::resources::ResourceType;
use crate::rest::Params;
use crate::status::ApiResult;

/// A column: its name, JSON type, and priority (0 always shown, 1 with `-o wide`).
struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
}

const fn column(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column { name, kind, priority }
}

const NAME: Column = column("Name", "string", 0);
const AGE: Column = column("Age", "string", 0);

fn columns(plural: &str) -> Vec<Column> {
    match plural {
        "pods" => vec![
            NAME,
            column("Ready", "string", 0),
            column("Status", "string", 0),
            column("Restarts", "string", 0),
            AGE,
            column("IP", "string", 1),
            column("Node", "string", 1),
            column("Nominated Node", "string", 1),
            column("Readiness Gates", "string", 1),
        ],
        "deployments" => vec![
            NAME,
            column("Ready", "string", 0),
            column("Up-to-date", "integer", 0),
            column("Available", "integer", 0),
            AGE,
            column("Containers", "string", 1),
            column("Images", "string", 1),
            column("Selector", "string", 1),
        ],
        "replicasets" => vec![
            NAME,
            column("Desired", "integer", 0),
            column("Current", "integer", 0),
            column("Ready", "integer", 0),
            AGE,
            column("Containers", "string", 1),
            column("Images", "string", 1),
            column("Selector", "string", 1),
        ],
        "nodes" => vec![
            NAME,
            column("Status", "string", 0),
            column("Roles", "string", 0),
            AGE,
            column("Version", "string", 0),
            column("Internal-IP", "string", 1),
            column("OS-Image", "string", 1),
            column("Kernel-Version", "string", 1),
            column("Container-Runtime", "string", 1),
        ],
        "services" => vec![
            NAME,
            column("Type", "string", 0),
            column("Cluster-IP", "string", 0),
            column("External-IP", "string", 0),
            column("Port(s)", "string", 0),
            AGE,
            column("Selector", "string", 1),
        ],
        "daemonsets" => vec![
            NAME,
            column("Desired", "integer", 0),
            column("Current", "integer", 0),
            column("Ready", "integer", 0),
            column("Up-to-date", "integer", 0),
            column("Available", "integer", 0),
            column("Node Selector", "string", 0),
            AGE,
            column("Containers", "string", 1),
            column("Images", "string", 1),
            column("Selector", "string", 1),
        ],
        "jobs" => vec![
            NAME,
            column("Status", "string", 0),
            column("Completions", "string", 0),
            column("Duration", "string", 0),
            AGE,
            column("Containers", "string", 1),
            column("Images", "string", 1),
            column("Selector", "string", 1),
        ],
        "leases" => vec![NAME, column("Holder", "string", 0), AGE],
        "serviceaccounts" => vec![NAME, column("Secrets", "integer", 0), AGE],
        "endpoints" => vec![NAME, column("Endpoints", "string", 0), AGE],
        "namespaces" => vec![NAME, column("Status", "string", 0), AGE],
        "events" => vec![
            column("Last Seen", "string", 0),
            column("Type", "string", 0),
            column("Reason", "string", 0),
            column("Object", "string", 0),
            column("Message", "string", 0),
        ],
        "configmaps" => vec![NAME, column("Data", "integer", 0), AGE],
        "secrets" => vec![NAME, column("Type", "string", 0), column("Data", "integer", 0), AGE],
        _ => vec![NAME, AGE],
    }
}

/// The cells of one object's row, in the order of [`columns`].
fn cells(plural: &str, object: &Value) -> Vec<Value> {
    let name = json!(object["metadata"]["name"].as_str().unwrap_or(""));
    let age = json!(age(object["metadata"]["creationTimestamp"].as_str()));
    let spec = &object["spec"];
    let status = &object["status"];
    let int = |value: &Value| json!(value.as_i64().unwrap_or(0));
    match plural {
        "pods" => {
            let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|s| s["restartCount"].as_i64().unwrap_or(0)).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(object)),
                json!(restarts.to_string()),
                age,
                json!(status["podIP"].as_str().unwrap_or("<none>")),
                json!(spec["nodeName"].as_str().unwrap_or("<none>")),
                json!(status["nominatedNodeName"].as_str().unwrap_or("<none>")),
                json!("<none>"),
            ]
        }
        "deployments" => vec![
            name,
            json!(format!("{}/{}", status["readyReplicas"].as_i64().unwrap_or(0), spec["replicas"].as_i64().unwrap_or(0))),
            int(&status["updatedReplicas"]),
            int(&status["availableReplicas"]),
            age,
            json!(container_field(spec, "name")),
            json!(container_field(spec, "image")),
            json!(selector(spec)),
        ],
        "replicasets" => vec![
            name,
            int(&spec["replicas"]),
            int(&status["replicas"]),
            int(&status["readyReplicas"]),
            age,
            json!(container_field(spec, "name")),
            json!(container_field(spec, "image")),
            json!(selector(spec)),
        ],
        "nodes" => {
            let info = &status["nodeInfo"];
            let internal_ip = status["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>");
            vec![
                name,
                json!(node_status(object)),
                json!(node_roles(object)),
                age,
                json!(info["kubeletVersion"].as_str().unwrap_or("")),
                json!(internal_ip),
                json!(info["osImage"].as_str().unwrap_or("<unknown>")),
                json!(info["kernelVersion"].as_str().unwrap_or("<unknown>")),
                json!(info["containerRuntimeVersion"].as_str().unwrap_or("<unknown>")),
            ]
        }
        "services" => vec![
            name,
            json!(spec["type"].as_str().unwrap_or("ClusterIP")),
            json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
            json!(external_ips(object)),
            json!(service_ports(spec)),
            age,
            json!(map_string(&spec["selector"]).unwrap_or_else(|| "<none>".into())),
        ],
        "daemonsets" => vec![
            name,
            int(&status["desiredNumberScheduled"]),
            int(&status["currentNumberScheduled"]),
            int(&status["numberReady"]),
            int(&status["updatedNumberScheduled"]),
            int(&status["numberAvailable"]),
            json!(map_string(&spec["template"]["spec"]["nodeSelector"]).unwrap_or_else(|| "<none>".into())),
            age,
            json!(container_field(spec, "name")),
            json!(container_field(spec, "image")),
            json!(selector(spec)),
        ],
        "jobs" => vec![
            name,
            json!(job_status(status)),
            json!(format!("{}/{}", status["succeeded"].as_i64().unwrap_or(0), spec["completions"].as_i64().unwrap_or(1))),
            json!(job_duration(status)),
            age,
            json!(container_field(spec, "name")),
            json!(container_field(spec, "image")),
            json!(selector(spec)),
        ],
        "leases" => vec![name, json!(spec["holderIdentity"].as_str().unwrap_or("")), age],
        "serviceaccounts" => vec![name, json!(object["secrets"].as_array().map_or(0, Vec::len)), age],
        "endpoints" => vec![name, json!(endpoints(object)), age],
        "namespaces" => vec![name, json!(status["phase"].as_str().unwrap_or("Active")), age],
        "events" => {
            let last = object["lastTimestamp"].as_str().or(object["eventTime"].as_str()).or(object["metadata"]["creationTimestamp"].as_str());
            let involved = &object["involvedObject"];
            vec![
                json!(self::age(last)),
                json!(object["type"].as_str().unwrap_or("")),
                json!(object["reason"].as_str().unwrap_or("")),
                json!(format!(
                    "{}/{}",
                    involved["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                    involved["name"].as_str().unwrap_or("")
                )),
                json!(object["message"].as_str().unwrap_or("")),
            ]
        }
        "configmaps" => {
            let count = |v: &Value| v.as_object().map_or(0, |m| m.len());
            vec![name, json!(count(&object["data"]) + count(&object["binaryData"])), age]
        }
        "secrets" => vec![
            name,
            json!(object["type"].as_str().unwrap_or("Opaque")),
            json!(object["data"].as_object().map_or(0, |m| m.len())),
            age,
        ],
        _ => vec![name, age],
    }
}

/// What `kubectl get pods` shows as STATUS.
fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    let status = &pod["status"];
    let mut reason = status["reason"].as_str().or(status["phase"].as_str()).unwrap_or("Pending").to_string();
    for container in status["containerStatuses"].as_array().into_iter().flatten() {
        let state = &container["state"];
        if let Some(waiting) = state["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = waiting.to_string();
        } else if let Some(terminated) = state["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
            reason = terminated.to_string();
        }
    }
    reason
}

/// A job's STATUS: its finished condition, else Suspended or Running.
fn job_status(status: &Value) -> &'static str {
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let holds = |kind: &str| conditions.iter().any(|c| c["type"] == kind && c["status"] == "True");
    if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

fn job_duration(status: &Value) -> String {
    let parse = |field: &str| status[field].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let Some(start) = parse("startTime") else { return String::new() };
    let end = parse("completionTime").map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
    human_duration((end - start.with_timezone(&chrono::Utc)).num_seconds().max(0))
}

/// `10.0.0.5:80,10.0.0.6:80`, as kubectl shows Endpoints (at most three, then `+ N more...`).
fn endpoints(object: &Value) -> String {
    let mut all = Vec::new();
    for subset in object["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = subset["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect();
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or("");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            all.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

fn node_status(node: &Value) -> String {
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut status = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .map(|labels| labels.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).collect())
        .unwrap_or_default();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn external_ips(service: &Value) -> String {
    let mut ips: Vec<String> = service["spec"]["externalIPs"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    for ingress in service["status"]["loadBalancer"]["ingress"].as_array().into_iter().flatten() {
        if let Some(ip) = ingress["ip"].as_str().or(ingress["hostname"].as_str()) {
            ips.push(ip.to_string());
        }
    }
    match (ips.is_empty(), service["spec"]["type"].as_str()) {
        (true, Some("LoadBalancer")) => "<pending>".into(),
        (true, _) => "<none>".into(),
        (false, _) => ips.join(","),
    }
}

fn service_ports(spec: &Value) -> String {
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn container_field(spec: &Value, field: &str) -> String {
    spec["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c[field].as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn selector(spec: &Value) -> String {
    map_string(&spec["selector"]["matchLabels"]).unwrap_or_else(|| "<none>".into())
}

/// `a=1,b=2` for a map of strings.
fn map_string(value: &Value) -> Option<String> {
    let map = value.as_object().filter(|m| !m.is_empty())?;
    Some(map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
}

/// Age since a timestamp, as kubectl prints it (Kubernetes' HumanDuration).
fn age(timestamp: Option<&str>) -> String {
    let Some(created) = timestamp.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let seconds = (chrono::Utc::now() - created.with_timezone(&chrono::Utc)).num_seconds().max(0);
    human_duration(seconds)
}

fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

fn row(resource: &ResourceType, object: &Value, params: &Params) -> Value {
    let mut row = json!({"cells": cells(&resource.plural, object)});
    match params.include_object.as_deref() {
        Some("None") => {}
        Some("Object") => row["object"] = object.clone(),
        _ => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            })
        }
    }
    row
}

/// The `Table` of an object or of a list.
pub fn render(resource: &ResourceType, value: &Value, params: &Params) -> ApiResult<Value> {
    let definitions: Vec<Value> = columns(&resource.plural)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": c.priority,
            })
        })
        .collect();
    let (rows, metadata) = match value["items"].as_array() {
        Some(items) => {
            let rows: Vec<Value> = items.iter().map(|item| row(resource, item, params)).collect();
            let mut metadata = json!({"resourceVersion": value["metadata"]["resourceVersion"]});
            if let Some(token) = value["metadata"]["continue"].as_str() {
                metadata["continue"] = json!(token);
            }
            (rows, metadata)
        }
        None => (vec![row(resource, value, params)], json!({"resourceVersion": value["metadata"]["resourceVersion"]})),
    };
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(60 * 30), "30m");
        assert_eq!(human_duration(3600 * 5 + 60 * 7), "5h7m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86400 * 3 + 3600), "3d1h");
        assert_eq!(human_duration(86400 * 100), "100d");
    }

    #[test]
    fn pod_rows() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let cells = cells("pods", &pod);
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
    }

    #[test]
    fn every_row_fills_its_columns() {
        let empty = json!({"metadata": {"name": "x"}});
        for plural in ["pods", "deployments", "replicasets", "daemonsets", "jobs", "nodes", "services", "namespaces",
            "events", "configmaps", "secrets", "leases", "serviceaccounts", "endpoints", "others"] {
            assert_eq!(cells(plural, &empty).len(), columns(plural).len(), "{plural}");
        }
    }

    #[test]
    fn endpoints_and_jobs() {
        let endpoints_object = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(endpoints(&endpoints_object), "10.0.0.1:80,10.0.0.1:443,10.0.0.2:80 + 1 more...");
        assert_eq!(job_status(&json!({"conditions": [{"type": "Complete", "status": "True"}]})), "Complete");
        assert_eq!(job_status(&json!({})), "Running");
        assert_eq!(job_duration(&json!({"startTime": "2020-01-01T00:00:00Z", "completionTime": "2020-01-01T00:00:30Z"})), "30s");
    }

    #[test]
    fn service_rows() {
        let service = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let cells = cells("services", &service);
        assert_eq!(cells[1], "NodePort");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30080/TCP,53/UDP");
    }
}
