//! A run's progress as the engine publishes it: one snapshot per batch and per
//! state change, on a watch channel (a slow watcher skips intermediate
//! snapshots, never the last one).
use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::run::Phase;
pub use super::run::RunState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub migration_id: Uuid,
    pub organization_id: Uuid,
    pub sequence: u64,
    pub phase: Phase,
    pub state: RunState,
    pub processed: i64,
    pub remaining: i64,
    pub migrated: i64,
    pub skipped: i64,
    pub quarantined: i64,
    pub batch_number: i64,
    pub current_batch_ms: f64,
    pub average_batch_ms: f64,
    pub transactions_per_second: f64,
    pub estimated_completion: Option<DateTime<Utc>>,
    pub health: Health,
    pub errors: i64,
    pub warnings: i64,
    pub message: String,
    pub emitted_at: DateTime<Utc>,
    /// Batches roll back: nothing stays written.
    pub dry_run: bool,
}

impl Progress {
    /// processed / (processed + remaining), exact.
    pub fn percentage(&self) -> f64 {
        let total = self.processed + self.remaining;
        if total == 0 {
            if matches!(self.state, RunState::Succeeded | RunState::RolledBack) {
                100.0
            } else {
                0.0
            }
        } else {
            self.processed as f64 * 100.0 / total as f64
        }
    }
}

/// Throughput over the latest batches: the rate and the ETA come from a recent
/// window, not from the whole run, so they follow throttling and load. A
/// batch's cycle is its own time plus the wait that pacing adds after it.
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

    pub fn estimated_completion(
        &self,
        remaining: i64,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let rate = self.transactions_per_second().filter(|rate| *rate > 0.0)?;
        let seconds = remaining as f64 / rate;
        Some(now + chrono::Duration::milliseconds((seconds * 1000.0) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_eta_wait_for_two_batches_and_follow_the_recent_window() {
        let mut throughput = Throughput::default();
        throughput.record(1000, 1000.0, 1000.0);
        assert_eq!(throughput.transactions_per_second(), None);
        throughput.record(1000, 500.0, 500.0);
        let rate = throughput.transactions_per_second().unwrap();
        assert!((rate - 1333.33).abs() < 0.01, "{rate}");
        let now = Utc::now();
        let eta = throughput.estimated_completion(4000, now).unwrap();
        assert_eq!((eta - now).num_milliseconds(), 3000);
        for _ in 0..WINDOW {
            throughput.record(1000, 50.0, 100.0);
        }
        assert!((throughput.transactions_per_second().unwrap() - 10_000.0).abs() < 0.01);
    }
}
