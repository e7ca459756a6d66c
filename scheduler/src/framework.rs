//! The scheduling framework: Kubernetes' extension points, each a trait, and the
//! algorithm that runs them (filter a share of the nodes, score the feasible ones,
//! pick the best). A plugin is one type implementing the points it needs.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};

/// The highest score a plugin gives a node, after normalising.
pub const MAX_NODE_SCORE: i64 = 100;

/// Data plugins keep for the length of one scheduling cycle (what PreFilter and
/// PreScore compute once for all nodes).
#[derive(Default)]
pub struct CycleState {
    /// A handful of entries, read once per plugin and node: a short list scanned
    /// in order costs less than hashing the key every time.
    values: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        let value: Box<dyn Any + Send + Sync> = Box::new(value);
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.values.push((key, value)),
        }
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.values.iter().find(|(k, _)| *k == key)?.1.downcast_ref()
    }
}

/// Why a node cannot take the pod, in Kubernetes' words (counted per reason in the
/// "0/3 nodes are available" message).
pub type Reasons = Vec<String>;

pub trait PreFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Computes what the filter needs; an error rejects the pod on every node.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Result<(), String>;
}

pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons>;
}

/// A node a pod may have once `victims` are gone (what preemption decides).
#[derive(Debug)]
pub struct Nomination {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Runs when no node fits (Kubernetes' preemption lives here). Returns the node
/// the pod is nominated for, if any, and the pods to evict for it; the scheduler
/// carries the evictions out.
pub trait PostFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn post_filter(&self, pod: &PodInfo, cache: &Cache, error: &FitError) -> Option<Nomination>;
}

pub trait PreScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache);
}

pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings raw scores to 0..=MAX_NODE_SCORE (scores already in range keep this default).
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Runs once a node is chosen, before binding; `unreserve` undoes it if binding fails.
pub trait ReservePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn reserve(&self, pod: &PodInfo, node: &str) -> Result<(), String>;
    fn unreserve(&self, pod: &PodInfo, node: &str);
}

/// Kubernetes' `DefaultNormalizeScore`: scales to 0..=100 by the maximum, and
/// reverses if lower raw scores are better.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        *score = MAX_NODE_SCORE * *score / max;
        if reverse {
            *score = MAX_NODE_SCORE - *score;
        }
    }
}

/// No node fits: per reason, on how many nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        parts.sort();
        write!(f, "0/{} nodes are available: {}.", self.nodes, parts.join(", "))
    }
}

/// The plugins of one scheduler profile, per extension point.
#[derive(Default, Clone)]
pub struct Framework {
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
}

/// Kubernetes' adaptive `percentageOfNodesToScore`: in big clusters, stop
/// filtering once this many feasible nodes are found.
pub fn feasible_nodes_to_find(all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = (50 - (all / 125) as i64).max(5) as usize;
    (all * percentage / 100).max(MIN_FEASIBLE)
}

/// The outcome of filtering: the feasible nodes, or why none is.
pub struct Filtered<'a> {
    pub feasible: Vec<&'a NodeInfo>,
    /// How many nodes were looked at (the next search starts after them).
    pub processed: usize,
}

impl Framework {
    /// Runs PreFilter and Filter over the nodes, starting at `start` and going round,
    /// until enough feasible nodes are found.
    pub fn find_feasible<'a>(&self, state: &mut CycleState, pod: &PodInfo, cache: &'a Cache, start: usize) -> Result<Filtered<'a>, FitError> {
        let all = cache.node_count();
        for plugin in &self.pre_filter {
            if let Err(reason) = plugin.pre_filter(state, pod, cache) {
                return Err(FitError { nodes: all, reasons: BTreeMap::from([(reason, all)]) });
            }
        }
        let wanted = feasible_nodes_to_find(all);
        let mut feasible = Vec::with_capacity(wanted);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut processed = 0;
        for offset in 0..all {
            if feasible.len() >= wanted {
                break;
            }
            processed += 1;
            let node = cache.node_at((start + offset) % all);
            match self.filter.iter().try_for_each(|plugin| plugin.filter(state, pod, node)) {
                Ok(()) => feasible.push(node),
                Err(node_reasons) => node_reasons.into_iter().for_each(|r| *reasons.entry(r).or_default() += 1),
            }
        }
        if feasible.is_empty() {
            return Err(FitError { nodes: all, reasons });
        }
        Ok(Filtered { feasible, processed })
    }

    /// Weighted, normalised scores of `nodes`, in the same order.
    pub fn score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) -> Vec<i64> {
        for plugin in &self.pre_score {
            plugin.pre_score(state, pod, nodes, cache);
        }
        let mut totals = vec![0; nodes.len()];
        for (plugin, weight) in &self.score {
            let mut scores: Vec<i64> = nodes.iter().map(|node| plugin.score(state, pod, node)).collect();
            plugin.normalize(&mut scores);
            for (total, score) in totals.iter_mut().zip(scores) {
                *total += score * weight;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_error_reads_like_kubernetes() {
        let error = FitError {
            nodes: 3,
            reasons: BTreeMap::from([
                ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }".to_string(), 2),
                ("Insufficient cpu".to_string(), 1),
            ]),
        };
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
        );
    }

    #[test]
    fn big_clusters_filter_a_share_of_their_nodes() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
    }

    #[test]
    fn normalising_scales_to_the_maximum_and_can_reverse() {
        let mut scores = vec![0, 5, 10];
        default_normalize(&mut scores, false);
        assert_eq!(scores, [0, 50, 100]);
        let mut scores = vec![0, 5, 10];
        default_normalize(&mut scores, true);
        assert_eq!(scores, [100, 50, 0]);
        let mut zeros = vec![0, 0];
        default_normalize(&mut zeros, true);
        assert_eq!(zeros, [100, 100]);
    }
}
