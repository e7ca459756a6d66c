//! TaintToleration: NoSchedule and NoExecute taints the pod does not tolerate
//! filter the node out; untolerated PreferNoSchedule taints lower its score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{default_normalize, CycleState, FilterPlugin, Reasons, ScorePlugin};

pub struct TaintToleration;

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn toleration_matches(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        _ => false,
    }
}

pub fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

pub fn tolerates(pod: &PodInfo, taint: &Taint) -> bool {
    tolerations(pod).iter().any(|t| toleration_matches(t, taint))
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let untolerated = node.taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !tolerates(pod, t));
        match untolerated {
            Some(taint) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )]),
            None => Ok(()),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// The number of PreferNoSchedule taints not tolerated (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let prefer: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| toleration_matches(tol, t)))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    fn tainted(name: &str, key: &str, effect: &str) -> k8s_openapi::api::core::v1::Node {
        let mut n = node(name, "1", "1Gi", &[]);
        n.spec.as_mut().unwrap().taints = Some(vec![Taint { key: key.into(), effect: effect.into(), ..Default::default() }]);
        n
    }

    #[test]
    fn untolerated_no_execute_taints_filter_with_the_taint_named() {
        let cache = cache_with(vec![tainted("n1", "node.kubernetes.io/unreachable", "NoExecute")]);
        let plain = info(pod("p", "0", "0"));
        let state = CycleState::default();
        assert_eq!(
            TaintToleration.filter(&state, &plain, node_info(&cache, "n1")),
            Err(vec!["node(s) had untolerated taint {node.kubernetes.io/unreachable: }".into()])
        );
        let mut tolerant = pod("q", "0", "0");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert!(TaintToleration.filter(&state, &info(tolerant), node_info(&cache, "n1")).is_ok());
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let cache = cache_with(vec![tainted("n1", "spot", "PreferNoSchedule"), node("n2", "1", "1Gi", &[])]);
        let pod = info(pod("p", "0", "0"));
        let state = CycleState::default();
        let mut scores = vec![
            TaintToleration.score(&state, &pod, node_info(&cache, "n1")),
            TaintToleration.score(&state, &pod, node_info(&cache, "n2")),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
    }
}
