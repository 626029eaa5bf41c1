//! Bytes of request bodies a node reads and holds at once, all clients together: each route
//! bounds one body, and this bounds their sum, so that many large uploads at once cannot take
//! the node's memory. A body's bytes (its `Content-Length`; a body without one, the route's
//! limit) are taken from the budget before it is read, and given back when the last copy of
//! the body is dropped (after its handler, and whatever the handler kept of it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;

use super::ApiError;

/// The budget is kept in units of this many bytes (a semaphore counts in u32).
const UNIT: u64 = 1024;
/// How long a body waits for room in the budget before it is refused.
const WAIT: Duration = Duration::from_secs(1);
/// `Retry-After` of a body refused for want of room.
const RETRY_AFTER_S: u64 = 1;

/// The bytes of request bodies a node may hold at once.
#[derive(Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    total_units: u32,
}

impl BodyBudget {
    pub fn new(bytes: u64) -> Self {
        let total_units = bytes
            .div_ceil(UNIT)
            .min(u32::MAX as u64)
            .min(Semaphore::MAX_PERMITS as u64) as u32;
        BodyBudget {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// Bytes of bodies held now.
    pub fn held_bytes(&self) -> u64 {
        (self.total_units as u64 - self.units.available_permits() as u64) * UNIT
    }

    /// Room for a body of `bytes`, waiting up to `WAIT` for it.
    async fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, ApiError> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.total_units as u64) as u32;
        if let Ok(permit) = self.units.clone().try_acquire_many_owned(units) {
            return Ok(permit);
        }
        match tokio::time::timeout(WAIT, self.units.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                format!(
                    "this node is reading as many request bodies as it may hold at once \
                         (http.max_body_bytes_in_flight, {} bytes); try again shortly",
                    self.total_units as u64 * UNIT
                ),
            )
            .retry_after(RETRY_AFTER_S)),
        }
    }
}

/// A body and its share of the budget, given back when the body is dropped.
struct Held {
    body: Bytes,
    _room: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// The request body, of at most `limit` bytes (413 past it, 411 without a length), read once
/// it fits in `budget` (503 `server_busy` when it does not within a second).
pub fn body(budget: BodyBudget, limit: u64) -> BoxedFilter<(Bytes,)> {
    warp::body::content_length_limit(limit)
        .and(warp::header::optional::<u64>("content-length"))
        .and_then(move |length: Option<u64>| {
            let budget = budget.clone();
            async move {
                budget
                    .take(length.unwrap_or(limit).min(limit))
                    .await
                    .map_err(warp::reject::custom)
            }
        })
        .and(warp::body::bytes())
        .map(|room: OwnedSemaphorePermit, body: Bytes| {
            Bytes::from_owner(Held { body, _room: room })
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_wait_for_room_and_give_it_back() {
        let budget = BodyBudget::new(10 * UNIT);
        let first = budget.take(8 * UNIT).await.unwrap();
        assert_eq!(budget.held_bytes(), 8 * UNIT);
        let refused = budget.take(4 * UNIT).await.unwrap_err();
        assert_eq!(refused.code, "server_busy");
        assert_eq!(refused.retry_after_s, Some(RETRY_AFTER_S));
        // A body larger than the whole budget waits for all of it.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(100 * UNIT).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        waiting.await.unwrap().unwrap();
        let held = Bytes::from_owner(Held {
            body: Bytes::from_static(b"abc"),
            _room: budget.take(3 * UNIT).await.unwrap(),
        });
        let copy = held.clone();
        drop(held);
        assert_eq!(budget.held_bytes(), 3 * UNIT);
        drop(copy);
        assert_eq!(budget.held_bytes(), 0);
    }
}
