//! One batch of a run's phase: one database transaction, its span, and the
//! lock waits that make the executor back off.
use std::time::Instant;

use super::Executor;
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{
        engine::{pacing::Pacing, report::BatchResult},
        run::store,
    },
};

/// SQLSTATEs of a batch that waited on the business's locks: lock_not_available
/// (lock_timeout), deadlock_detected, serialization_failure. Retried smaller.
const LOCK_WAITS: [&str; 3] = ["55P03", "40P01", "40001"];

/// A committed batch, with the pace the run's row asked for at that moment.
pub(super) struct Committed {
    pub result: BatchResult,
    pub pacing: Pacing,
}

impl Executor {
    /// One batch of the run's phase in one database transaction, committed
    /// (or rolled back, for a dry run), inside its `migration.batch` span.
    pub(super) async fn batch(&self, batch_size: i32) -> Result<Committed> {
        let span = tracing::info_span!(
            "migration.batch",
            migration.phase = self.phase.as_str(),
            batch.number = tracing::field::Empty,
            batch.size = tracing::field::Empty,
            batch.duration_ms = tracing::field::Empty,
            batch.transactions_per_second = tracing::field::Empty,
            batch.balanced = tracing::field::Empty,
            dry_run = self.dry_run,
        );
        let started = Instant::now();
        let committed =
            tracing::Instrument::instrument(self.batch_transaction(batch_size), span.clone())
                .await?;
        let result = &committed.result;
        if result.halted.is_none() {
            let seconds = started.elapsed().as_secs_f64();
            span.record("batch.number", result.batch_number);
            span.record("batch.size", result.transactions);
            span.record("batch.duration_ms", seconds * 1000.0);
            span.record(
                "batch.transactions_per_second",
                result.transactions as f64 / seconds.max(1e-9),
            );
            span.record("batch.balanced", result.balanced);
        }
        Ok(committed)
    }

    async fn batch_transaction(&self, batch_size: i32) -> Result<Committed> {
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
        let after = store::after_batch(&mut tx, self.id).await?;
        if self.dry_run && result.halted.is_none() {
            tx.rollback().await?;
            let mut keep = scope::begin(&self.inner.pool, self.organization_id).await?;
            store::keep_dry_run_position(&mut keep, self.id, &after).await?;
            keep.commit().await?;
        } else {
            tx.commit().await?;
        }
        Ok(Committed {
            result,
            pacing: Pacing::of(&after.parameters),
        })
    }
}

pub(super) fn is_lock_wait(error: &Error) -> bool {
    match error {
        Error::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|code| LOCK_WAITS.contains(&code.as_ref())),
        _ => false,
    }
}
