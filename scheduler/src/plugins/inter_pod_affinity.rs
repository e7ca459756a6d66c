//! InterPodAffinity: required pod affinity and anti-affinity by topology key
//! (the incoming pod's terms, and existing pods' anti-affinity against it), and
//! preferred terms as a score.

use std::collections::{HashMap, HashSet};

use api::selector::Selector;
use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin, Reasons, ScorePlugin, MAX_NODE_SCORE};

pub struct InterPodAffinity;

const FILTER_STATE: &str = "InterPodAffinity/filter";
const SCORE_STATE: &str = "InterPodAffinity/score";

/// A topology domain: a node label key and value.
type Domain = (String, String);

struct Term {
    selector: Option<Selector>,
    /// `None`: every namespace.
    namespaces: Option<HashSet<String>>,
    topology_key: String,
}

impl Term {
    fn parse(term: &PodAffinityTerm, own_namespace: &str) -> Self {
        let selector = term.label_selector.as_ref().and_then(|s| Selector::from_label_selector(s).ok());
        let everywhere = term.namespace_selector.as_ref().is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none());
        let namespaces = if everywhere {
            None
        } else {
            let listed: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
            Some(if listed.is_empty() { HashSet::from([own_namespace.to_string()]) } else { listed })
        };
        Self { selector, namespaces, topology_key: term.topology_key.clone() }
    }

    fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(&pod.namespace))
            && self.selector.as_ref().is_some_and(|s| s.matches(pod.labels()))
    }

    fn domain_of(&self, node: &NodeInfo) -> Option<Domain> {
        node.labels().get(&self.topology_key).map(|value| (self.topology_key.clone(), value.clone()))
    }
}

struct Required {
    affinity: Vec<Term>,
    anti: Vec<Term>,
}

