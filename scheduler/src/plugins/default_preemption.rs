//! DefaultPreemption: when a pod fits on no node, find a node where evicting
//! pods of lower `spec.priority` makes room, evicting as few and as unimportant
//! pods as Kubernetes would, and nominate the pod for it. The scheduler then
//! deletes the victims (gracefully), sets `status.nominatedNodeName`, and the pod
//! is scheduled again once they are gone.
//!
//! Not modelled: PodDisruptionBudgets (r8s serves none), and nominated pods are
//! not counted on their node by other pods' filters in the meantime.

use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, FitError, Nomination, PostFilterPlugin, PreFilterPlugin};

pub struct DefaultPreemption {
    /// The profile's PreFilter and Filter plugins: a node is a candidate when the
    /// pod passes them with the victims gone.
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
}

pub fn priority(pod: &PodInfo) -> i32 {
    pod.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn is_terminating(pod: &PodInfo) -> bool {
    pod.pod.metadata.deletion_timestamp.is_some()
}

/// Kubernetes' `PodEligibleToPreemptOthers`: not with `preemptionPolicy: Never`,
/// and not again while the victims of an earlier preemption are still leaving
/// the node the pod was nominated for.
fn eligible(pod: &PodInfo, cache: &Cache) -> bool {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return false;
    }
    let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty());
    let waiting = nominated.and_then(|n| cache.node(n)).is_some_and(|node| {
        node.pods.values().any(|other| is_terminating(other) && priority(other) < priority(pod))
    });
    !waiting
}

/// A node the pod fits on once `victims` are gone.
#[derive(Debug)]
struct Candidate {
    node: String,
    /// Highest priority first.
    victims: Vec<Arc<PodInfo>>,
}

impl Candidate {
    fn highest_priority(&self) -> i32 {
        self.victims.first().map_or(i32::MIN, |v| priority(v))
    }

    fn priority_sum(&self) -> i64 {
        // Kubernetes shifts by MaxInt32 + 1 so that negative priorities add up too.
        self.victims.iter().map(|v| i64::from(priority(v)) + i64::from(i32::MAX) + 1).sum()
    }

    /// When the earliest-started pod of the highest priority among the victims started.
    fn earliest_start_of_highest(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        let highest = self.highest_priority();
        self.victims
            .iter()
            .filter(|v| priority(v) == highest)
            .filter_map(|v| v.pod.status.as_ref()?.start_time.as_ref().map(|t| t.0))
            .min()
    }
}

