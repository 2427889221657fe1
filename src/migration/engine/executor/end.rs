//! The end of a run as its executor records and publishes it.
use super::Executor;
use crate::{
    db::scope,
    error::Result,
    migration::{
        engine::report,
        progress::Health,
        run::{RunState, store},
    },
};

impl Executor {
    /// What a rollback that ends with refused restores says: which, and why.
    pub(super) async fn refused_restores(&self) -> String {
        let refused = match store::get(&self.inner.pool, self.organization_id, self.id).await {
            Ok(run) => run.record.rollback.unwrap_or_default().refused,
            Err(_) => Vec::new(),
        };
        report::refused_restores(&refused)
    }

    pub(super) async fn finish(&self, state: RunState, message: &str) {
        let health = if state == RunState::Failed {
            Health::Critical
        } else {
            Health::Healthy
        };
        self.finish_with(state, health, message).await;
    }

    pub(super) async fn finish_with(&self, state: RunState, health: Health, message: &str) {
        match self.record_end(state, message).await {
            Ok(None) => report::publish_end(&self.sender, state, health, message),
            Ok(Some((ended, why))) => {
                let health = if ended == RunState::Failed {
                    Health::Critical
                } else {
                    Health::Healthy
                };
                report::publish_end(&self.sender, ended, health, &why)
            }
            Err(error) => {
                tracing::error!(%error, "recording the end of the run failed");
                report::publish_end(&self.sender, state, health, message);
            }
        }
    }

    /// Records the end of the run, unless it ended meanwhile (say, cancelled
    /// just as its last batch committed: a user's control wins); then
    /// returns how it ended instead.
    async fn record_end(
        &self,
        state: RunState,
        message: &str,
    ) -> Result<Option<(RunState, String)>> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        let active = [RunState::Running, RunState::Paused];
        let recorded =
            store::set_state(&mut tx, self.id, state, None, Some(message), &active).await?;
        let ended = if recorded {
            None
        } else {
            let (ended, why) = store::ended_as(&mut tx, self.id).await?;
            Some((ended.unwrap_or(state), why))
        };
        tx.commit().await?;
        Ok(ended)
    }
}
