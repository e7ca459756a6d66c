//! PriorityClasses and the Priority admission of pods, over HTTP.

mod common;

use common::{pod, start};
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";

fn class(name: &str, value: i64, global_default: bool) -> serde_json::Value {
    json!({ "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": { "name": name }, "value": value, "globalDefault": global_default })
}

fn pod_of_class(name: &str, class: &str) -> serde_json::Value {
    let mut pod = pod(name);
    pod["spec"]["priorityClassName"] = json!(class);
    pod
}

#[tokio::test]
async fn a_pods_class_sets_its_priority_and_preemption_policy() {
    let server = start().await;
    let system = server.get(&format!("{CLASSES}/system-node-critical")).await;
    assert_eq!(system.code, 200, "the system classes are bootstrapped");
    assert_eq!(system.body["value"], 2_000_001_000);

    let created = server.post(CLASSES, class("high", 1000, false)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["preemptionPolicy"], "PreemptLowerPriority");
    let high = server.post(PODS, pod_of_class("important", "high")).await;
    assert_eq!(high.code, 201, "{}", high.body);
    assert_eq!(high.body["spec"]["priority"], 1000);
    assert_eq!(high.body["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    let plain = server.post(PODS, pod("plain")).await;
    assert_eq!(plain.body["spec"]["priority"], 0, "no class and no default: priority 0");
    assert!(server.post(CLASSES, class("usual", 7, true)).await.code == 201);
    let defaulted = server.post(PODS, pod("defaulted")).await;
    assert_eq!(defaulted.body["spec"]["priority"], 7);
    assert_eq!(defaulted.body["spec"]["priorityClassName"], "usual");
}

#[tokio::test]
async fn unknown_classes_and_contradicting_priorities_are_forbidden() {
    let server = start().await;
    let unknown = server.post(PODS, pod_of_class("lost", "nope")).await;
    assert_eq!(unknown.code, 403);
    assert_eq!(unknown.body["message"], "pods \"lost\" is forbidden: no PriorityClass with name nope was found");

    let mut given = pod("given");
    given["spec"]["priority"] = json!(5);
    let contradicting = server.post(PODS, given).await;
    assert_eq!(contradicting.code, 403);
    assert_eq!(
        contradicting.body["message"],
        "pods \"given\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
    );

    let reserved = server.post(CLASSES, class("system-mine", 5, false)).await;
    assert_eq!(reserved.code, 422);
    let too_high = server.post(CLASSES, class("huge", 1_000_000_001, false)).await;
    assert_eq!(too_high.code, 422);
    assert_eq!(too_high.body["details"]["causes"][0]["field"], "value");
}
