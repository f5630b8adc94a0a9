//! The memory budget of requests in flight.
//!
//! A body's bytes say little about what it costs once decoded: a 6.4 MiB review of a Pod with
//! 195,000 small containers takes about 300 MiB as JSON values, one with a 6.4 MiB annotation about
//! 13 MiB. So memory is reserved in two pools: one for bodies being read (by the bytes received, as
//! they arrive), one for decoded requests (by an estimate from the body's shape, before decoding).
//! The two pools are separate so that requests holding bodies while waiting to decode never starve
//! those already decoded.
//!
//! Bodies are charged by what arrives, not by what they declare: a client that declares 7 MiB and
//! sends a byte a second holds a byte a second of the pool, not 7 MiB of it. A body finds room at
//! once or is refused: waiting unread would hold the HTTP/2 connection's flow-control window, and
//! the bodies being read on the same connection would stall behind it. A decoded request waits for
//! room until its deadline. Either refusal is a 503 with the reason; a request that would need more
//! than a whole pool is refused at once.

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB: a u32 of them covers any budget.
const UNIT: usize = 1024;

/// Estimated bytes held per JSON value once decoded and evaluated (a value, its map entry or list
/// slot, and the engine's views of it). Measured: one review of a Pod with 40,000 two-field
/// containers (120,000 values, 1.3 MiB) takes 61 MiB above idle in a release build.
pub const BYTES_PER_VALUE: usize = 512;

/// A reservation; the memory is given back to the pool when it is dropped.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

/// Room for a body being read, grown as its bytes arrive; given back when dropped.
#[derive(Debug)]
pub struct BodyReservation<'a> {
    pool: &'a Pool,
    permit: Option<OwnedSemaphorePermit>,
    units: u32,
}

impl BodyReservation<'_> {
    /// Makes room for `bytes` in all, if the pool has it now.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), BudgetError> {
        let needed = self.pool.units_for(bytes)?;
        if needed <= self.units {
            return Ok(());
        }
        let more = Arc::clone(&self.pool.semaphore)
            .try_acquire_many_owned(needed - self.units)
            .map_err(|_| self.pool.busy(needed))?;
        match self.permit.as_mut() {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        self.units = needed;
        Ok(())
    }
}

/// Why a reservation was not made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "the request needs an estimated {needed_mib} MiB of {pool}, more than the server's budget of {budget_mib} MiB"
    )]
    TooLarge {
        pool: &'static str,
        needed_mib: usize,
        budget_mib: usize,
    },
    #[error(
        "the {pool} budget ({budget_mib} MiB) is in use by other requests (this one needs {needed_mib} MiB)"
    )]
    Busy {
        pool: &'static str,
        needed_mib: usize,
        budget_mib: usize,
    },
}

fn mib(units: u32) -> usize {
    (units as usize).div_ceil(1024)
}

/// One pool of memory.
#[derive(Debug)]
struct Pool {
    name: &'static str,
    units: u32,
    semaphore: Arc<Semaphore>,
}

impl Pool {
    fn new(name: &'static str, bytes: usize) -> Self {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Pool {
            name,
            units,
            semaphore: Arc::new(Semaphore::new(units as usize)),
        }
    }

    /// Units for `bytes`, or the refusal of a request larger than the pool.
    fn units_for(&self, bytes: usize) -> Result<u32, BudgetError> {
        let needed = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        if needed > self.units {
            return Err(BudgetError::TooLarge {
                pool: self.name,
                needed_mib: mib(needed),
                budget_mib: mib(self.units),
            });
        }
        Ok(needed)
    }

    fn busy(&self, needed: u32) -> BudgetError {
        BudgetError::Busy {
            pool: self.name,
            needed_mib: mib(needed),
            budget_mib: mib(self.units),
        }
    }

    /// Waits for room until `deadline`.
    async fn reserve(&self, bytes: usize, deadline: Instant) -> Result<Reservation, BudgetError> {
        let needed = self.units_for(bytes)?;
        let acquire = Arc::clone(&self.semaphore).acquire_many_owned(needed);
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), acquire).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            _ => Err(self.busy(needed)),
        }
    }

    fn in_use(&self) -> usize {
        (self.units as usize).saturating_sub(self.semaphore.available_permits()) * UNIT
    }
}

/// The two pools.
#[derive(Debug)]
pub struct MemoryBudget {
    bodies: Pool,
    decoded: Pool,
}

impl MemoryBudget {
    pub fn new(body_bytes: usize, decoded_bytes: usize) -> Self {
        MemoryBudget {
            bodies: Pool::new("request bodies", body_bytes),
            decoded: Pool::new("decoded requests", decoded_bytes),
        }
    }

    /// An empty reservation for a body about to be read.
    pub fn body(&self) -> BodyReservation<'_> {
        BodyReservation {
            pool: &self.bodies,
            permit: None,
            units: 0,
        }
    }

    /// Reserves room for decoding and evaluating a request whose estimate is `bytes`.
    pub async fn reserve_decoded(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Reservation, BudgetError> {
        self.decoded.reserve(bytes, deadline).await
    }

    /// Bytes reserved now (bodies, decoded).
    pub fn in_use(&self) -> (usize, usize) {
        (self.bodies.in_use(), self.decoded.in_use())
    }
}

/// The estimated memory of a request once decoded: twice its bytes (strings are copied out of the
/// body, and views of the object are built) plus [`BYTES_PER_VALUE`] per JSON value.
pub fn estimate_decoded(body_len: usize, values: usize) -> usize {
    body_len
        .saturating_mul(2)
        .saturating_add(values.saturating_mul(BYTES_PER_VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reservations_wait_for_room_and_give_it_back() {
        let budget = MemoryBudget::new(4 * UNIT, 8 * UNIT);
        let soon = || Instant::now() + Duration::from_millis(50);
        let a = budget.reserve_decoded(6 * UNIT, soon()).await.unwrap();
        assert_eq!(budget.in_use(), (0, 6 * UNIT));
        let busy = budget.reserve_decoded(4 * UNIT, soon()).await.unwrap_err();
        assert!(matches!(busy, BudgetError::Busy { .. }), "{busy}");
        drop(a);
        assert!(budget.reserve_decoded(4 * UNIT, soon()).await.is_ok());
        assert_eq!(budget.in_use(), (0, 0));
        // Bodies grow as they arrive and do not wait.
        let mut body = budget.body();
        body.grow_to(100).unwrap();
        body.grow_to(3 * UNIT).unwrap();
        assert_eq!(budget.in_use(), (3 * UNIT, 0));
        let mut other = budget.body();
        assert!(matches!(
            other.grow_to(2 * UNIT),
            Err(BudgetError::Busy { .. })
        ));
        drop(body);
        assert!(other.grow_to(4 * UNIT).is_ok());
    }

    #[tokio::test]
    async fn a_request_larger_than_the_pool_is_refused_at_once() {
        let budget = MemoryBudget::new(4 * UNIT, 1024 * UNIT);
        let err = budget.body().grow_to(5 * 1024 * UNIT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the request needs an estimated 5 MiB of request bodies, more than the server's budget of 1 MiB"
        );
    }

    #[test]
    fn the_estimate_weighs_values_more_than_bytes() {
        // 6.4 MiB of small containers vs 6.4 MiB in one string.
        let bytes = 6_700_000;
        assert!(estimate_decoded(bytes, 585_000) > 200 * 1024 * 1024);
        assert!(estimate_decoded(bytes, 40) < 16 * 1024 * 1024);
    }
}
