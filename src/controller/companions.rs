//! The tasks that run beside a controller and stop with it: the fleet count of its cache (which sets the
//! refresh floor) and the pruning of memory left by objects deleted without a last reconcile.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::cache::View;
use super::fleet::{self, Fleet};
use super::memory::{self, Store};

/// The companion tasks of one controller; aborted when dropped.
#[derive(Debug)]
pub struct Companions(Vec<JoinHandle<()>>);

impl Companions {
    /// Starts pruning `memory_of(ctx)` against `reader`, and, with `fleet`, counting `reader`'s objects under
    /// `key`.
    pub fn start<V, M, X>(
        ctx: &Arc<X>,
        memory_of: fn(&X) -> &Store<M>,
        fleet: Option<(Arc<Fleet>, String)>,
        reader: &V,
    ) -> Self
    where
        V: View,
        M: Clone + Default + Send + 'static,
        X: Send + Sync + 'static,
    {
        let mut tasks = Vec::with_capacity(2);
        let ctx = Arc::clone(ctx);
        let pruned = reader.clone();
        tasks.push(tokio::spawn(async move {
            memory::prune(memory_of(&ctx), pruned).await;
        }));
        if let Some((fleet, key)) = fleet {
            tasks.push(tokio::spawn(fleet::track(fleet, key, reader.clone())));
        }
        Companions(tasks)
    }
}

impl Drop for Companions {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
