//! One batch of a run's phase: one database transaction, its span, its
//! events, and the lock waits that make the executor back off.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Executor;
use crate::{
    db::scope,
    error::{Error, Result},
    metrics::BatchFigures,
    migration::{
        engine::{
            pacing::Pacing,
            report::{self, BatchResult},
            sizing::Bounds,
        },
        progress::{BatchSizing, EventKind, PacingState, SizingReason, ThrottleReason},
        run::{Phase, store},
    },
};

/// SQLSTATEs of a batch that waited on the business's locks: lock_not_available
/// (lock_timeout), deadlock_detected, serialization_failure. Retried smaller.
const LOCK_WAITS: [&str; 3] = ["55P03", "40P01", "40001"];

/// A committed batch, with the pace the run's row asked for at that moment.
pub(super) struct Committed {
    pub result: BatchResult,
    pub pacing: Pacing,
    /// How long the batch took, up to its commit.
    pub took: Duration,
}

impl Executor {
    /// One batch of the run's phase in one database transaction, committed
    /// (or rolled back, for a dry run) with its events, inside its
    /// `migration.batch` span.
    pub(super) async fn batch(&mut self, batch_size: i32, started: Instant) -> Result<Committed> {
        let span = tracing::info_span!(
            "migration.batch",
            organization_id = %self.organization_id,
            migration_id = %self.id,
            migration.phase = self.phase.as_str(),
            batch.number = tracing::field::Empty,
            batch.size = tracing::field::Empty,
            batch.duration_ms = tracing::field::Empty,
            batch.transactions_per_second = tracing::field::Empty,
            batch.balanced = tracing::field::Empty,
            batch.outcome = tracing::field::Empty,
            dry_run = self.dry_run,
        );
        let transaction = self.batch_transaction(batch_size, started);
        let committed = match tracing::Instrument::instrument(transaction, span.clone()).await {
            Ok(committed) => committed,
            Err(error) => {
                span.record("batch.outcome", batch_failure(&error));
                return Err(error);
            }
        };
        let result = &committed.result;
        span.record(
            "batch.outcome",
            match (&result.halted, self.dry_run) {
                (Some(_), _) => "halted",
                (None, true) => "rolled_back",
                (None, false) => "committed",
            },
        );
        if result.halted.is_none() {
            let seconds = committed.took.as_secs_f64();
            span.record("batch.number", result.batch_number);
            span.record("batch.size", result.transactions);
            span.record("batch.duration_ms", seconds * 1000.0);
            span.record(
                "batch.transactions_per_second",
                result.transactions as f64 / seconds.max(1e-9),
            );
            span.record("batch.balanced", result.balanced);
            // An empty last batch only finds the end: no batch of the run's.
            if !result.is_empty_end() {
                self.meter
                    .batch(&figures(self.phase, result), committed.took);
            }
        }
        Ok(committed)
    }

