//! Reading manifests and request bodies: JSON and multi-document YAML into
//! `serde_json::Value`, with line and column on syntax errors, and typed
//! decoding of a value for its `apiVersion` and `kind`.

mod unknown;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

pub use unknown::{strict_decoding_message, unknown_fields};

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("error parsing JSON: {message} at line {line} column {column}")]
    Json {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("error parsing YAML: {message} at line {line} column {column}")]
    Yaml {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("error parsing YAML document {document}: {message} at line {line} column {column}")]
    YamlDocument {
        document: usize,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("Object 'Kind' is missing in '{0}'")]
    MissingKind(String),
    #[error("Object 'apiVersion' is missing in '{0}'")]
    MissingApiVersion(String),
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("the API version in the data ({found}) does not match the expected API version ({expected})")]
    ApiVersionMismatch { found: String, expected: String },
    #[error("the kind in the data ({found}) does not match the expected kind ({expected})")]
    KindMismatch { found: String, expected: String },
    #[error("the body must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    /// The value has the right kind but a field of the wrong type.
    #[error("{kind} in version {api_version:?} cannot be handled as a {kind}: {path}: {message}")]
    Typed {
        api_version: String,
        kind: String,
        path: String,
        message: String,
    },
}

/// Parses one JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
        message: strip_position(&e.to_string()),
        line: e.line(),
        column: e.column(),
    })
}

/// serde_json appends " at line L column C"; the error variant carries those.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Parses every document of a YAML stream (separated by `---`), skipping empty ones.
/// Lines and columns are 1-based and counted from the start of the stream.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, DecodeError> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            DecodeError::YamlDocument {
                document: index + 1,
                message: strip_position(&e.to_string()),
                line,
                column,
            }
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Parses a manifest file or request body: JSON when it starts with `{` or `[`,
/// else YAML (possibly several documents). `kind: List` objects are expanded
/// into their items, as kubectl does.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    let values = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match parse_json(bytes)? {
            Value::Array(items) => items,
            value => vec![value],
        }
    } else {
        parse_yaml_documents(&text)?
    };
    Ok(values.into_iter().flat_map(expand_list).collect())
}

fn expand_list(value: Value) -> Vec<Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    match value {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

/// The `apiVersion` and `kind` of an object, or which one is missing.
pub fn type_meta(value: &Value) -> Result<(&str, &str), DecodeError> {
    let field = |name| {
        value
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let compact = || {
        let text = value.to_string();
        text.chars().take(200).collect::<String>()
    };
    let kind = field("kind").ok_or_else(|| DecodeError::MissingKind(compact()))?;
    let api_version =
        field("apiVersion").ok_or_else(|| DecodeError::MissingApiVersion(compact()))?;
    Ok((api_version, kind))
}

/// Decodes a value into a k8s-openapi type, naming the field path of a type error.
pub fn decode_typed<T: serde::de::DeserializeOwned>(
    value: Value,
    api_version: &str,
    kind: &str,
) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError::Typed {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;

    const MANIFEST: &str = r#"# web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.25
          ports:
            - containerPort: 80
              name: http
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: http
---
"#;

    #[test]
    fn a_multi_document_manifest_decodes() {
        let values = parse_manifest(MANIFEST.as_bytes()).unwrap();
        assert_eq!(values.len(), 2);
        let objects: Vec<Object> = values
            .into_iter()
            .map(|v| Object::from_value(v).unwrap())
            .collect();
        let Object::Deployment(deployment) = &objects[0] else {
            panic!("not a deployment: {:?}", objects[0])
        };
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(
            container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["memory"]
                .0,
            "64Mi"
        );
        let Object::Service(service) = &objects[1] else {
            panic!("not a service")
        };
        assert_eq!(service.metadata.name.as_deref(), Some("web"));
    }

    #[test]
    fn yaml_syntax_errors_have_line_and_column() {
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n   labels: {}\n";
        match parse_manifest(bad.as_bytes()).unwrap_err() {
            DecodeError::YamlDocument {
                document,
                line,
                column,
                ..
            } => {
                assert_eq!((document, line, column), (1, 5, 10));
            }
            other => panic!("unexpected {other}"),
        }
        let second = "kind: A\n---\nkind: [\n";
        let err = parse_manifest(second.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::YamlDocument {
                    document: 2,
                    line: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn json_errors_have_line_and_column() {
        let err = parse_json(b"{\n  \"kind\": \"Pod\",\n  \"x\": @\n}").unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Json {
                    line: 3,
                    column: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "error parsing JSON: expected value at line 3 column 8"
        );
    }

    #[test]
    fn json_arrays_and_lists_expand() {
        let list = br#"{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod"}, {"kind": "Service"}]}"#;
        assert_eq!(parse_manifest(list).unwrap().len(), 2);
        let array = br#"[{"kind": "Pod"}]"#;
        assert_eq!(parse_manifest(array).unwrap().len(), 1);
    }

    #[test]
    fn typed_decode_errors() {
        let cases = [
            (serde_json::json!({"apiVersion": "v1"}), "Object 'Kind' is missing in '{\"apiVersion\":\"v1\"}'"),
            (serde_json::json!({"kind": "Pod"}), "Object 'apiVersion' is missing in '{\"kind\":\"Pod\"}'"),
            (serde_json::json!({"apiVersion": "v1", "kind": "Pony"}), "no kind \"Pony\" is registered for version \"v1\""),
            (serde_json::json!({"apiVersion": "apps/v2", "kind": "Deployment"}), "no kind \"Deployment\" is registered for version \"apps/v2\""),
            (
                serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {"replicas": "3"}}),
                "Deployment in version \"apps/v1\" cannot be handled as a Deployment: spec.replicas: invalid type: string \"3\", expected i32",
            ),
        ];
        for (value, want) in cases {
            assert_eq!(Object::from_value(value).unwrap_err().to_string(), want);
        }
    }
}
