//! PodTopologySpread: `topologySpreadConstraints` (DoNotSchedule filters,
//! ScheduleAnyway scores) and, for pods without any, Kubernetes' system default
//! spreading of the pods of one owner: by hostname (maxSkew 3) and by zone
//! (maxSkew 5), as scores.

use std::collections::HashMap;

use api::selector::Selector;
use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin, Reasons, ScorePlugin, MAX_NODE_SCORE};
use crate::plugins::node_affinity::NodeConstraints;

pub struct PodTopologySpread;

const FILTER_STATE: &str = "PodTopologySpread/filter";
const SCORE_STATE: &str = "PodTopologySpread/score";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// Which pods a constraint counts.
enum Counted {
    Selector(Selector),
    /// The system default: pods with the same controller.
    Owner(String),
}

struct Constraint {
    max_skew: i64,
    topology_key: String,
    counted: Counted,
    namespace: String,
}

impl Constraint {
    fn parse(c: &TopologySpreadConstraint, namespace: &str) -> Option<Self> {
        let selector = Selector::from_label_selector(c.label_selector.as_ref()?).ok()?;
        Some(Self {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            counted: Counted::Selector(selector),
            namespace: namespace.to_string(),
        })
    }

    fn counts(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace
            && match &self.counted {
                Counted::Selector(selector) => selector.matches(pod.labels()),
                Counted::Owner(uid) => pod.owner_uid.as_ref() == Some(uid),
            }
    }

    fn count_on(&self, node: &NodeInfo) -> i64 {
        match &self.counted {
            // The node keeps this count, no need to look at its pods.
            Counted::Owner(uid) => node.owner_counts.get(uid).copied().unwrap_or(0) as i64,
            Counted::Selector(_) => node.pods.values().filter(|p| self.counts(p)).count() as i64,
        }
    }

    /// Matching pods per domain, over the nodes the pod could go to.
    fn domain_counts<'a>(&self, nodes: impl Iterator<Item = &'a NodeInfo>, admits: &NodeConstraints) -> HashMap<String, i64> {
        let mut counts = HashMap::new();
        for node in nodes.filter(|n| admits.admits(n)) {
            if let Some(value) = node.labels().get(&self.topology_key) {
                *counts.entry(value.clone()).or_default() += self.count_on(node);
            }
        }
        counts
    }
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .filter_map(|c| Constraint::parse(c, &pod.namespace))
        .collect()
}

struct Counts {
    constraint: Constraint,
    domains: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

impl PreFilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Result<(), String> {
        let hard = constraints(pod, "DoNotSchedule");
        if hard.is_empty() {
            return Ok(());
        }
        let admits = NodeConstraints::of(pod);
        let counts: Vec<Counts> = hard
            .into_iter()
            .map(|constraint| {
                let domains = constraint.domain_counts(cache.nodes(), &admits);
                let min = domains.values().copied().min().unwrap_or(0);
                let self_match = i64::from(constraint.counts(pod));
                Counts { constraint, domains, min, self_match }
            })
            .collect();
        state.write(FILTER_STATE, counts);
        Ok(())
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let Some(all) = state.read::<Vec<Counts>>(FILTER_STATE) else { return Ok(()) };
        for counts in all {
            let Some(value) = node.labels().get(&counts.constraint.topology_key) else {
                return Err(vec!["node(s) didn't match pod topology spread constraints (missing required label)".into()]);
            };
            let here = counts.domains.get(value).copied().unwrap_or(0);
            if here + counts.self_match - counts.min > counts.constraint.max_skew {
                return Err(vec!["node(s) didn't match pod topology spread constraints".into()]);
            }
        }
        Ok(())
    }
}

/// A soft constraint with its per-domain counts (hostname ones are read off the
/// node directly) and Kubernetes' topology weight, `ln(domains + 2)`.
struct Soft {
    constraint: Constraint,
    domains: Option<HashMap<String, i64>>,
    weight: f64,
}

