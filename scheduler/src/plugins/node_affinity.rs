//! NodeAffinity: `nodeSelector` and required node affinity filter nodes (terms
//! ORed, expressions ANDed, operators In, NotIn, Exists, DoesNotExist, Gt, Lt, and
//! `matchFields` on `metadata.name`); preferred terms add their weights to the score.

use std::collections::BTreeMap;

use api::selector::{Operator, Requirement};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{default_normalize, CycleState, FilterPlugin, PreFilterPlugin, Reasons, ScorePlugin};

pub struct NodeAffinity;

const STATE_KEY: &str = "NodeAffinity";
const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// A parsed node selector term. A term that does not parse matches no node.
#[derive(Debug, Clone)]
pub struct Term {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl Term {
    pub fn parse(term: &NodeSelectorTerm) -> Self {
        let labels: Option<Vec<_>> = term.match_expressions.iter().flatten().map(requirement).collect();
        let fields: Option<Vec<_>> = term.match_fields.iter().flatten().map(requirement).collect();
        let valid = labels.is_some() && fields.is_some() && (term.match_expressions.is_some() || term.match_fields.is_some());
        Self { labels: labels.unwrap_or_default(), fields: fields.unwrap_or_default(), valid }
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if !self.valid || (self.labels.is_empty() && self.fields.is_empty()) {
            return false;
        }
        let fields = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
        self.labels.iter().all(|r| r.matches(node.labels())) && self.fields.iter().all(|r| r.matches(&fields))
    }
}

fn requirement(expression: &NodeSelectorRequirement) -> Option<Requirement> {
    let values = expression.values.clone().unwrap_or_default();
    let single_number = || values.first().filter(|_| values.len() == 1).and_then(|v| v.parse::<i64>().ok());
    let operator = match expression.operator.as_str() {
        "In" => Operator::In(values.clone()),
        "NotIn" => Operator::NotIn(values.clone()),
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt(single_number()?),
        "Lt" => Operator::Lt(single_number()?),
        _ => return None,
    };
    Requirement::new(&expression.key, operator).ok()
}

/// The pod's node constraints, parsed once per cycle.
#[derive(Debug, Clone, Default)]
pub struct NodeConstraints {
    selector: BTreeMap<String, String>,
    /// `None`: no required affinity; otherwise at least one term must match.
    required: Option<Vec<Term>>,
    preferred: Vec<(i64, Term)>,
}

impl NodeConstraints {
    pub fn of(pod: &PodInfo) -> Self {
        let spec = pod.pod.spec.as_ref();
        let node_affinity = spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
        let required = node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|selector| selector.node_selector_terms.iter().map(Term::parse).collect());
        let preferred = node_affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|terms| terms.iter().map(|t| (i64::from(t.weight), Term::parse(&t.preference))).collect())
            .unwrap_or_default();
        Self { selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(), required, preferred }
    }

    /// `nodeSelector` and required affinity both hold on `node`.
    pub fn admits(&self, node: &NodeInfo) -> bool {
        // Most pods constrain nothing: then the node's labels are not even read.
        if self.selector.is_empty() && self.required.is_none() {
            return true;
        }
        let labels = node.labels();
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.required.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _: &Cache) -> Result<(), String> {
        state.write(STATE_KEY, NodeConstraints::of(pod));
        Ok(())
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let admits = match state.read::<NodeConstraints>(STATE_KEY) {
            Some(constraints) => constraints.admits(node),
            None => NodeConstraints::of(pod).admits(node),
        };
        if admits {
            Ok(())
        } else {
            Err(vec![REASON.into()])
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    /// The summed weights of the preferred terms the node matches.
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(constraints) = state.read::<NodeConstraints>(STATE_KEY) else { return 0 };
        constraints.preferred.iter().filter(|(_, term)| term.matches(node)).map(|(weight, _)| weight).sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeSelector, PreferredSchedulingTerm};

    fn expression(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement { key: key.into(), operator: operator.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }
    }

    fn requiring(terms: Vec<NodeSelectorTerm>) -> PodInfo {
        let mut p = pod("p", "0", "0");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: terms }),
                ..Default::default()
            }),
            ..Default::default()
        });
        info(p)
    }

    fn fits(pod: &PodInfo, cache: &Cache, node: &str) -> bool {
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&mut state, pod, cache).unwrap();
        NodeAffinity.filter(&state, pod, node_info(cache, node)).is_ok()
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let cache = cache_with(vec![node("ssd", "1", "1Gi", &[("disk", "ssd")]), node("hdd", "1", "1Gi", &[("disk", "hdd")])]);
        let mut p = pod("p", "0", "0");
        p.spec.as_mut().unwrap().node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        let p = info(p);
        assert!(fits(&p, &cache, "ssd"));
        assert!(!fits(&p, &cache, "hdd"));
    }

    #[test]
    fn every_operator_and_match_fields() {
        let cache = cache_with(vec![node("n1", "1", "1Gi", &[("zone", "a"), ("cores", "8")]), node("n2", "1", "1Gi", &[("zone", "b")])]);
        let term = |e: Vec<NodeSelectorRequirement>| NodeSelectorTerm { match_expressions: Some(e), match_fields: None };
        assert!(fits(&requiring(vec![term(vec![expression("zone", "In", &["a"])])]), &cache, "n1"));
        assert!(!fits(&requiring(vec![term(vec![expression("zone", "NotIn", &["a"])])]), &cache, "n1"));
        assert!(fits(&requiring(vec![term(vec![expression("cores", "Exists", &[])])]), &cache, "n1"));
        assert!(fits(&requiring(vec![term(vec![expression("cores", "DoesNotExist", &[])])]), &cache, "n2"));
        assert!(fits(&requiring(vec![term(vec![expression("cores", "Gt", &["4"])])]), &cache, "n1"));
        assert!(!fits(&requiring(vec![term(vec![expression("cores", "Lt", &["4"])])]), &cache, "n1"));
        let by_name = NodeSelectorTerm { match_expressions: None, match_fields: Some(vec![expression("metadata.name", "In", &["n2"])]) };
        assert!(fits(&requiring(vec![by_name.clone()]), &cache, "n2"));
        assert!(!fits(&requiring(vec![by_name]), &cache, "n1"));
        // Terms are ORed.
        let either = requiring(vec![term(vec![expression("zone", "In", &["b"])]), term(vec![expression("zone", "In", &["a"])])]);
        assert!(fits(&either, &cache, "n1") && fits(&either, &cache, "n2"));
    }

    #[test]
    fn an_unknown_operator_matches_nothing() {
        let cache = cache_with(vec![node("n1", "1", "1Gi", &[("zone", "a")])]);
        let term = NodeSelectorTerm { match_expressions: Some(vec![expression("zone", "Near", &["a"])]), match_fields: None };
        assert!(!fits(&requiring(vec![term]), &cache, "n1"));
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let cache = cache_with(vec![node("n1", "1", "1Gi", &[("zone", "a")]), node("n2", "1", "1Gi", &[("zone", "b")])]);
        let mut p = pod("p", "0", "0");
        let preference = NodeSelectorTerm { match_expressions: Some(vec![expression("zone", "In", &["b"])]), match_fields: None };
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![PreferredSchedulingTerm { weight: 5, preference }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = info(p);
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&mut state, &p, &cache).unwrap();
        let mut scores = vec![NodeAffinity.score(&state, &p, node_info(&cache, "n1")), NodeAffinity.score(&state, &p, node_info(&cache, "n2"))];
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
    }
}
