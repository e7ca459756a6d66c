//! Label selectors: the structured `LabelSelector` and the string form
//! (`app=web,tier!=db,env in (a,b),!canary,gen>3`), and field selectors
//! (`metadata.name=web,status.phase!=Running`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use thiserror::Error;

use crate::validation::names;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    #[error("invalid label key {key:?}: {message}")]
    InvalidKey { key: String, message: String },
    #[error("invalid label value {value:?}: {message}")]
    InvalidValue { value: String, message: String },
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    EmptyValues,
    #[error("for 'exists', 'doesnotexist' operators, values set must be empty")]
    UnexpectedValues,
    #[error("for 'Gt', 'Lt' operators, exactly one integer value is required, got {0:?}")]
    NotAnInteger(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

impl Requirement {
    pub fn new(key: &str, operator: Operator) -> Result<Self, SelectorError> {
        if let Some(message) = names::is_qualified_name(key).into_iter().next() {
            return Err(SelectorError::InvalidKey {
                key: key.to_string(),
                message,
            });
        }
        if let Operator::In(values) | Operator::NotIn(values) = &operator {
            if values.is_empty() {
                return Err(SelectorError::EmptyValues);
            }
            for value in values {
                if let Some(message) = names::is_valid_label_value(value).into_iter().next() {
                    return Err(SelectorError::InvalidValue {
                        value: value.clone(),
                        message,
                    });
                }
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt(n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Operator::Lt(n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.operator {
            Operator::In(values) if values.len() == 1 => write!(f, "{key}={}", values[0]),
            Operator::NotIn(values) if values.len() == 1 => write!(f, "{key}!={}", values[0]),
            Operator::In(values) => write!(f, "{key} in ({})", values.join(",")),
            Operator::NotIn(values) => write!(f, "{key} notin ({})", values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Gt(n) => write!(f, "{key}>{n}"),
            Operator::Lt(n) => write!(f, "{key}<{n}"),
        }
    }
}

/// All requirements must hold; no requirement selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Like Kubernetes' `LabelSelectorAsSelector` (an empty selector matches everything).
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::In(vec![value.clone()]))?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let operator = match expr.operator.as_str() {
                "In" => Operator::In(values),
                "NotIn" => Operator::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues)
                }
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::InvalidOperator(other.to_string())),
            };
            requirements.push(Requirement::new(&expr.key, operator)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Parses the string form used in `?labelSelector=`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(SelectorError::Syntax(format!(
                    "found '', expected: identifier in {text:?}"
                )));
            }
            requirements.push(parse_requirement(part)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                return Err(SelectorError::Syntax(format!("unexpected ')' in {text:?}")))
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError::Syntax(format!("missing ')' in {text:?}")));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        return Requirement::new(key.trim(), Operator::DoesNotExist);
    }
    for (symbol, make) in [
        ("!=", Operator::NotIn as fn(Vec<String>) -> Operator),
        ("==", Operator::In),
        ("=", Operator::In),
    ] {
        if let Some((key, value)) = part.split_once(symbol) {
            return Requirement::new(key.trim(), make(vec![value.trim().to_string()]));
        }
    }
    for (symbol, make) in [
        (">", Operator::Gt as fn(i64) -> Operator),
        ("<", Operator::Lt),
    ] {
        if let Some((key, value)) = part.split_once(symbol) {
            let value = value.trim();
            let n = value
                .parse()
                .map_err(|_| SelectorError::NotAnInteger(value.to_string()))?;
            return Requirement::new(key.trim(), make(n));
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Requirement::new(key, Operator::Exists),
        [key, rest] => {
            let rest = rest.trim_start();
            let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
                (Operator::NotIn as fn(Vec<String>) -> Operator, list)
            } else if let Some(list) = rest.strip_prefix("in") {
                (Operator::In as fn(Vec<String>) -> Operator, list)
            } else {
                return Err(SelectorError::Syntax(format!(
                    "found '{rest}', expected: in, notin, =, ==, !=, gt, lt in {part:?}"
                )));
            };
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| {
                    SelectorError::Syntax(format!(
                        "found '{}', expected: '(' in {part:?}",
                        list.trim()
                    ))
                })?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            let values = if values == [""] { Vec::new() } else { values };
            Requirement::new(key, operator(values))
        }
        _ => Err(SelectorError::Syntax(format!(
            "empty requirement in {part:?}"
        ))),
    }
}

/// One `field=value` / `field!=value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

/// Parses `?fieldSelector=` (`metadata.name=web,status.phase!=Running`); empty selects all.
pub fn parse_field_selector(text: &str) -> Result<Vec<FieldRequirement>, SelectorError> {
    let mut terms = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, true)
        } else {
            return Err(SelectorError::Syntax(format!(
                "invalid field selector term {part:?}: expected =, == or !="
            )));
        };
        terms.push(FieldRequirement {
            field: field.trim().to_string(),
            value: value.trim().to_string(),
            equal,
        });
    }
    Ok(terms)
}

impl FieldRequirement {
    /// Whether the object's value of this field (None when absent, compared as "") fits.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        (actual.unwrap_or("") == self.value) == self.equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_selectors_match() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("gen", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!canary", true),
            ("app=web,tier=back", false),
            ("gen>3", true),
            ("gen<3", false),
            ("example.com/role in (a,b)", false),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&web), want, "{text}");
        }
    }

    #[test]
    fn string_selector_errors() {
        let cases = [
            ("app in (a", "unable to parse requirement: missing ')' in \"app in (a\""),
            ("app=web,", "unable to parse requirement: found '', expected: identifier in \"app=web,\""),
            ("app in ()", "for 'in', 'notin' operators, values set can't be empty"),
            ("app near (x)", "unable to parse requirement: found 'near (x)', expected: in, notin, =, ==, !=, gt, lt in \"app near (x)\""),
            ("gen>x", "for 'Gt', 'Lt' operators, exactly one integer value is required, got \"x\""),
        ];
        for (text, want) in cases {
            assert_eq!(
                Selector::parse(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
        assert!(matches!(
            Selector::parse("-app=x"),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            Selector::parse("app=-x"),
            Err(SelectorError::InvalidValue { .. })
        ));
    }

    #[test]
    fn label_selector_objects() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["front".into(), "back".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let s = Selector::from_label_selector(&selector).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert_eq!(s.to_string(), "app=web,!canary,tier in (front,back)");
        assert!(Selector::from_label_selector(&LabelSelector::default())
            .unwrap()
            .matches(&labels(&[])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(&bad).unwrap_err(),
            SelectorError::InvalidOperator("Near".into())
        );
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn field_selectors() {
        let terms = parse_field_selector("metadata.name=web,status.phase!=Running").unwrap();
        assert_eq!(terms.len(), 2);
        assert!(terms[0].matches(Some("web")));
        assert!(terms[1].matches(None));
        assert!(!terms[1].matches(Some("Running")));
        assert!(parse_field_selector("").unwrap().is_empty());
        assert!(parse_field_selector("metadata.name").is_err());
    }
}
