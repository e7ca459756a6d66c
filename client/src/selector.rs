//! Label selectors (`metav1.LabelSelector`) turned into something that matches
//! label maps, with Kubernetes' semantics: an empty selector matches everything,
//! requirements are ANDed, and an unknown operator is an error, not a silent miss.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator { operator: String },
    #[error("operator {operator:?} for key {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("operator {operator:?} for key {key:?} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }

    /// Parses a `matchExpressions` entry (also used for node selector terms with
    /// their own operator set, see the scheduler).
    pub fn parse(key: &str, operator: &str, values: &[String]) -> Result<Self, SelectorError> {
        let key = key.to_string();
        let needs_values = |key: String| {
            if values.is_empty() {
                Err(SelectorError::MissingValues { key, operator: operator.to_string() })
            } else {
                Ok(key)
            }
        };
        let no_values = |key: String| {
            if values.is_empty() {
                Ok(key)
            } else {
                Err(SelectorError::UnexpectedValues { key, operator: operator.to_string() })
            }
        };
        Ok(match operator {
            "In" => Requirement::In(needs_values(key)?, values.to_vec()),
            "NotIn" => Requirement::NotIn(needs_values(key)?, values.to_vec()),
            "Exists" => Requirement::Exists(no_values(key)?),
            "DoesNotExist" => Requirement::DoesNotExist(no_values(key)?),
            other => return Err(SelectorError::UnknownOperator { operator: other.to_string() }),
        })
    }

    fn to_query(&self) -> String {
        match self {
            Requirement::In(key, values) => format!("{key} in ({})", values.join(",")),
            Requirement::NotIn(key, values) => format!("{key} notin ({})", values.join(",")),
            Requirement::Exists(key) => key.clone(),
            Requirement::DoesNotExist(key) => format!("!{key}"),
        }
    }
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector requiring each `key=value` of `labels`.
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels.iter().map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()])).collect();
        Self { requirements }
    }

    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(Requirement::parse(&expression.key, &expression.operator, &values)?);
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The `labelSelector` query parameter form.
    pub fn to_query(&self) -> String {
        self.requirements.iter().map(Requirement::to_query).collect::<Vec<_>>().join(",")
    }
}

/// Whether `labels` match an optional selector; a missing selector matches nothing
/// (as for Services without a selector), a malformed one matches nothing too.
pub fn matches_opt(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .and_then(|s| Selector::from_label_selector(s).ok())
        .is_some_and(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let selector = Selector::from_label_selector(&LabelSelector::default()).unwrap();
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(selector.matches(&labels(&[])));
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["front", "edge"]),
                expression("canary", "DoesNotExist", &[]),
                expression("env", "NotIn", &["dev"]),
            ]),
        };
        let selector = Selector::from_label_selector(&selector).unwrap();
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("canary", "1")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("env", "dev")])));
        assert_eq!(selector.to_query(), "app in (web),tier in (front,edge),!canary,env notin (dev)");
    }

    #[test]
    fn bad_operators_and_values_are_errors() {
        let bad = LabelSelector { match_expressions: Some(vec![expression("a", "Near", &["x"])]), ..Default::default() };
        assert_eq!(
            Selector::from_label_selector(&bad),
            Err(SelectorError::UnknownOperator { operator: "Near".into() })
        );
        let bad = LabelSelector { match_expressions: Some(vec![expression("a", "In", &[])]), ..Default::default() };
        assert!(matches!(Selector::from_label_selector(&bad), Err(SelectorError::MissingValues { .. })));
        assert!(!matches_opt(Some(&bad), &labels(&[("a", "x")])));
        assert!(!matches_opt(None, &labels(&[("a", "x")])));
    }
}
