//! The Job controller: runs pods until `completions` succeed, at most
//! `parallelism` at a time; gives up past `backoffLimit` failures or
//! `activeDeadlineSeconds`, with the Complete and Failed conditions; deletes a
//! finished Job after `ttlSecondsAfterFinished`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use client::expectations::Expectations;
use client::informer::Informer;
use client::queue::{run_workers, Requeue, WorkQueue};
use client::{is_not_found, object_key, split_key, AbortOnDrop};

use crate::pods::{self, controller_reference};
use crate::{Error, Result, SharedContext};

const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// What one reconcile of a Job changes.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: usize,
    pub delete: Vec<Arc<Pod>>,
    pub status: JobStatus,
    /// Delete the Job itself (its TTL after finishing ran out).
    pub delete_job: bool,
    pub requeue_after: Option<Duration>,
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn finished(status: &JobStatus) -> Option<&JobCondition> {
    status.conditions.iter().flatten().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(type_: &str, reason: Option<&str>, message: Option<&str>, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.map(String::from),
        message: message.map(String::from),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn after(start: Timestamp, seconds: i64) -> Timestamp {
    start.checked_add(SignedDuration::from_secs(seconds)).unwrap_or(start)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::from_secs_f64(client::time::seconds_between(&now, &then).max(0.0) + 0.1)
}

/// Plans one reconcile from the Job and the pods it controls.
pub fn plan(job: &Job, owned: &[Arc<Pod>], now: Timestamp, may_scale: bool) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    if let Some(done) = finished(&status) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished_at = done.last_transition_time.as_ref().map_or(now, |t| t.0);
            let expiry = after(finished_at, i64::from(ttl));
            if expiry <= now {
                plan.delete_job = true;
            } else {
                plan.requeue_after = Some(until(now, expiry));
            }
        }
        plan.status = status;
        return plan;
    }
    let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| pods::is_active(p)).cloned().collect();
    let succeeded = owned.iter().filter(|p| phase(p) == Some("Succeeded")).count() as i32;
    let failed = owned.iter().filter(|p| phase(p) == Some("Failed")).count() as i32;
    status.succeeded = Some(status.succeeded.unwrap_or(0).max(succeeded));
    status.failed = Some(status.failed.unwrap_or(0).max(failed));
    let start = status.start_time.get_or_insert(Time(now)).clone();
    let (succeeded, failed) = (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));

    let failure = if failed > spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT) {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if spec.active_deadline_seconds.is_some_and(|d| after(start.0, d) <= now) {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let complete = match spec.completions {
        Some(completions) => succeeded >= completions,
        None => succeeded > 0 && active.is_empty(),
    };
    if let Some((reason, message)) = failure {
        plan.delete = active.clone();
        active.clear();
        status.conditions.get_or_insert_with(Vec::new).push(condition("Failed", Some(reason), Some(message), now));
    } else if complete {
        status.completion_time = Some(Time(now));
        status.conditions.get_or_insert_with(Vec::new).push(condition("Complete", None, None, now));
    } else if may_scale {
        let wanted = match spec.completions {
            Some(completions) => parallelism.min(completions - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        if active.len() < wanted {
            plan.create = wanted - active.len();
        } else if active.len() > wanted {
            active.sort_by(|a, b| pods::deletion_order(a, b));
            plan.delete = active[..active.len() - wanted].to_vec();
        }
        if let Some(deadline) = spec.active_deadline_seconds {
            plan.requeue_after = Some(until(now, after(start.0, deadline)));
        }
    }
    status.active = Some(active.len() as i32 - plan.delete.len().min(active.len()) as i32);
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    plan.status = status;
    plan
}

pub struct JobController {
    ctx: SharedContext,
    jobs: Informer<Job>,
    queue: WorkQueue,
    expectations: Arc<Expectations>,
}

impl JobController {
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let controller =
            Arc::new(Self { ctx: ctx.clone(), jobs: Informer::new(), queue: WorkQueue::new(), expectations: Arc::default() });
        let queue = controller.queue.clone();
        controller.jobs.on_change(move |change| {
            let job = change.object();
            queue.add(object_key(job.metadata.namespace.as_deref(), &job.name_any()));
        });
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        ctx.informers.pods.on_change(move |change| {
            let pod = change.object();
            let Some(owner) = pods::controller_of(&pod.metadata).filter(|o| o.kind == "Job") else { return };
            let key = object_key(pod.metadata.namespace.as_deref(), &owner.name);
            match change {
                client::informer::Change::Applied { old: None, .. } => expectations.creation_observed(&key),
                client::informer::Change::Deleted(old) => expectations.deletion_observed(&key, &old.uid().unwrap_or_default()),
                _ => {}
            }
            queue.add(key);
        });
        controller
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let _watch = AbortOnDrop(vec![self.jobs.start(Api::all(self.ctx.client.clone()), watcher::Config::default())]);
        let controller = self.clone();
        run_workers("job", self.queue.clone(), workers, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let Some(job) = self.jobs.get_by_key(key) else {
            self.expectations.remove(key);
            return Ok(Requeue::No);
        };
        let (namespace, name) = split_key(key);
        let namespace = namespace.unwrap_or_default();
        let uid = job.uid().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self
            .ctx
            .informers
            .pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|p| pods::controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
            .collect();
        let plan = plan(&job, &owned, client::time::now().0, self.expectations.satisfied(key));
        let jobs: Api<Job> = Api::namespaced(self.ctx.client.clone(), namespace);
        if plan.delete_job {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            match jobs.delete(name, &params).await {
                Err(error) if !is_not_found(&error) => return Err(error.into()),
                _ => return Ok(Requeue::No),
            }
        }
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);
        if plan.create > 0 {
            let template = job.spec.as_ref().map(|s| s.template.clone()).ok_or_else(|| Error::Invalid("Job without spec".into()))?;
            let mut pod = pods::pod_from_template(&template, namespace, name, controller_reference("batch/v1", "Job", &job.metadata));
            let labels = pod.metadata.labels.get_or_insert_with(Default::default);
            labels.insert("batch.kubernetes.io/controller-uid".into(), job.uid().unwrap_or_default());
            labels.insert("batch.kubernetes.io/job-name".into(), name.to_string());
            self.expectations.expect(key, plan.create, []);
            for _ in 0..plan.create {
                if let Err(error) = pod_api.create(&PostParams::default(), &pod).await {
                    self.expectations.creation_observed(key);
                    return Err(error.into());
                }
            }
        }
        if !plan.delete.is_empty() {
            self.expectations.expect(key, 0, plan.delete.iter().filter_map(|p| p.uid()));
            for pod in &plan.delete {
                match pod_api.delete(&pod.name_any(), &DeleteParams::default()).await {
                    Err(error) if !is_not_found(&error) => return Err(error.into()),
                    _ => {}
                }
            }
        }
        if job.status.as_ref() != Some(&plan.status) {
            match jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": plan.status }))).await {
                Err(error) if !is_not_found(&error) => return Err(error.into()),
                _ => {}
            }
        }
        Ok(plan.requeue_after.map_or(Requeue::No, Requeue::After))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;
    use k8s_openapi::api::batch::v1::JobSpec;

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            spec: Some(JobSpec { completions, parallelism: Some(parallelism), backoff_limit: Some(1), ..Default::default() }),
            ..Default::default()
        }
    }

    fn finished_pod(name: &str, phase: &str) -> Arc<Pod> {
        let mut p = pod(name, &[]);
        p.status.as_mut().unwrap().phase = Some(phase.into());
        Arc::new(p)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn runs_parallelism_pods_until_completions_succeed() {
        let plan = plan(&job(Some(5), 2), &[], at(0), true);
        assert_eq!(plan.create, 2);
        let done: Vec<_> = (0..4).map(|i| finished_pod(&format!("p{i}"), "Succeeded")).collect();
        let plan = super::plan(&job(Some(5), 2), &done, at(1), true);
        assert_eq!(plan.create, 1, "only one completion left");
        let all: Vec<_> = (0..5).map(|i| finished_pod(&format!("p{i}"), "Succeeded")).collect();
        let plan = super::plan(&job(Some(5), 2), &all, at(2), true);
        assert_eq!(plan.status.conditions.unwrap()[0].type_, "Complete");
        assert_eq!(plan.status.succeeded, Some(5));
    }

    #[test]
    fn too_many_failures_fail_the_job() {
        let failed = vec![finished_pod("a", "Failed"), finished_pod("b", "Failed"), Arc::new(pod("c", &[]))];
        let plan = plan(&job(Some(1), 1), &failed, at(0), true);
        let condition = &plan.status.conditions.unwrap()[0];
        assert_eq!((condition.type_.as_str(), condition.reason.as_deref()), ("Failed", Some("BackoffLimitExceeded")));
        assert_eq!(plan.delete.len(), 1, "the active pod is stopped");
    }

    #[test]
    fn the_active_deadline_fails_the_job() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let plan = plan(&j, &[Arc::new(pod("a", &[]))], at(11), true);
        assert_eq!(plan.status.conditions.unwrap()[0].reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn a_finished_job_is_deleted_after_its_ttl() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(30);
        j.status = Some(JobStatus { conditions: Some(vec![condition("Complete", None, None, at(100))]), ..Default::default() });
        assert!(!plan(&j, &[], at(120), true).delete_job);
        assert!(plan(&j, &[], at(131), true).delete_job);
    }
}