fn required(pod: &PodInfo) -> Required {
    let affinity = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let parse = |terms: Option<&Vec<PodAffinityTerm>>| terms.into_iter().flatten().map(|t| Term::parse(t, &pod.namespace)).collect();
    Required {
        affinity: parse(affinity.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
        anti: parse(affinity.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
    }
}

#[derive(Default)]
struct FilterState {
    affinity: Vec<Term>,
    anti: Vec<Term>,
    /// Domains holding pods that match every affinity term.
    affinity_domains: HashMap<Domain, usize>,
    /// Domains holding a pod some anti-affinity term matches.
    anti_domains: HashSet<Domain>,
    /// Domains that existing pods' anti-affinity forbids to this pod.
    forbidden: HashSet<Domain>,
    /// No pod matches the affinity terms yet, but the pod matches them itself: the
    /// first pod of a group may go anywhere.
    first_of_group: bool,
}

impl PreFilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Result<(), String> {
        let Required { affinity, anti } = required(pod);
        let mut result = FilterState::default();
        for (existing, node) in cache.pods_with_anti_affinity() {
            for term in required(existing).anti {
                if term.matches(pod) {
                    result.forbidden.extend(term.domain_of(node));
                }
            }
        }
        if !affinity.is_empty() || !anti.is_empty() {
            for node in cache.nodes() {
                for existing in node.pods.values() {
                    if !affinity.is_empty() && affinity.iter().all(|t| t.matches(existing)) {
                        for term in &affinity {
                            if let Some(domain) = term.domain_of(node) {
                                *result.affinity_domains.entry(domain).or_default() += 1;
                            }
                        }
                    }
                    for term in anti.iter().filter(|t| t.matches(existing)) {
                        result.anti_domains.extend(term.domain_of(node));
                    }
                }
            }
            result.first_of_group = result.affinity_domains.is_empty() && affinity.iter().all(|t| t.matches(pod));
        }
        result.affinity = affinity;
        result.anti = anti;
        state.write(FILTER_STATE, result);
        Ok(())
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(s) = state.read::<FilterState>(FILTER_STATE) else { return Ok(()) };
        // Most pods meet no anti-affinity: skip copying every node label to look it up.
        if !s.forbidden.is_empty() && node.labels().iter().any(|(k, v)| s.forbidden.contains(&(k.clone(), v.clone()))) {
            return Err(vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()]);
        }
        if s.anti.iter().any(|t| t.domain_of(node).is_some_and(|d| s.anti_domains.contains(&d))) {
            return Err(vec!["node(s) didn't match pod anti-affinity rules".into()]);
        }
        let affinity_holds = s.affinity.iter().all(|t| t.domain_of(node).is_some_and(|d| s.affinity_domains.contains_key(&d)));
        let first_and_labelled = s.first_of_group && s.affinity.iter().all(|t| t.domain_of(node).is_some());
        if !affinity_holds && !first_and_labelled {
            return Err(vec!["node(s) didn't match pod affinity rules".into()]);
        }
        Ok(())
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    /// Weighs every domain by the preferred terms its pods match (affinity adds,
    /// anti-affinity subtracts).
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], cache: &Cache) {
        let affinity = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let weighted = |terms: Option<&Vec<WeightedPodAffinityTerm>>, sign: i64| -> Vec<(i64, Term)> {
            terms
                .into_iter()
                .flatten()
                .map(|t| (sign * i64::from(t.weight), Term::parse(&t.pod_affinity_term, &pod.namespace)))
                .collect()
        };
        let mut terms = weighted(
            affinity.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            1,
        );
        terms.extend(weighted(
            affinity.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            -1,
        ));
        if terms.is_empty() {
            return;
        }
        let mut weights: HashMap<Domain, i64> = HashMap::new();
        for node in cache.nodes() {
            for existing in node.pods.values() {
                for (weight, term) in terms.iter().filter(|(_, t)| t.matches(existing)) {
                    if let Some(domain) = term.domain_of(node) {
                        *weights.entry(domain).or_default() += weight;
                    }
                }
            }
        }
        state.write(SCORE_STATE, weights);
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(weights) = state.read::<HashMap<Domain, i64>>(SCORE_STATE) else { return 0 };
        node.labels().iter().filter_map(|(k, v)| weights.get(&(k.clone(), v.clone()))).sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for score in scores.iter_mut() {
            *score = if max > min { MAX_NODE_SCORE * (*score - min) / (max - min) } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use k8s_openapi::api::core::v1::{Affinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn term(app: &str, topology: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector { match_labels: Some([("app".to_string(), app.to_string())].into()), ..Default::default() }),
            topology_key: topology.into(),
            ..Default::default()
        }
    }

    fn check(cache: &Cache, pod: &PodInfo, node: &str) -> Result<(), Reasons> {
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&mut state, pod, cache).unwrap();
        InterPodAffinity.filter(&state, pod, node_info(cache, node))
    }

    fn zones() -> Cache {
        cache_with(vec![
            node("a1", "1", "1Gi", &[("zone", "a")]),
            node("a2", "1", "1Gi", &[("zone", "a")]),
            node("b1", "1", "1Gi", &[("zone", "b")]),
        ])
    }

    #[test]
    fn anti_affinity_keeps_pods_apart_by_topology() {
        let mut cache = zones();
        let mut web = with_labels(pod("web-1", "0", "0"), &[("app", "web")]);
        web.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term("web", "zone")]),
                ..Default::default()
            }),
            ..Default::default()
        });
        cache.add_bound_pod(Arc::new(info(web.clone())), "a1");
        let mut second = web;
        second.metadata.name = Some("web-2".into());
        let second = info(second);
        assert_eq!(check(&cache, &second, "a2"), Err(vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()]));
        assert!(check(&cache, &second, "b1").is_ok());
    }

    #[test]
    fn affinity_follows_the_matching_pods_and_lets_the_first_go_anywhere() {
        let mut cache = zones();
        let mut cache_pod = with_labels(pod("cache", "0", "0"), &[("app", "cache")]);
        cache_pod.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(k8s_openapi::api::core::v1::PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term("db", "zone")]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let cache_pod = info(cache_pod);
        assert!(check(&cache, &cache_pod, "b1").is_err(), "no db pod anywhere, and the pod is no db");
        cache.add_bound_pod(Arc::new(info(with_labels(pod("db", "0", "0"), &[("app", "db")]))), "a1");
        assert!(check(&cache, &cache_pod, "a2").is_ok());
        assert_eq!(check(&cache, &cache_pod, "b1"), Err(vec!["node(s) didn't match pod affinity rules".into()]));
    }
}
