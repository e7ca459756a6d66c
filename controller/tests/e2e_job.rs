//! Jobs end to end on hollow nodes: completions at the set parallelism, and a
//! failing Job stopped by its backoff limit.

mod common;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use common::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn job(name: &str, completions: i32, exit_code: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "completions": completions, "parallelism": 2, "backoffLimit": 2,
            "template": {
                "metadata": { "annotations": { "hollow.r8s.io/exit-code": exit_code.to_string() } },
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "work", "image": "busybox" }] }
            }
        }
    }))
    .expect("a valid Job")
}

async fn finished_as(jobs: &Api<Job>, name: &str) -> Option<(String, Option<String>, Job)> {
    let job = jobs.get(name).await.ok()?;
    let condition = job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.status == "True")?.clone();
    Some((condition.type_, condition.reason, job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail_by_their_limits() {
    let cluster = common::start(2, Default::default()).await;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), "default");
    jobs.create(&PostParams::default(), &job("ok", 4, 0)).await.expect("create");
    jobs.create(&PostParams::default(), &job("broken", 4, 1)).await.expect("create");

    let (kind, _, done) = eventually("the good Job completes", WAIT, || finished_as(&jobs, "ok")).await;
    assert_eq!(kind, "Complete");
    assert_eq!(done.status.as_ref().unwrap().succeeded, Some(4));
    assert!(done.status.as_ref().unwrap().completion_time.is_some());

    let (kind, reason, failed) = eventually("the broken Job fails", WAIT, || finished_as(&jobs, "broken")).await;
    assert_eq!((kind.as_str(), reason.as_deref()), ("Failed", Some("BackoffLimitExceeded")));
    assert!(failed.status.unwrap().failed.unwrap_or(0) > 2);
}
