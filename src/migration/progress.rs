//! A run's events: every state change and every batch of a run is one event
//! of its durable history (`sql/functions/events.sql`: a line of the run's
//! row), read the same wherever it is read (the stream, WatchMigration,
//! GetMigration, ListMigrations). The SQL builds what the run's record says
//! (state, counts, health of an end); the executor adds what it measures
//! (timings, rate, pace).
use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::run::Phase;
pub use super::run::RunState;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    #[default]
    Healthy,
    Warning,
    Critical,
}

/// What an event records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    #[default]
    Started,
    Planned,
    Batch,
    Paused,
    Resumed,
    Updated,
    Cancelled,
    ThrottleStarted,
    ThrottleEnded,
    LockBackoff,
    TakenOver,
    /// The database could not be reached; the run waited and went on.
    DatabaseUnavailable,
    Interrupted,
    RollbackStarted,
    Ended,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::Planned => "PLANNED",
            Self::Batch => "BATCH",
            Self::Paused => "PAUSED",
            Self::Resumed => "RESUMED",
            Self::Updated => "UPDATED",
            Self::Cancelled => "CANCELLED",
            Self::ThrottleStarted => "THROTTLE_STARTED",
            Self::ThrottleEnded => "THROTTLE_ENDED",
            Self::LockBackoff => "LOCK_BACKOFF",
            Self::TakenOver => "TAKEN_OVER",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::Interrupted => "INTERRUPTED",
            Self::RollbackStarted => "ROLLBACK_STARTED",
            Self::Ended => "ENDED",
        }
    }
}

/// Why a run goes slower than it could.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThrottleReason {
    #[default]
    None,
    /// The operator's max_transactions_per_second.
    OperatorRateLimit,
    /// The operator's batch_delay_ms.
    OperatorBatchDelay,
    /// Batches waited on the business's row locks: retried smaller, later.
    LockBackoff,
    /// A database signal tripped or could not be read (see `signals`).
    DatabaseSignal,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::OperatorRateLimit => "OPERATOR_RATE_LIMIT",
            Self::OperatorBatchDelay => "OPERATOR_BATCH_DELAY",
            Self::LockBackoff => "LOCK_BACKOFF",
            Self::DatabaseSignal => "DATABASE_SIGNAL",
        }
    }
}

/// Why the next batch has the size it has (see `engine::sizing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SizingReason {
    /// Not reported (events written before sizing was).
    #[default]
    Unspecified,
    /// The operator's batch_size, as set.
    Fixed,
    /// Sized from recent work times to meet the target.
    Target,
    /// Growing towards the target, at most 1.5x a batch.
    GrowthLimit,
    /// A batch worked over five times the target: cut to a tenth.
    OverTarget,
    MinBatchSize,
    MaxBatchSize,
    /// Halved after a lock wait.
    LockBackoff,
}

/// How a run's batches are sized, as of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchSizing {
    /// The next batch's size (0: not reported).
    pub batch_size: i32,
    pub reason: SizingReason,
    /// 0: a fixed batch_size.
    pub target_batch_ms: u32,
    /// The latest batch's time to commit less its waits on locks.
    pub work_ms: f64,
    pub detail: String,
}

/// A run's pace, apart from its health: held back by the operator's own
/// limits is not a warning; backing off from the business's locks is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PacingState {
    pub throttled: bool,
    pub reason: ThrottleReason,
    pub operator_chosen: bool,
    pub detail: String,
    /// Time spent held back so far (waits for the rate limit, batch delays,
    /// lock backoffs), in milliseconds.
    pub throttled_ms: i64,
    pub sizing: BatchSizing,
    /// With reason DatabaseSignal: the signal that slows or holds the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<crate::migration::signals::Signal>,
    /// Every signal the run listens to, as last read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<crate::migration::signals::Reading>,
}