    async fn batch_transaction(&mut self, batch_size: i32, started: Instant) -> Result<Committed> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", self.inner.settings.batch_lock_timeout_ms))
            .execute(&mut *tx)
            .await?;
        let sqlx::types::Json(result): sqlx::types::Json<BatchResult> =
            sqlx::query_scalar(self.phase.batch_sql())
                .bind(self.id)
                .bind(batch_size)
                .fetch_one(&mut *tx)
                .await?;
        let after = store::after_batch(&mut tx, self.organization_id, self.id).await?;
        if after.lease_generation != Some(self.generation) {
            tx.rollback().await?;
            return Err(self.fenced(after.lease_generation));
        }
        let pacing = Pacing::of(&after.parameters);
        let took = started.elapsed();
        if result.halted.is_some() {
            tx.rollback().await?;
            return Ok(Committed {
                result,
                pacing,
                took,
            });
        }
        let events = self.batch_events(&result, &pacing, took);
        let mut tx = if self.dry_run {
            tx.rollback().await?;
            // The position is kept in a transaction of its own, which the
            // fence must guard as it guards a batch: another server may have
            // taken the run since the batch's transaction ended.
            let mut keep = scope::begin(&self.inner.pool, self.organization_id).await?;
            let generation =
                store::lease_generation(&mut keep, self.organization_id, self.id).await?;
            if generation != Some(self.generation) {
                keep.rollback().await?;
                return Err(self.fenced(generation));
            }
            store::keep_dry_run_position(&mut keep, self.id, &after).await?;
            keep
        } else {
            tx
        };
        let mut appended = Vec::with_capacity(events.len());
        for event in &events {
            appended.push(store::append_event(&mut tx, self.id, event, None).await?);
        }
        tx.commit().await?;
        self.inner.announce(&appended);
        Ok(Committed {
            result,
            pacing,
            took,
        })
    }

    /// How the next batch is sized: by the run's sizing, or smaller while
    /// backing off from lock waits (growing back 2x a committed batch).
    pub(super) fn sizing(&self, bounds: &Bounds) -> BatchSizing {
        let sized = self.sizer.state(bounds);
        match self.backoff.batch_size() {
            Some(size) => BatchSizing {
                batch_size: size,
                reason: SizingReason::LockBackoff,
                detail: format!(
                    "batch {size}: smaller after waiting on row locks, doubling each committed \
                     batch back to {}",
                    sized.batch_size
                ),
                ..sized
            },
            None => sized,
        }
    }

    /// The batch's event (none for an empty last batch: the end follows),
    /// then a throttle event when what holds the run back changed.
    fn batch_events(
        &mut self,
        result: &BatchResult,
        pacing: &Pacing,
        took: Duration,
    ) -> Vec<Value> {
        let (wait, rate_binding) = self.wait_after(pacing, result.transactions, took);
        // The batch's work: its time less its waits on others' locks.
        let locking = Duration::from_secs_f64(result.locking_ms.max(0.0) / 1000.0);
        self.sizer.observe(
            &pacing.sizing,
            result.transactions,
            took.saturating_sub(locking),
        );
        let configured = self.sizer.next(&pacing.sizing);
        self.backoff.committed(configured);
        let waits = !result.done && !wait.is_zero();
        if waits {
            self.throttled_ms += i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        }
        self.throughput.record(
            result.transactions,
            took.as_secs_f64() * 1000.0,
            (took + wait).as_secs_f64() * 1000.0,
        );
        let state = if result.done {
            PacingState {
                throttled_ms: self.throttled_ms,
                ..PacingState::default()
            }
        } else {
            self.with_signals(pacing.state(
                rate_binding,
                self.throttled_ms,
                self.sizing(&pacing.sizing),
            ))
        };
        let mut events = Vec::new();
        if !result.is_empty_end() {
            events.push(report::batch_event(
                self.phase,
                self.dry_run,
                result,
                &self.throughput,
                &state,
            ));
        }
        if state.reason != self.throttle && !result.done {
            events.push(throttle_event(&state));
        }
        self.throttle = state.reason;
        events
    }
}

/// What holds the run back changed: it started (or changed reason) or ended.
fn throttle_event(state: &PacingState) -> Value {
    let (kind, message) = match state.reason {
        ThrottleReason::None => (
            EventKind::ThrottleEnded,
            "no longer throttled: batches follow each other at full speed".to_owned(),
        ),
        _ => (
            EventKind::ThrottleStarted,
            format!("throttled: {}", state.detail),
        ),
    };
    json!({"kind": kind, "message": message, "pacing": state})
}

pub(super) fn is_lock_wait(error: &Error) -> bool {
    match error {
        Error::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|code| LOCK_WAITS.contains(&code.as_ref())),
        _ => false,
    }
}

/// A batch that did not commit, as its span's `batch.outcome` names it.
fn batch_failure(error: &Error) -> &'static str {
    match error {
        error if is_lock_wait(error) => "lock_wait",
        Error::Fenced(_) => "fenced",
        error if error.is_unavailable() => "database_unavailable",
        _ => "failed",
    }
}

/// What kind of lock wait `error` is, as the metrics name it.
pub(super) fn lock_wait_cause(error: &Error) -> &'static str {
    let code = match error {
        Error::Database(sqlx::Error::Database(db)) => db.code(),
        _ => None,
    };
    match code.as_deref() {
        Some("40P01") => "deadlock",
        Some("40001") => "serialization_failure",
        _ => "lock_timeout",
    }
}

/// A batch's own counts, as its metrics count them: the phase's work is
/// what it migrated, restored or aliased.
fn figures(phase: Phase, result: &BatchResult) -> BatchFigures {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let work = match phase {
        Phase::Execution => result.migrated,
        Phase::Rollback => result.restored,
        Phase::Aliasing => result.aliased,
    };
    BatchFigures {
        transactions: count(result.transactions),
        migrated: count(work),
        skipped_closed_period: count(result.skipped_closed),
        skipped_unmapped: count(result.skipped_unmapped),
        quarantined: result.quarantined.len() as u64,
        refused: result.refused.len() as u64,
    }
}
