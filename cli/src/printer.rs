//! Output as kubectl prints it: aligned columns, YAML, JSON, `type/name`, and
//! JSONPath templates.

use serde_json::Value;

use crate::jsonpath::Template;

/// The `-o` flag.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputFormat {
    /// The server's table, priority-0 columns.
    Table,
    /// Every column of the table.
    Wide,
    Yaml,
    Json,
    /// `pod/web-1`.
    Name,
    JsonPath(Template),
}

impl std::str::FromStr for OutputFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "wide" => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            "name" => OutputFormat::Name,
            _ => match s.strip_prefix("jsonpath=") {
                Some(template) => OutputFormat::JsonPath(template.parse()?),
                None => anyhow::bail!(
                    "unable to match a printer suitable for the output format \"{s}\", allowed formats are: json,jsonpath,name,wide,yaml"
                ),
            },
        })
    }
}

/// Columns separated by three spaces, as kubectl's tabwriter does.
pub fn format_columns(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for line in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let last = line.len().saturating_sub(1);
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// A `meta.k8s.io/v1` `Table` from the server, turned into header and rows.
pub struct TableView {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TableView {
    /// `wide` keeps columns of every priority; `namespace_column` puts each
    /// row's namespace first (for `-A`).
    pub fn from_table(table: &Value, wide: bool, namespace_column: bool) -> Self {
        let columns: Vec<(usize, String)> = table["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
            .map(|(i, c)| (i, c["name"].as_str().unwrap_or_default().to_uppercase()))
            .collect();
        let mut header: Vec<String> = columns.iter().map(|(_, name)| name.clone()).collect();
        if namespace_column {
            header.insert(0, "NAMESPACE".into());
        }
        let rows = table["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                let mut cells: Vec<String> = columns.iter().map(|(i, _)| cell_text(&row["cells"][*i])).collect();
                if namespace_column {
                    let ns = row["object"]["metadata"]["namespace"].as_str().unwrap_or_default();
                    cells.insert(0, ns.to_string());
                }
                cells
            })
            .collect();
        TableView { header, rows }
    }
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn to_yaml(value: &Value) -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(value)?)
}

/// JSON with four-space indents, as kubectl prints it.
pub fn to_json(value: &Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer)?;
    out.push(b'\n');
    Ok(String::from_utf8(out)?)
}

/// Many objects as kubectl's `-o yaml|json` shows them: one object alone, or a `List`.
pub fn as_list(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// The `human` form of an age (`5s`, `3m12s`, `2d4h`), as Kubernetes'
/// `duration.HumanDuration` prints it.
pub fn human_duration(seconds: i64) -> String {
    fn pair(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    }
    let s = seconds.max(0);
    let (minutes, hours, days) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if minutes < 10 => pair(minutes, "m", s % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => pair(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => pair(days, "d", hours % 24, "h"),
        _ if days < 365 * 2 => format!("{days}d"),
        _ if days < 365 * 8 => pair(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_like_kubectl() {
        let out = format_columns(
            &["NAME".into(), "READY".into(), "STATUS".into()],
            &[vec!["web-1".into(), "1/1".into(), "Running".into()], vec!["a".into(), "0/1".into(), "Pending".into()]],
        );
        assert_eq!(out, "NAME    READY   STATUS\nweb-1   1/1     Running\na       0/1     Pending\n");
    }

    #[test]
    fn tables_keep_priority_zero_columns_unless_wide() {
        let table = serde_json::json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "IP", "priority": 1}, {"name": "Age", "priority": 0}
            ],
            "rows": [{"cells": ["web", "10.0.0.1", "5s"], "object": {"metadata": {"namespace": "ns1"}}}]
        });
        let narrow = TableView::from_table(&table, false, false);
        assert_eq!(narrow.header, ["NAME", "AGE"]);
        assert_eq!(narrow.rows, [["web", "5s"]]);
        let wide = TableView::from_table(&table, true, true);
        assert_eq!(wide.header, ["NAMESPACE", "NAME", "IP", "AGE"]);
        assert_eq!(wide.rows, [["ns1", "web", "10.0.0.1", "5s"]]);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3 * 3600 + 5), "3h");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    #[test]
    fn json_uses_four_space_indents() {
        assert_eq!(to_json(&serde_json::json!({"a": 1})).unwrap(), "{\n    \"a\": 1\n}\n");
    }

    #[test]
    fn unknown_output_formats_are_refused() {
        assert!("yml".parse::<OutputFormat>().is_err());
        assert_eq!("wide".parse::<OutputFormat>().unwrap(), OutputFormat::Wide);
    }
}
