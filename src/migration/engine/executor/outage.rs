//! When the database goes away under a run (a restart, a failover, a severed
//! connection) the run does not fail: its batch in flight rolled back, and
//! the executor waits until the database answers and its lease is its own
//! again, says so in the run's history (a WARNING), and goes on after the
//! last committed batch. Another server may have taken the run meanwhile;
//! then this one stops, and the fence (its lease generation) keeps it from
//! committing anything more.
use std::time::{Duration, Instant};

use serde_json::json;

use super::Executor;
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{
        engine::{lease::Regained, server_name},
        progress::{EventKind, Health},
        run::store,
    },
};

/// The first wait before asking the database again, doubled up to the longest.
const FIRST_RECHECK: Duration = Duration::from_millis(100);
const LONGEST_RECHECK: Duration = Duration::from_secs(2);

impl Executor {
    /// This executor takes the run: the run's lease generation moves on, and
    /// only batches under the new one commit.
    pub(super) async fn take_lease(&mut self) -> Result<()> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        self.generation = store::take_lease(&mut tx, self.id, &server_name()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The database could not be reached (`error`): waits until it answers
    /// with the lease this executor's again, records the outage, and returns
    /// true to go on; false when the server stops or another server holds
    /// the run now.
    pub(super) async fn database_lost(&mut self, error: &Error) -> bool {
        let lost_at = Instant::now();
        tracing::warn!(%error, "the database is unreachable; the run waits for it and then goes on");
        let mut wait = FIRST_RECHECK;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.shutdown.cancelled() => return false,
            }
            wait = (wait * 2).min(LONGEST_RECHECK);
            match self.back_in_charge().await {
                Ok(true) => {}
                Ok(false) => return false,
                Err(again) if again.is_unavailable() => continue,
                Err(other) => {
                    tracing::error!(error = %other, "the run could not take up its work again");
                    return false;
                }
            }
            let message = format!(
                "the database could not be reached for {:.1} s ({error}); the batch in flight, \
                 if any, rolled back, and the run goes on after its last committed batch",
                lost_at.elapsed().as_secs_f64()
            );
            let event = json!({
                "kind": EventKind::DatabaseUnavailable,
                "health": Health::Warning,
                "message": message,
            });
            match super::super::record_event(&self.inner, self.organization_id, self.id, &event)
                .await
            {
                Ok(_) => return true,
                Err(again) if again.is_unavailable() => continue,
                Err(other) => {
                    tracing::warn!(error = %other, "recording the outage failed; the run goes on");
                    return true;
                }
            }
        }
    }

    /// Whether this executor holds the run again (its lease kept or taken
    /// anew, and then its fence moved on); false when another server's
    /// session holds the lease now.
    async fn back_in_charge(&mut self) -> Result<bool> {
        match self.lease.regain().await? {
            Regained::Kept => Ok(true),
            Regained::Retaken => {
                self.take_lease().await?;
                Ok(true)
            }
            Regained::Lost => {
                tracing::warn!("another server holds this run's lease now; it goes on there");
                Ok(false)
            }
        }
    }

    /// The error of a batch refused by the fence: the run's row names
    /// another executor's generation than this one's.
    pub(super) fn fenced(&self, now: Option<i64>) -> Error {
        Error::Fenced(format!(
            "run {} is executed by another server now (lease generation {}, this executor's {}): \
             this executor's batch rolled back and it stops",
            self.id,
            now.map_or_else(|| "none".to_owned(), |g| g.to_string()),
            self.generation
        ))
    }
}
