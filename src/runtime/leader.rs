//! Leader election on a `coordination.k8s.io/v1` Lease (I/O), after client-go's
//! `leaderelection` package: kube-runtime 5 has none.
//!
//! * Every write is an update guarded by the Lease's `resourceVersion` (or a create when the
//!   Lease does not exist), so two candidates can never both win: the loser gets 409.
//! * Expiry is judged on this process's monotonic clock: a holder's Lease counts as expired
//!   only when its record has not changed for `leaseDurationSeconds` since *we* last saw it
//!   change. Clock skew between replicas therefore does not matter.
//! * A standby polls every retry period. The leader renews every retry period and gives up
//!   when it could not renew for the renew deadline (below the lease duration, so it stops
//!   before anyone else can take over).
//! * On shutdown the leader releases the Lease (empty holder, 1 s duration), so a standby takes
//!   over at its next poll instead of waiting out the lease duration.
//!
//! The RBAC this needs: `get`, `update` on the one Lease (by name) and `create` on leases in its
//! namespace.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (holderIdentity).
    pub identity: String,
    /// leaseDurationSeconds.
    pub duration: Duration,
    /// How long a leader keeps trying to renew before it gives up.
    pub renew_deadline: Duration,
    /// Poll and renew period.
    pub retry_period: Duration,
}

/// The result of one acquire-or-renew attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now (acquired or renewed).
    Held,
    /// Another candidate holds an unexpired Lease.
    HeldBy(String),
    /// The Lease changed under us (409); try again later.
    Conflict,
}

/// How a leader's term ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    /// We were asked to stop (shutdown); the Lease is still ours, to release.
    Stopped,
    /// The Lease was lost: another holder, or no renewal within the renew deadline.
    Lost,
}

/// What we last saw of the Lease and when (monotonic).
#[derive(Clone, Debug)]
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

fn duration_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

impl Elector {
    /// A candidate for `settings.name` in `settings.namespace`.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    fn observe(&mut self, lease: &Lease) {
        let rv = lease.resource_version();
        if self
            .observed
            .as_ref()
            .is_none_or(|o| o.resource_version != rv)
        {
            self.observed = Some(Observed {
                resource_version: rv,
                at: Instant::now(),
            });
        }
    }

    /// One attempt: create the Lease, take it over when free or expired, or renew it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let me = self.settings.identity.clone();
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration_secs(self.settings.duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let current = holder(&lease).map(str::to_owned);
        let ours = current.as_deref() == Some(me.as_str());
        if let Some(other) = current.as_ref().filter(|_| !ours) {
            let held_for = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0).max(1)).unwrap_or(1),
            );
            let seen = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen.elapsed() < held_for {
                return Ok(Attempt::HeldBy(other.clone()));
            }
            info!(previous = %other, "the Lease expired; taking it over");
        }
        let new_spec = LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration_secs(self.settings.duration)),
            acquire_time: if ours {
                spec.acquire_time.clone().or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: if ours {
                spec.lease_transitions
            } else {
                Some(spec.lease_transitions.unwrap_or(0).saturating_add(1))
            },
            ..spec
        };
        lease.spec = Some(new_spec);
        // resourceVersion stays set from the GET: the update is rejected if anyone wrote since.
        lease.metadata.managed_fields = None;
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Polls every retry period until the Lease is ours (true) or `shutdown` turns true
    /// (false).
    pub async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    info!(
                        lease = %self.settings.name,
                        namespace = %self.settings.namespace,
                        identity = %self.settings.identity,
                        "acquired the Lease"
                    );
                    return true;
                }
                Ok(Attempt::HeldBy(h)) => {
                    if last_holder.as_deref() != Some(h.as_str()) {
                        info!(holder = %h, "standing by: another replica holds the Lease");
                        last_holder = Some(h);
                    }
                }
                Ok(Attempt::Conflict) => {}
                Err(e) => warn!(error = %e, "reading or acquiring the Lease failed"),
            }
            let wait = jittered(self.settings.retry_period);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return false,
            }
        }
    }

    /// Renews every retry period until `stop` fires ([`Term::Stopped`]) or the Lease is lost
    /// ([`Term::Lost`]). Returns the elector, to release the Lease afterwards.
    pub async fn keep(mut self, mut stop: oneshot::Receiver<()>) -> (Self, Term) {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                _ = &mut stop => return (self, Term::Stopped),
            }
            let left = self
                .settings
                .renew_deadline
                .saturating_sub(last_renew.elapsed())
                .max(Duration::from_millis(100));
            let attempt = tokio::select! {
                r = tokio::time::timeout(left, self.try_acquire_or_renew()) => r,
                _ = &mut stop => return (self, Term::Stopped),
            };
            match attempt {
                Ok(Ok(Attempt::Held)) => last_renew = Instant::now(),
                Ok(Ok(Attempt::HeldBy(h))) => {
                    warn!(holder = %h, "another replica holds the Lease");
                    return (self, Term::Lost);
                }
                Ok(Ok(Attempt::Conflict)) => warn!("renewing the Lease conflicted"),
                Ok(Err(e)) => warn!(error = %e, "renewing the Lease failed"),
                Err(_) => warn!("renewing the Lease timed out"),
            }
            if last_renew.elapsed() >= self.settings.renew_deadline {
                warn!(
                    deadline = ?self.settings.renew_deadline,
                    "could not renew the Lease within the renew deadline"
                );
                return (self, Term::Lost);
            }
        }
    }

    /// Gives the Lease up if we hold it: empty holder and a 1 s duration, so a standby takes
    /// over at its next poll. Tries twice (a conflict means someone else wrote; re-read).
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        for _ in 0..2 {
            let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
                return Ok(false);
            };
            if holder(&lease) != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.metadata.managed_fields = None;
            match self
                .api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    info!(lease = %self.settings.name, "released the Lease");
                    return Ok(true);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// `d` plus up to 20 % (client-go jitters its retry period by 1.2).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(2) && j <= Duration::from_millis(2400));
        }
    }

    #[test]
    fn empty_holder_is_free() {
        let mut lease = Lease::default();
        assert_eq!(holder(&lease), None);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        });
        assert_eq!(holder(&lease), None);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some("a".into()),
            ..LeaseSpec::default()
        });
        assert_eq!(holder(&lease), Some("a"));
        assert_eq!(duration_secs(Duration::from_millis(10)), 1);
        assert_eq!(duration_secs(Duration::from_secs(15)), 15);
    }
}