/// One event of a run, as its history stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub migration_id: Uuid,
    pub organization_id: Uuid,
    pub sequence: u64,
    pub kind: EventKind,
    pub phase: Phase,
    pub state: RunState,
    /// Looked at: migrated + skipped + quarantined (a rollback: restored
    /// + already restored + refused).
    pub processed: i64,
    pub remaining: i64,
    /// Reversed and reposted (a rollback: restored; aliases: aliased).
    pub migrated: i64,
    pub skipped_closed: i64,
    pub skipped_unmapped: i64,
    pub quarantined: i64,
    /// Refused by the database: restores (a rollback), aliases.
    pub refused: i64,
    pub batch_number: i64,
    /// Transactions in this event's batch.
    pub batch_transactions: i64,
    pub current_batch_ms: f64,
    pub average_batch_ms: f64,
    pub transactions_per_second: f64,
    pub estimated_completion: Option<DateTime<Utc>>,
    pub health: Health,
    pub errors: i64,
    pub warnings: i64,
    pub lock_backoffs: i64,
    pub pacing: PacingState,
    pub message: String,
    /// Who caused it (the operator's user id), when a person did.
    pub actor: Option<Uuid>,
    pub emitted_at: DateTime<Utc>,
    /// Batches roll back: nothing stays written.
    pub dry_run: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            migration_id: Uuid::nil(),
            organization_id: Uuid::nil(),
            sequence: 0,
            kind: EventKind::default(),
            phase: Phase::default(),
            state: RunState::default(),
            processed: 0,
            remaining: 0,
            migrated: 0,
            skipped_closed: 0,
            skipped_unmapped: 0,
            quarantined: 0,
            refused: 0,
            batch_number: 0,
            batch_transactions: 0,
            current_batch_ms: 0.0,
            average_batch_ms: 0.0,
            transactions_per_second: 0.0,
            estimated_completion: None,
            health: Health::default(),
            errors: 0,
            warnings: 0,
            lock_backoffs: 0,
            pacing: PacingState::default(),
            message: String::new(),
            actor: None,
            emitted_at: DateTime::<Utc>::UNIX_EPOCH,
            dry_run: false,
        }
    }
}

/// The largest percentage of a run that has not ended: 100 only at the end.
const UNFINISHED_CEILING: f64 = 99.99;

impl Progress {
    pub fn skipped(&self) -> i64 {
        self.skipped_closed + self.skipped_unmapped
    }

    /// processed / (processed + remaining), never above 100, and 100 only
    /// once the phase has completed.
    pub fn percentage(&self) -> f64 {
        if matches!(self.state, RunState::Succeeded | RunState::RolledBack) {
            return 100.0;
        }
        let total = self.processed + self.remaining;
        if total == 0 {
            return 0.0;
        }
        (self.processed as f64 * 100.0 / total as f64).min(UNFINISHED_CEILING)
    }
}

/// Throughput over the latest batches: the rate (and the ETA the history
/// derives from it) comes from a recent window, not from the whole run, so
/// it follows throttling and load. A batch's cycle is its own time plus the
/// wait that pacing adds after it; a pause is no batch's cycle.
#[derive(Debug, Default)]
pub struct Throughput {
    recent: VecDeque<(i64, f64)>,
    batches: u64,
    total_ms: f64,
}

const WINDOW: usize = 5;

impl Throughput {
    pub fn record(&mut self, transactions: i64, batch_ms: f64, cycle_ms: f64) {
        self.batches += 1;
        self.total_ms += batch_ms;
        self.recent.push_back((transactions, cycle_ms));
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
    }

    pub fn average_batch_ms(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.total_ms / self.batches as f64
        }
    }

    /// Transactions per second over the window; absent until two batches are done.
    pub fn transactions_per_second(&self) -> Option<f64> {
        if self.batches < 2 {
            return None;
        }
        let (transactions, ms) = self
            .recent
            .iter()
            .fold((0, 0.0), |(n, t), (batch_n, batch_ms)| {
                (n + batch_n, t + batch_ms)
            });
        (ms > 0.0).then(|| transactions as f64 * 1000.0 / ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_waits_for_two_batches_and_follows_the_recent_window() {
        let mut throughput = Throughput::default();
        throughput.record(1000, 1000.0, 1000.0);
        assert_eq!(throughput.transactions_per_second(), None);
        throughput.record(1000, 500.0, 500.0);
        let rate = throughput.transactions_per_second().unwrap();
        assert!((rate - 1333.33).abs() < 0.01, "{rate}");
        for _ in 0..WINDOW {
            throughput.record(1000, 50.0, 100.0);
        }
        assert!((throughput.transactions_per_second().unwrap() - 10_000.0).abs() < 0.01);
    }

    #[test]
    fn the_percentage_never_passes_100_and_reaches_it_only_at_the_end() {
        let running = Progress {
            processed: 120,
            remaining: 0, // more arrived than were counted at the start
            ..Progress::default()
        };
        assert_eq!(running.percentage(), UNFINISHED_CEILING);
        let cancelled = Progress {
            state: RunState::Cancelled,
            processed: 30,
            remaining: 90,
            ..Progress::default()
        };
        assert_eq!(cancelled.percentage(), 25.0);
        let done = Progress {
            state: RunState::Succeeded,
            ..Progress::default()
        };
        assert_eq!(done.percentage(), 100.0);
    }
}
