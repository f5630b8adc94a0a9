//! Connection slots: the cap on open connections, and who gives way when it is reached.
//!
//! A connection that has not sent a request yet (still in the TLS handshake, or waiting for its
//! first request) costs a client nothing to hold open. If such connections could keep every slot,
//! a few hundred idle sockets would lock the API server out until their deadlines ran out. So when
//! every slot is taken, the oldest connection that has not sent a request is told to close and the
//! new one takes its slot; connections serving requests are never cut.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for an evicted one to give its slot back.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The open-connection cap and the connections that may give way.
pub struct Slots {
    permits: Arc<Semaphore>,
    /// Connections that have not sent a request yet, by accept order, with their close signal.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

/// One connection's slot; dropping it frees the slot.
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
    /// Notified when this connection must give its slot to a newer one.
    pub close: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

/// What happened to a connection that asked for a slot.
pub enum Admission {
    Admitted(Slot),
    /// An idle connection was told to close for this one.
    AdmittedByEviction(Slot),
    /// Every slot serves requests.
    Refused,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max.max(1))),
            waiting: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection, closing the oldest idle connection when none is free.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        if let Ok(p) = Arc::clone(&self.permits).try_acquire_owned() {
            return Admission::Admitted(self.slot(p));
        }
        let victim = self.lock().pop_first();
        let Some((_, close)) = victim else {
            return Admission::Refused;
        };
        close.notify_one();
        match tokio::time::timeout(EVICTION_WAIT, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(p)) => Admission::AdmittedByEviction(self.slot(p)),
            _ => Admission::Refused,
        }
    }

    /// Connections open now.
    pub fn open(&self, max: usize) -> usize {
        max.saturating_sub(self.permits.available_permits())
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(id, Arc::clone(&close));
        Slot {
            id,
            slots: Arc::clone(self),
            close,
            _permit: permit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        // The map stays consistent whatever panicked while holding it.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// The connection has sent a request: it no longer gives way to newer connections.
    pub fn serving(&self) {
        self.slots.lock().remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_gives_way_and_serving_ones_do_not() {
        let slots = Slots::new(2);
        let Admission::Admitted(first) = slots.admit().await else {
            panic!("a free slot was refused");
        };
        let Admission::Admitted(second) = slots.admit().await else {
            panic!("a free slot was refused");
        };
        second.serving();
        // The first connection closes when told to (as its task would).
        let close = Arc::clone(&first.close);
        let closer = tokio::spawn(async move {
            close.notified().await;
            drop(first);
        });
        let Admission::AdmittedByEviction(third) = slots.admit().await else {
            panic!("the idle connection did not give way");
        };
        closer.await.unwrap();
        third.serving();
        // Both open connections serve requests: a newcomer is refused.
        assert!(matches!(slots.admit().await, Admission::Refused));
        assert_eq!(slots.open(2), 2);
    }
}
