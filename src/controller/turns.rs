//! Reconciles take turns, first come, first served: at most `--concurrency` run at once per
//! controller. kube-runtime's own limit is not used, because with every slot busy its runner
//! keeps the ready objects in a HashSet and serves them in hash order: under sustained load some
//! objects waited without bound (the fleet benchmark: 2,579 of 5,000 extensions not reconciled
//! once after 8 minutes, while the others were reconciled again and again).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

/// A fair (FIFO) gate of a fixed number of turns.
#[derive(Debug)]
pub struct Turns(Arc<Semaphore>);

impl Turns {
    /// `n` turns at once (at least one).
    pub fn new(n: u16) -> Self {
        Turns(Arc::new(Semaphore::new(usize::from(n.max(1)))))
    }

    /// Waits for a turn, in arrival order; `None` once the gate is closed.
    pub async fn take(&self) -> Option<SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }

    /// `shutdown`, after which the gate is closed: callers still waiting get `None` at once, so
    /// a graceful shutdown waits only for the reconciles running.
    pub fn closing<S>(&self, shutdown: S) -> impl Future<Output = ()> + Send + Sync + 'static
    where
        S: Future<Output = ()> + Send + Sync + 'static,
    {
        let gate = Arc::clone(&self.0);
        async move {
            shutdown.await;
            gate.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_go_in_arrival_order_and_stop_at_shutdown() {
        let turns = Arc::new(Turns::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take().await.unwrap();
        let mut waiting = Vec::new();
        for i in 0..20 {
            let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                if let Some(_t) = turns.take().await {
                    order.lock().unwrap().push(i);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
            // Each task queues before the next is spawned.
            tokio::task::yield_now().await;
        }
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());

        let held = turns.take().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(turns.closing(async move {
            let _ = rx.await;
        }));
        let t = Arc::clone(&turns);
        let late = tokio::spawn(async move { t.take().await.is_some() });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        assert!(
            !late.await.unwrap(),
            "a reconcile waiting at shutdown does not run"
        );
        drop(held);
        assert!(turns.take().await.is_none());
    }
}