impl DefaultPreemption {
    fn fits(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> bool {
        self.filter.iter().all(|plugin| plugin.filter(state, pod, node).is_ok())
    }

    /// Kubernetes' `SelectVictimsOnNode`: take away every lower-priority pod; if
    /// the pod then fits, give back as many as possible, most important first.
    fn victims_on(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Option<Vec<Arc<PodInfo>>> {
        let own = priority(pod);
        let mut lower: Vec<Arc<PodInfo>> = node.pods.values().filter(|p| priority(p) < own).cloned().collect();
        if lower.is_empty() {
            return None;
        }
        let mut trial = node.clone();
        for victim in &lower {
            trial.remove_pod(&victim.key);
        }
        if !self.fits(state, pod, &trial) {
            return None;
        }
        lower.sort_by(|a, b| priority(b).cmp(&priority(a)).then_with(|| a.key.cmp(&b.key)));
        let mut victims = Vec::new();
        for candidate in lower {
            trial.add_pod(candidate.clone());
            if !self.fits(state, pod, &trial) {
                trial.remove_pod(&candidate.key);
                victims.push(candidate);
            }
        }
        Some(victims)
    }
}

/// Kubernetes' `pickOneNodeForPreemption`, without PodDisruptionBudgets: the
/// lowest highest-priority victim, then the lowest sum of priorities, then the
/// fewest victims, then the latest start of the highest-priority victims, then
/// the first found.
fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    let keep_best = |candidates: &mut Vec<Candidate>, key: &dyn Fn(&Candidate) -> i64| {
        let best = candidates.iter().map(key).min().unwrap_or(0);
        candidates.retain(|c| key(c) == best);
    };
    keep_best(&mut candidates, &|c| i64::from(c.highest_priority()));
    keep_best(&mut candidates, &|c| c.priority_sum());
    keep_best(&mut candidates, &|c| c.victims.len() as i64);
    let latest = candidates.iter().map(Candidate::earliest_start_of_highest).max().flatten();
    let index = candidates.iter().position(|c| c.earliest_start_of_highest() == latest).unwrap_or(0);
    (index < candidates.len()).then(|| candidates.swap_remove(index))
}

impl PostFilterPlugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        "DefaultPreemption"
    }

    fn post_filter(&self, pod: &PodInfo, cache: &Cache, _: &FitError) -> Option<Nomination> {
        if !eligible(pod, cache) {
            return None;
        }
        let mut state = CycleState::default();
        for plugin in &self.pre_filter {
            plugin.pre_filter(&mut state, pod, cache).ok()?;
        }
        let candidates: Vec<Candidate> = cache
            .nodes()
            .filter_map(|node| {
                let victims = self.victims_on(&state, pod, node)?;
                Some(Candidate { node: node.name.clone(), victims })
            })
            .collect();
        let chosen = pick(candidates)?;
        Some(Nomination { node: chosen.node, victims: chosen.victims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::plugins::testing::*;

    fn with_priority(mut pod: k8s_openapi::api::core::v1::Pod, priority: i32) -> k8s_openapi::api::core::v1::Pod {
        pod.spec.as_mut().unwrap().priority = Some(priority);
        pod
    }

    fn preemption() -> Arc<dyn PostFilterPlugin> {
        default_framework().post_filter[0].clone()
    }

    fn error() -> FitError {
        FitError { nodes: 2, reasons: Default::default() }
    }

    fn cache_with_pods(pods: &[(&str, &str, &str, i32)]) -> Cache {
        let mut cache = cache_with(vec![node("a", "2", "4Gi", &[]), node("b", "2", "4Gi", &[])]);
        for (name, on, cpu, prio) in pods {
            cache.add_bound_pod(Arc::new(info(with_priority(pod(name, cpu, "1Gi"), *prio))), on);
        }
        cache
    }

    fn names(victims: &[Arc<PodInfo>]) -> Vec<&str> {
        victims.iter().map(|v| v.pod.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn evicts_the_lowest_priority_pods_and_only_as_many_as_needed() {
        // a: two small low pods; b: one big pod of middle priority.
        let cache = cache_with_pods(&[("a1", "a", "1", 1), ("a2", "a", "1", 1), ("b1", "b", "2", 5)]);
        let preemptor = info(with_priority(pod("vip", "2", "1Gi"), 10));
        let nomination = preemption().post_filter(&preemptor, &cache, &error()).expect("a nomination");
        assert_eq!(nomination.node, "a", "lower victims win over fewer victims");
        assert_eq!(names(&nomination.victims), ["a1", "a2"]);

        let small = info(with_priority(pod("vip", "1", "1Gi"), 10));
        let nomination = preemption().post_filter(&small, &cache, &error()).expect("a nomination");
        assert_eq!(nomination.node, "a");
        assert_eq!(nomination.victims.len(), 1, "only as many as needed");
    }

    #[test]
    fn never_evicts_equal_or_higher_priority_pods() {
        let cache = cache_with_pods(&[("a1", "a", "2", 10), ("b1", "b", "2", 20)]);
        let preemptor = info(with_priority(pod("p", "1", "1Gi"), 10));
        assert!(preemption().post_filter(&preemptor, &cache, &error()).is_none());
    }

    #[test]
    fn a_pod_that_may_not_preempt_does_not() {
        let cache = cache_with_pods(&[("a1", "a", "2", 0), ("b1", "b", "2", 0)]);
        let mut pod = with_priority(pod("p", "1", "1Gi"), 10);
        pod.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert!(preemption().post_filter(&info(pod), &cache, &error()).is_none());
    }

    #[test]
    fn victims_that_would_not_help_are_not_chosen() {
        // Node b is too small even when empty.
        let mut cache = cache_with(vec![node("a", "2", "4Gi", &[]), node("b", "1", "4Gi", &[])]);
        cache.add_bound_pod(Arc::new(info(with_priority(pod("a1", "2", "1Gi"), 0))), "a");
        cache.add_bound_pod(Arc::new(info(with_priority(pod("b1", "1", "1Gi"), 0))), "b");
        let preemptor = info(with_priority(pod("p", "2", "1Gi"), 1));
        let nomination = preemption().post_filter(&preemptor, &cache, &error()).expect("a nomination");
        assert_eq!(nomination.node, "a");
        assert_eq!(names(&nomination.victims), ["a1"]);
    }
}
