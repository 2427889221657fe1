//! How fast a run may go: the operator's limits (a rate, a pause between
//! batches), and backing off when batches wait on the business's row locks.
use std::time::Duration;

use super::sizing::Bounds;
use crate::migration::{
    progress::{BatchSizing, PacingState, ThrottleReason},
    run::Parameters,
    signals::{self, Effective},
};

/// The smallest batch a run backs off to.
const MIN_BATCH: i32 = 1;
/// The first wait before retrying a batch that timed out on locks; it doubles
/// with each consecutive retry, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The limits a run's parameters set, read before every wait (so that
/// UpdateMigration takes effect from the next batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub max_transactions_per_second: Option<f64>,
    pub batch_delay: Duration,
    /// What sizes the batches: the run's batch_size, or its target.
    pub sizing: Bounds,
    /// The database signals it listens to, as set.
    pub signals: [Effective; 4],
}

impl Pacing {
    pub fn of(parameters: &Parameters) -> Self {
        Self {
            max_transactions_per_second: parameters
                .max_transactions_per_second
                .filter(|rate| rate.is_finite() && *rate > 0.0),
            batch_delay: Duration::from_millis(u64::from(parameters.batch_delay_ms)),
            sizing: Bounds::of(parameters),
            signals: signals::effective(&parameters.signals),
        }
    }

    /// How long to wait after a batch of `transactions` that took `took`:
    /// enough for the run to stay under its rate, plus the batch delay. The
    /// flag says whether the rate limit is what holds the run back.
    pub fn wait_after(&self, transactions: i64, took: Duration) -> (Duration, bool) {
        let throttle = self
            .max_transactions_per_second
            .map(|rate| Duration::from_secs_f64(transactions.max(0) as f64 / rate))
            .and_then(|allowed| allowed.checked_sub(took))
            .filter(|wait| !wait.is_zero());
        (
            throttle.unwrap_or_default() + self.batch_delay,
            throttle.is_some(),
        )
    }

    /// What holds the run back after a batch, given whether its rate limit
    /// made it wait (`rate_binding`) and the time held back so far: the
    /// operator's own limits, never a warning; `sizing` is how the next
    /// batch is sized.
    pub fn state(&self, rate_binding: bool, throttled_ms: i64, sizing: BatchSizing) -> PacingState {
        let (reason, detail) = match self.max_transactions_per_second {
            Some(rate) if rate_binding => (
                ThrottleReason::OperatorRateLimit,
                format!("held to the operator's limit of {rate} transactions/s"),
            ),
            _ if !self.batch_delay.is_zero() => (
                ThrottleReason::OperatorBatchDelay,
                format!(
                    "waiting {} ms between batches, as the operator set",
                    self.batch_delay.as_millis()
                ),
            ),
            Some(rate) => (
                ThrottleReason::None,
                format!("under the operator's limit of {rate} transactions/s"),
            ),
            None => (ThrottleReason::None, String::new()),
        };
        let throttled = reason != ThrottleReason::None;
        PacingState {
            throttled,
            reason,
            operator_chosen: throttled,
            detail,
            throttled_ms,
            sizing,
            ..PacingState::default()
        }
    }
}

/// A run backing off from the business's row locks: not the operator's
/// choice, and a person may need to look.
pub fn backing_off(detail: String, throttled_ms: i64, sizing: BatchSizing) -> PacingState {
    PacingState {
        throttled: true,
        reason: ThrottleReason::LockBackoff,
        operator_chosen: false,
        detail,
        throttled_ms,
        sizing,
        ..PacingState::default()
    }
}

/// Backing off from lock waits: each consecutive retry halves the batch and
/// doubles the wait; each committed batch doubles the size back.
#[derive(Debug, Default)]
pub struct Backoff {
    retries: u32,
    batch_size: Option<i32>,
}

impl Backoff {
    /// The batch size to ask for: `None` means the run's own.
    pub fn batch_size(&self) -> Option<i32> {
        self.batch_size
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// A batch timed out on locks: the next one is smaller and waits first.
    pub fn retry(&mut self, configured: i32) -> Duration {
        let current = self.batch_size.unwrap_or(configured);
        self.batch_size = Some((current / 2).max(MIN_BATCH));
        let wait = FIRST_BACKOFF.saturating_mul(1 << self.retries.min(16));
        self.retries += 1;
        wait.min(MAX_BACKOFF)
    }

    /// A batch committed: grow back towards the run's own size.
    pub fn committed(&mut self, configured: i32) {
        self.retries = 0;
        self.batch_size = self
            .batch_size
            .map(|size| size.saturating_mul(2))
            .filter(|size| *size < configured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(rate: Option<f64>, delay_ms: u64) -> Pacing {
        Pacing {
            max_transactions_per_second: rate,
            batch_delay: Duration::from_millis(delay_ms),
            sizing: Bounds::of(&Parameters::default()),
            signals: signals::effective(&Default::default()),
        }
    }

    #[test]
    fn a_rate_limit_waits_out_the_rest_of_the_batch_time_it_allows() {
        let limited = pacing(Some(100.0), 0);
        assert_eq!(
            limited.wait_after(50, Duration::from_millis(200)),
            (Duration::from_millis(300), true)
        );
        assert_eq!(
            limited.wait_after(50, Duration::from_millis(600)),
            (Duration::ZERO, false)
        );
        assert_eq!(
            pacing(Some(100.0), 40).wait_after(50, Duration::from_millis(200)),
            (Duration::from_millis(340), true)
        );
        assert_eq!(
            pacing(None, 40).wait_after(50, Duration::from_millis(200)),
            (Duration::from_millis(40), false)
        );
    }

    #[test]
    fn lock_waits_halve_the_batch_and_double_the_wait_and_commits_grow_it_back() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.retry(1000), Duration::from_millis(100));
        assert_eq!(backoff.batch_size(), Some(500));
        assert_eq!(backoff.retry(1000), Duration::from_millis(200));
        assert_eq!(backoff.batch_size(), Some(250));
        for _ in 0..20 {
            assert!(backoff.retry(1000) <= MAX_BACKOFF);
        }
        assert_eq!(backoff.batch_size(), Some(1));
        backoff.committed(1000);
        assert_eq!((backoff.batch_size(), backoff.retries()), (Some(2), 0));
        for _ in 0..10 {
            backoff.committed(1000);
        }
        assert_eq!(backoff.batch_size(), None);
    }
}
