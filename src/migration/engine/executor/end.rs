//! The end of a run as its executor records it (its ENDED event comes with
//! the state change: `hera_migration_set_state_v2`).
use super::Executor;
use crate::{
    db::scope,
    error::Result,
    migration::run::{RunState, store},
};

impl Executor {
    /// What a rollback that ends with refused restores says: which, and why.
    pub(super) async fn refused_restores(&self) -> String {
        let refused = match store::get(&self.inner.pool, self.organization_id, self.id).await {
            Ok(run) => run.record.rollback.unwrap_or_default().refused,
            Err(_) => Vec::new(),
        };
        super::report::refused_restores(&refused)
    }

    /// Records the end of the run, unless it ended meanwhile (say, cancelled
    /// just as its last batch committed: a user's control wins, and its
    /// event says so).
    /// A run ends once its trial balance is recorded.
    pub(super) async fn finish(&mut self, state: RunState, message: &str) {
        super::outcome(state.as_str());
        self.trial_balance_read().await;
        if let Err(error) = self.record_end(state, message).await {
            tracing::error!(%error, "recording the end of the run failed");
        }
    }

    async fn record_end(&self, state: RunState, message: &str) -> Result<()> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        let active = [RunState::Running, RunState::Paused];
        let mut events = Vec::new();
        if store::set_state(&mut tx, self.id, state, None, Some(message), &active).await? {
            events.push(store::latest_event(&mut tx, self.organization_id, self.id).await?);
        }
        tx.commit().await?;
        self.inner.announce(&events);
        Ok(())
    }
}
