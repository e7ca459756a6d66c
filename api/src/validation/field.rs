//! Field errors as Kubernetes reports them (`k8s.io/apimachinery/pkg/util/validation/field`).

use std::collections::BTreeMap;
use std::fmt;

/// A path to a field: `spec.containers[0].ports[1].name`, `data[key]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Path(String);

impl Path {
    /// A path starting at a top-level field.
    pub fn new(field: &str) -> Path {
        Path(field.to_string())
    }

    /// `self.name`
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path::new(name)
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// `self[index]`
    pub fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    /// `self[key]`, for map entries.
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of field error, with Kubernetes' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
}

impl ErrorKind {
    /// The words Kubernetes prints after the field path.
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::Required => "Required value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
        }
    }

    /// The `StatusCause.reason` (Kubernetes' `CauseType`).
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
        }
    }
}

/// The offending value, printed the way Go's `%q` / `%v` / `%#v` would.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// Not printed (Required, Forbidden, TooLong).
    Omitted,
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    /// Printed as is: Go's rendering of a struct or map, e.g. `map[string]string{"app":"web"}`.
    Raw(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}

impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}

impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}

impl From<i32> for BadValue {
    fn from(v: i32) -> Self {
        BadValue::Int(v.into())
    }
}

impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}

impl<T: Into<BadValue>> From<Option<T>> for BadValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(BadValue::Null, Into::into)
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => Ok(()),
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(v) => write!(f, "{v}"),
            BadValue::Bool(v) => write!(f, "{v}"),
            BadValue::Null => f.write_str("null"),
            BadValue::Raw(s) => f.write_str(s),
        }
    }
}

/// A string quoted as Go's `strconv.Quote` does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `map[string]string`, keys sorted as Go prints them.
pub fn go_string_map(map: &BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub path: Path,
    pub kind: ErrorKind,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn required(path: &Path, detail: &str) -> Self {
        Self::new(path, ErrorKind::Required, BadValue::Omitted, detail)
    }

    pub fn invalid(path: &Path, value: impl Into<BadValue>, detail: &str) -> Self {
        Self::new(path, ErrorKind::Invalid, value.into(), detail)
    }

    pub fn duplicate(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(path, ErrorKind::Duplicate, value.into(), "")
    }

    pub fn not_found(path: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(path, ErrorKind::NotFound, value.into(), "")
    }

    pub fn forbidden(path: &Path, detail: &str) -> Self {
        Self::new(path, ErrorKind::Forbidden, BadValue::Omitted, detail)
    }

    /// The value is not one of `supported`, listed in the detail as Kubernetes does.
    pub fn not_supported(path: &Path, value: impl Into<BadValue>, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(path, ErrorKind::NotSupported, value.into(), &detail)
    }

    pub fn too_long(path: &Path, max_bytes: usize) -> Self {
        Self::new(
            path,
            ErrorKind::TooLong,
            BadValue::Omitted,
            &format!("must have at most {max_bytes} bytes"),
        )
    }

    fn new(path: &Path, kind: ErrorKind, value: BadValue, detail: &str) -> Self {
        FieldError {
            path: path.clone(),
            kind,
            value,
            detail: detail.to_string(),
        }
    }

    /// The message without the path, as Kubernetes' `ErrorBody()` (used in `StatusCause.message`).
    pub fn body(&self) -> String {
        let mut s = self.kind.description().to_string();
        let prints_value = !matches!(
            self.kind,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        ) && self.value != BadValue::Omitted;
        if prints_value {
            s = format!("{s}: {}", self.value);
        }
        if !self.detail.is_empty() {
            s = format!("{s}: {}", self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Kubernetes' aggregate of several errors: one message alone, several in `[a, b]`,
/// repeated messages once.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for message in errors.iter().map(ToString::to_string) {
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.len() {
        1 => messages.remove(0),
        _ => format!("[{}]", messages.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_kubernetes() {
        let spec = Path::new("spec");
        let cases = [
            (FieldError::required(&spec.child("containers"), ""), "spec.containers: Required value"),
            (
                FieldError::required(&Path::new("metadata").child("name"), "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::duplicate(&spec.child("containers").index(1).child("name"), "web"),
                "spec.containers[1].name: Duplicate value: \"web\"",
            ),
            (
                FieldError::not_supported(&spec.child("restartPolicy"), "Sometimes", &["Always", "OnFailure", "Never"]),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                FieldError::invalid(&spec.child("replicas"), -1, "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::forbidden(&spec.child("x"), "may not be set"),
                "spec.x: Forbidden: may not be set",
            ),
            (
                FieldError::too_long(&Path::new("metadata").child("annotations"), 262144),
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ),
            (
                FieldError::not_found(&spec.child("containers").index(0).child("volumeMounts").index(0).child("name"), "data"),
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            ),
            (
                FieldError::invalid(&Path::new("data").key("a b"), "a \"b\"", "bad"),
                "data[a b]: Invalid value: \"a \\\"b\\\"\": bad",
            ),
            (FieldError::invalid(&spec.child("x"), Option::<i64>::None, "bad"), "spec.x: Invalid value: null: bad"),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn aggregates_like_kubernetes() {
        let a = FieldError::required(&Path::new("a"), "");
        let b = FieldError::required(&Path::new("b"), "");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)),
            "a: Required value"
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b, a]),
            "[a: Required value, b: Required value]"
        );
    }

    #[test]
    fn formats_maps_as_go() {
        let map = BTreeMap::from([
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]);
        assert_eq!(
            go_string_map(&map),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
    }
}
