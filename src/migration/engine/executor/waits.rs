//! The executor's waits between batches: the pace the run asks for (rate
//! limit, batch delay, a slowing signal), cut short by an update, a pause
//! or a stop, and the backoff after a batch that waited on locks.
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Committed, Executor};
use crate::{
    error::Error,
    migration::{
        engine::pacing,
        progress::{EventKind, Health, ThrottleReason},
        run::RunState,
    },
};

impl Executor {
    /// Waits between batches as the run's pace asks, re-reading it when woken
    /// (UpdateMigration) and cutting the wait short on a pause or cancel.
    /// False when the server is stopping.
    pub(super) async fn pace(&mut self, batch: &Committed) -> bool {
        let batch_end = Instant::now();
        let (transactions, took) = (batch.result.transactions, batch.took);
        let mut pacing = batch.pacing;
        let mut wait = self.wait_after(&pacing, transactions, took);
        let planned = wait.0;
        let going_on = loop {
            let until = batch_end + wait.0;
            if Instant::now() >= until {
                break true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => break true,
                () = self.inner.shutdown.cancelled() => break false,
                () = self.wake.notified() => match self.read_pace().await {
                    Ok((RunState::Running, latest)) => {
                        pacing = latest;
                        wait = self.wait_after(&pacing, transactions, took);
                    }
                    _ => break true, // paused or ended: the next batch says so
                },
            }
        };
        let waited = batch_end.elapsed().min(wait.0);
        let reason = pacing.state(wait.1, 0, Default::default()).reason;
        self.held_back(planned, waited, reason.as_str());
        // An update made meanwhile sizes the very next batch.
        self.pacing = pacing;
        going_on
    }

    /// The batch's event counted the wait it planned as time held back; what
    /// counts is the wait that happened (an update, a pause or a stop cuts it
    /// short or makes it longer), so the next event corrects the total.
    fn held_back(&mut self, planned: Duration, waited: Duration, reason: &'static str) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.throttled_ms = (self.throttled_ms + ms(waited) - ms(planned)).max(0);
        if !waited.is_zero() {
            self.meter.throttled(reason, waited);
        }
    }

    /// A batch waited too long on locks: retry smaller after a wait, as a
    /// WARNING; past the retry budget the run fails. False when it stops.
    pub(super) async fn back_off(&mut self, error: &Error) -> bool {
        if let Ok((_, pacing)) = self.read_pace().await {
            self.pacing = pacing;
        }
        let configured = self.sizer.next(&self.pacing.sizing);
        let backoff = &mut self.backoff;
        if backoff.retries() >= self.inner.settings.batch_lock_retries {
            let message = format!(
                "batches kept waiting on row locks ({} retries): {error}",
                backoff.retries()
            );
            self.finish(RunState::Failed, &message).await;
            return false;
        }
        let wait = backoff.retry(configured);
        let message = format!(
            "batch waited more than {} ms on row locks held by other transactions; \
             retrying with {} transactions in {} ms (retry {} of {})",
            self.inner.settings.batch_lock_timeout_ms,
            backoff.batch_size().unwrap_or(configured),
            wait.as_millis(),
            backoff.retries(),
            self.inner.settings.batch_lock_retries
        );
        self.throttled_ms += i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        self.throttle = ThrottleReason::LockBackoff;
        self.meter
            .throttled(ThrottleReason::LockBackoff.as_str(), wait);
        let event = json!({
            "kind": EventKind::LockBackoff,
            "health": Health::Warning,
            "message": message,
            "pacing": pacing::backing_off(message.clone(), self.throttled_ms, self.sizing(&self.pacing.sizing)),
        });
        self.record(&event).await;
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.inner.shutdown.cancelled() => false,
        }
    }
}