impl PreScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) {
        let has_any = pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty());
        let soft = if has_any {
            constraints(pod, "ScheduleAnyway")
        } else if let Some(owner) = &pod.owner_uid {
            [(HOSTNAME, 3), (ZONE, 5)]
                .into_iter()
                .map(|(key, skew)| Constraint {
                    max_skew: skew,
                    topology_key: key.into(),
                    counted: Counted::Owner(owner.clone()),
                    namespace: pod.namespace.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let admits = NodeConstraints::of(pod);
        let soft: Vec<Soft> = soft
            .into_iter()
            .filter_map(|constraint| {
                if constraint.topology_key == HOSTNAME {
                    let weight = ((nodes.len() + 2) as f64).ln();
                    return Some(Soft { constraint, domains: None, weight });
                }
                let domains = constraint.domain_counts(cache.nodes(), &admits);
                // A key no node has spreads nothing.
                (!domains.is_empty()).then(|| Soft { weight: ((domains.len() + 2) as f64).ln(), constraint, domains: Some(domains) })
            })
            .collect();
        if !soft.is_empty() {
            state.write(SCORE_STATE, soft);
        }
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    /// Matching pods in the node's domains, weighted (fewer is better).
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(soft) = state.read::<Vec<Soft>>(SCORE_STATE) else { return 0 };
        let total: f64 = soft
            .iter()
            .filter_map(|s| {
                let count = match &s.domains {
                    None => s.constraint.count_on(node),
                    Some(domains) => domains.get(node.labels().get(&s.constraint.topology_key)?).copied().unwrap_or(0),
                };
                Some(count as f64 * s.weight + (s.constraint.max_skew - 1) as f64)
            })
            .sum();
        total.round() as i64
    }

    /// Kubernetes' `MaxNodeScore * (max + min - score) / max`.
    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for score in scores.iter_mut() {
            *score = if max == 0 { MAX_NODE_SCORE } else { MAX_NODE_SCORE * (max + min - *score) / max };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
    use std::sync::Arc;

    fn spread(name: &str, when: &str) -> PodInfo {
        let mut p = with_labels(pod(name, "0", "0"), &[("app", "web")]);
        p.spec.as_mut().unwrap().topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "zone".into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            ..Default::default()
        }]);
        info(p)
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_bounds() {
        let mut cache = cache_with(vec![
            node("a1", "1", "1Gi", &[("zone", "a")]),
            node("b1", "1", "1Gi", &[("zone", "b")]),
            node("nolabel", "1", "1Gi", &[]),
        ]);
        cache.add_bound_pod(Arc::new(spread("w1", "DoNotSchedule")), "a1");
        let incoming = spread("w2", "DoNotSchedule");
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &incoming, &cache).unwrap();
        assert_eq!(
            PodTopologySpread.filter(&state, &incoming, node_info(&cache, "a1")),
            Err(vec!["node(s) didn't match pod topology spread constraints".into()])
        );
        assert!(PodTopologySpread.filter(&state, &incoming, node_info(&cache, "b1")).is_ok());
        assert!(PodTopologySpread.filter(&state, &incoming, node_info(&cache, "nolabel")).is_err());
    }

    #[test]
    fn pods_of_one_owner_spread_over_hosts_by_default() {
        let owned = |name: &str| {
            let mut p = pod(name, "0", "0");
            p.metadata.owner_references = Some(vec![OwnerReference { uid: "rs-1".into(), controller: Some(true), ..Default::default() }]);
            info(p)
        };
        let mut cache = cache_with(vec![node("n1", "1", "1Gi", &[]), node("n2", "1", "1Gi", &[])]);
        cache.add_bound_pod(Arc::new(owned("a")), "n1");
        cache.add_bound_pod(Arc::new(owned("b")), "n1");
        let incoming = owned("c");
        let nodes = [node_info(&cache, "n1"), node_info(&cache, "n2")];
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&mut state, &incoming, &nodes, &cache);
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&state, &incoming, n)).collect();
        PodTopologySpread.normalize(&mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
