//! A consumer's prefetch credit: how many more unacked deliveries it may receive.
//!
//! `basic.qos` may change the limit while the consumer runs (kombu/Celery raise it by one per
//! held ETA task and expect the running consumer to see it, as the 0-9-1 spec and LavinMQ
//! have it). Raising adds permits at once; lowering forgets free permits and records the rest
//! as debt, which settles pay off before any permit is given back.
//!
//! A consumer's credit may draw on its channel's credit too (`basic.qos global=true`, RabbitMQ's
//! channel-wide limit shared by the channel's consumers): a delivery then takes one permit of
//! each and a settle returns one to each, so both limits apply. The channel's credit has no
//! channel of its own.
//!
//! Invariant: free permits + unacked deliveries - debt == limit (0 meaning unlimited, kept as
//! [`UNLIMITED`] permits), for the consumer's and the channel's credit alike.

use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{AcquireError, Semaphore};

/// The permits that stand for `prefetch_count = 0` (no limit).
pub const UNLIMITED: usize = 1 << 24;

#[derive(Debug)]
pub struct Credit {
    permits: Semaphore,
    /// The current limit in permits, and the permits still to swallow after a lowering.
    books: Mutex<Books>,
    /// Mirrors `books.debt` so the common release path can skip the lock.
    debt_hint: AtomicUsize,
    /// The channel-wide credit this one also draws on.
    channel: Option<Arc<Credit>>,
}

#[derive(Debug)]
struct Books {
    limit: usize,
    debt: usize,
}

fn permits_for(prefetch_count: u16) -> usize {
    match prefetch_count {
        0 => UNLIMITED,
        n => usize::from(n),
    }
}

impl Credit {
    pub fn new(prefetch_count: u16) -> Self {
        let limit = permits_for(prefetch_count);
        Self {
            permits: Semaphore::new(limit),
            books: Mutex::new(Books { limit, debt: 0 }),
            debt_hint: AtomicUsize::new(0),
            channel: None,
        }
    }

    /// A consumer's credit that also draws on its channel's (which must have no channel itself).
    pub fn within_channel(prefetch_count: u16, channel: Arc<Credit>) -> Self {
        debug_assert!(channel.channel.is_none(), "channel credit nests one level");
        Self {
            channel: Some(channel),
            ..Self::new(prefetch_count)
        }
    }

    /// Waits for one permit (and one of the channel's) and keeps it (it comes back through
    /// [`Credit::release`]). Cancel-safe: a permit held while waiting for the channel's is
    /// given back when the future is dropped.
    pub async fn acquire_one(&self) -> Result<(), AcquireError> {
        let own = self.permits.acquire().await?;
        if let Some(channel) = &self.channel {
            channel.permits.acquire().await?.forget();
        }
        own.forget();
        Ok(())
    }

    /// Takes up to `max` more permits (as many of the channel's) without waiting; returns how
    /// many.
    pub fn try_take(&self, max: usize) -> usize {
        let own = self.take_local(max);
        let Some(channel) = &self.channel else {
            return own;
        };
        let shared = channel.take_local(own);
        self.release_local(own - shared);
        shared
    }

    /// Gives back `count` permits (settled or unused deliveries), paying debt first.
    pub fn release(&self, count: usize) {
        self.release_local(count);
        if let Some(channel) = &self.channel {
            channel.release_local(count);
        }
    }

    fn take_local(&self, max: usize) -> usize {
        let wanted = self.permits.available_permits().min(max);
        match u32::try_from(wanted).map(|n| self.permits.try_acquire_many(n)) {
            Ok(Ok(permits)) if wanted > 0 => {
                permits.forget();
                wanted
            }
            _ => 0,
        }
    }

    fn release_local(&self, count: usize) {
        if count == 0 {
            return;
        }
        if self.debt_hint.load(Ordering::Acquire) == 0 {
            self.permits.add_permits(count);
            return;
        }
        let mut books = self.books.lock();
        let paid = books.debt.min(count);
        books.debt -= paid;
        self.debt_hint.store(books.debt, Ordering::Release);
        drop(books);
        self.permits.add_permits(count - paid);
    }

    /// Applies a new `prefetch_count` to the running consumer (or, for a channel's credit, to
    /// the channel); the channel's limit is left alone.
    pub fn set_limit(&self, prefetch_count: u16) {
        let limit = permits_for(prefetch_count);
        let mut books = self.books.lock();
        if limit > books.limit {
            let mut raise = limit - books.limit;
            let cancelled = books.debt.min(raise);
            books.debt -= cancelled;
            raise -= cancelled;
            self.permits.add_permits(raise);
        } else {
            let lower = books.limit - limit;
            let forgotten = self.permits.forget_permits(lower);
            books.debt += lower - forgotten;
        }
        books.limit = limit;
        self.debt_hint.store(books.debt, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(credit: &Credit) -> usize {
        credit.try_take(usize::MAX)
    }

    #[test]
    fn raising_frees_permits_for_a_full_consumer() {
        let credit = Credit::new(2);
        assert_eq!(take_all(&credit), 2);
        credit.set_limit(3);
        assert_eq!(take_all(&credit), 1, "one more delivery allowed at once");
        credit.release(3);
        assert_eq!(take_all(&credit), 3);
    }

    #[test]
    fn lowering_is_paid_by_settles_before_permits_return() {
        let credit = Credit::new(4);
        assert_eq!(credit.try_take(3), 3);
        credit.set_limit(1); // one free permit forgotten, two owed
        assert_eq!(take_all(&credit), 0);
        credit.release(2);
        assert_eq!(take_all(&credit), 0, "both settles paid the debt");
        credit.release(1);
        assert_eq!(take_all(&credit), 1, "back at the new limit of one");
        credit.set_limit(0);
        assert_eq!(take_all(&credit), UNLIMITED - 1, "0 means unlimited");
    }

    #[test]
    fn a_raise_cancels_outstanding_debt_first() {
        let credit = Credit::new(3);
        assert_eq!(take_all(&credit), 3);
        credit.set_limit(1); // owes two
        credit.set_limit(4); // cancels the two, adds one
        assert_eq!(take_all(&credit), 1);
        credit.release(3);
        assert_eq!(take_all(&credit), 3);
    }

    #[test]
    fn consumers_of_a_channel_share_its_limit_and_keep_their_own() {
        let channel = Arc::new(Credit::new(3));
        let a = Credit::within_channel(2, channel.clone());
        let b = Credit::within_channel(0, channel.clone());
        assert_eq!(take_all(&a), 2, "a's own limit");
        assert_eq!(take_all(&b), 1, "what the channel has left");
        a.release(1);
        assert_eq!(take_all(&b), 1, "a's settle freed a channel permit");
        assert_eq!(take_all(&a), 0, "the channel is full again");
        channel.set_limit(5);
        assert_eq!(take_all(&a), 1);
        assert_eq!(take_all(&b), 1);
        channel.set_limit(0);
        assert_eq!(take_all(&a), 0, "a is at its own limit");
        assert_eq!(
            take_all(&b),
            UNLIMITED - 5,
            "five deliveries are outstanding"
        );
    }
}
