//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: a candidate takes the Lease when it is free or expired,
//! the leader renews it every `retry_period`, and stops acting (its work future is
//! dropped) as soon as it fails to renew within `renew_deadline`.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{is_conflict, is_not_found, Error, Result};

#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    /// Who this candidate is (unique per process).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElection {
    /// Kubernetes' defaults (15 s lease, 10 s renew deadline, 2 s retry) in
    /// `kube-system`.
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: "kube-system".into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Waits to become leader, then runs `work` while leading. Returns `work`'s
    /// output, or [`Error::LostLease`] if leadership was lost first.
    pub async fn run<F: Future>(&self, client: Client, work: F) -> Result<F::Output> {
        let leases: Api<Lease> = Api::namespaced(client, &self.namespace);
        loop {
            match self.try_acquire_or_renew(&leases).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, lease = %self.lease_name, "leader election attempt failed"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
        tracing::info!(lease = %self.lease_name, identity = %self.identity, "became leader");
        tokio::select! {
            output = work => Ok(output),
            lost = self.keep_renewing(&leases) => Err(lost),
        }
    }

    async fn keep_renewing(&self, leases: &Api<Lease>) -> Error {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            match self.try_acquire_or_renew(leases).await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => return Error::LostLease(self.lease_name.clone()),
                Err(error) => tracing::warn!(%error, lease = %self.lease_name, "could not renew lease"),
            }
            if last_renewal.elapsed() > self.renew_deadline {
                return Error::LostLease(self.lease_name.clone());
            }
        }
    }

    /// One attempt: true if this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&self, leases: &Api<Lease>) -> Result<bool> {
        let now = crate::time::now_micro();
        let current = match leases.get(&self.lease_name).await {
            Ok(lease) => lease,
            Err(error) if is_not_found(&error) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.lease_name.clone()), ..Default::default() },
                    spec: Some(self.spec_for_new_holder(now, 0)),
                };
                return match leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(error) if is_conflict(&error) => Ok(false),
                    Err(error) => Err(error.into()),
                };
            }
            Err(error) => return Err(error.into()),
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mut updated = current.clone();
        if holder == self.identity {
            let mut renewed = spec;
            renewed.renew_time = Some(now);
            updated.spec = Some(renewed);
        } else {
            let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
                let duration = spec.lease_duration_seconds.unwrap_or(0).max(0) as f64;
                crate::time::seconds_between(&renewed.0, &now.0) > duration
            });
            if !holder.is_empty() && !expired {
                return Ok(false);
            }
            updated.spec = Some(self.spec_for_new_holder(now, spec.lease_transitions.unwrap_or(0) + 1));
        }
        // The resourceVersion in `updated` makes this a compare-and-swap.
        match leases.replace(&self.lease_name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    fn spec_for_new_holder(&self, now: k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}
