//! Before a run's first write: the plan of a run that streamed before it was
//! checked (PLANNED), and the trial balance its validation compares against,
//! read beside the batches from a snapshot of the database taken before the
//! first of them, so that no batch waits for a read of the whole ledger.
use std::time::Instant;

use serde_json::json;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::Executor;
use crate::{
    db::scope,
    error::Result,
    migration::{
        engine::start,
        progress::EventKind,
        run::{Phase, store},
    },
};

impl Executor {
    /// Checks the plan when the start did not, then starts reading the trial
    /// balance (neither for a rollback or aliases, no trial balance for a dry
    /// run). An error fails the run before it wrote anything.
    pub(super) async fn prepare(&mut self) -> Result<()> {
        if self.phase != Phase::Execution {
            return Ok(());
        }
        if let Some(parameters) = self.unplanned.take() {
            self.check_plan(&parameters).await?;
        }
        if !self.dry_run {
            self.trial_balance = self.read_trial_balance().await?;
        }
        Ok(())
    }

    /// The plan, recorded as a checked start records it, and its PLANNED event.
    async fn check_plan(&self, parameters: &crate::migration::run::Parameters) -> Result<()> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        let plan = start::plan(&mut tx, self.organization_id, parameters).await?;
        store::record_plan(&mut tx, self.id, &start::recorded_plan(&plan)).await?;
        let planned = json!({
            "kind": EventKind::Planned,
            "message": format!("plan checked: {}", start::plan_summary(&plan)),
        });
        let event = store::append_event(&mut tx, self.id, &planned, None).await?;
        tx.commit().await?;
        self.inner.announce(&[event]);
        Ok(())
    }

    /// Marks the run's trial balance as being read, takes a snapshot of the
    /// database (before any batch: none runs until this returns), and reads
    /// the trial balance from it in a task of its own. None when the run
    /// holds one already (or has run a batch: a reading interrupted by the
    /// server's end cannot be redone). One pool connection at a time: runs
    /// starting together, each holding one while it waited for a second,
    /// would take the whole pool and wait on each other.
    async fn read_trial_balance(&self) -> Result<Option<JoinHandle<()>>> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        if !store::mark_trial_balance_pending(&mut tx, self.id).await? {
            return Ok(None);
        }
        tx.commit().await?;
        let snapshot = scope::begin_snapshot(&self.inner.pool, self.organization_id).await?;
        let (pool, organization_id, id) = (self.inner.pool.clone(), self.organization_id, self.id);
        let reading = async move {
            let started = Instant::now();
            match record_trial_balance(snapshot, &pool, organization_id, id).await {
                Ok(()) => tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "trial balance before the first write recorded"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    "reading the trial balance failed: validation will have nothing to compare with"
                ),
            }
        };
        Ok(Some(self.inner.executors.spawn(reading.instrument(
            tracing::info_span!("migration.trial_balance"),
        ))))
    }

    /// Waits for the trial balance's reading, so that a run ends only once
    /// its validation has what it compares against.
    pub(super) async fn trial_balance_read(&mut self) {
        if let Some(reading) = self.trial_balance.take() {
            let _ = reading.await;
        }
    }
}

async fn record_trial_balance(
    mut snapshot: scope::OrgTransaction,
    pool: &sqlx::PgPool,
    organization_id: Uuid,
    id: Uuid,
) -> Result<()> {
    let trial_balance = store::read_trial_balance(&mut snapshot, organization_id).await?;
    snapshot.rollback().await?;
    let mut tx = scope::begin(pool, organization_id).await?;
    store::record_trial_balance(&mut tx, id, &trial_balance).await?;
    tx.commit().await?;
    Ok(())
}
