//! A run as its client sees it: every streamed event with the instant it
//! arrived, and what follows from them (the time between BATCH events, per
//! 1,000 transactions the batch moved; the first event; the wall time).
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_stream::StreamExt as _;

use crate::proto::{MigrationEventKind, MigrationProgress, MigrationState, ProgressEvent};

/// One event as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub kind: MigrationEventKind,
    pub state: MigrationState,
    /// The run's count so far (a rollback: restored; aliases: aliased).
    pub migrated: i64,
    pub skipped: i64,
    pub quarantined: i64,
    /// A sized run's batch: its work time as the server measured it
    /// (`pacing.sizing.work_ms`: to its commit, less its lock waits).
    pub work_ms: Option<f64>,
}

/// One batch: from the event before it to its own BATCH event.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BatchSample {
    pub number: usize,
    /// Seconds since the call, when its BATCH event arrived.
    pub elapsed_s: f64,
    pub ms: f64,
    /// What this batch moved (migrated, restored), skips and quarantines excluded.
    pub moved: i64,
    /// Its work time, for a run sized to a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_ms: Option<f64>,
}

impl BatchSample {
    pub fn ms_per_1000(&self) -> Option<f64> {
        (self.moved > 0).then(|| self.ms / self.moved as f64 * 1000.0)
    }

    pub fn per_second(&self) -> f64 {
        if self.ms > 0.0 {
            self.moved as f64 / self.ms * 1000.0
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub migration_id: String,
    /// When the client called the RPC.
    pub called_at: Instant,
    pub events: Vec<Received>,
}

impl Timeline {
    /// Reads `stream` to its end; `each` sees every event as it arrives.
    pub async fn follow(
        called_at: Instant,
        mut stream: tonic::Streaming<impl ProgressEvent>,
        mut each: impl FnMut(&MigrationProgress),
    ) -> anyhow::Result<Self> {
        let mut events = Vec::new();
        let mut migration_id = String::new();
        while let Some(event) = stream.next().await {
            let event = event.context("the progress stream broke")?.into_progress();
            let at = Instant::now();
            each(&event);
            if migration_id.is_empty() {
                migration_id = event.migration_id.clone();
            }
            events.push(Received {
                at,
                kind: event.kind(),
                state: event.state(),
                migrated: event.transactions_migrated,
                skipped: event.transactions_skipped,
                quarantined: event.transactions_quarantined,
                work_ms: event
                    .pacing
                    .as_ref()
                    .and_then(|p| p.sizing.as_ref())
                    .filter(|s| s.target_batch_ms > 0)
                    .map(|s| s.work_ms),
            });
        }
        let timeline = Self {
            migration_id,
            called_at,
            events,
        };
        timeline.ended_well()?;
        Ok(timeline)
    }

    /// A run that ended anywhere but SUCCEEDED or ROLLED_BACK measured nothing.
    fn ended_well(&self) -> anyhow::Result<()> {
        match self.events.last().map(|last| last.state) {
            Some(MigrationState::Succeeded | MigrationState::RolledBack) => Ok(()),
            Some(state) => bail!("run {} ended {state:?}", self.migration_id),
            None => bail!("the stream ended without an event"),
        }
    }

    /// Every BATCH event as a sample: the first measured from the event before it.
    pub fn batches(&self) -> Vec<BatchSample> {
        let mut samples = Vec::new();
        let mut previous: Option<&Received> = None;
        for event in &self.events {
            if event.kind == MigrationEventKind::Batch
                && let Some(before) = previous
            {
                samples.push(BatchSample {
                    number: samples.len() + 1,
                    elapsed_s: (event.at - self.called_at).as_secs_f64(),
                    ms: (event.at - before.at).as_secs_f64() * 1000.0,
                    moved: event.migrated - before.migrated,
                    work_ms: event.work_ms,
                });
            }
            previous = Some(event);
        }
        samples
    }

    /// The median batch per 1,000 moved, the first batch excluded (it also
    /// takes the run's snapshot); None without a second batch.
    pub fn steady_ms_per_1000(&self) -> Option<f64> {
        let steady: Vec<f64> = self
            .batches()
            .iter()
            .skip(1)
            .filter_map(BatchSample::ms_per_1000)
            .collect();
        median(&steady)
    }

    /// The first batch per 1,000 moved, from the event before it.
    pub fn first_batch_ms_per_1000(&self) -> Option<f64> {
        self.batches().first().and_then(BatchSample::ms_per_1000)
    }

    /// From the call to the first event.
    pub fn first_event(&self) -> Option<Duration> {
        self.events.first().map(|first| first.at - self.called_at)
    }

    /// From the call to the last event.
    pub fn wall(&self) -> Duration {
        self.events
            .last()
            .map_or(Duration::ZERO, |last| last.at - self.called_at)
    }

    /// What the run moved in all.
    pub fn moved(&self) -> i64 {
        self.events.last().map_or(0, |last| last.migrated)
    }

    pub fn skipped_and_quarantined(&self) -> (i64, i64) {
        self.events
            .last()
            .map_or((0, 0), |last| (last.skipped, last.quarantined))
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `values`.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn batches_are_timed_from_the_event_before_and_count_what_they_moved() {
        let start = Instant::now();
        let event = |ms: u64, kind, migrated| Received {
            at: start + Duration::from_millis(ms),
            kind,
            state: MigrationState::Running,
            migrated,
            skipped: 0,
            quarantined: 0,
            work_ms: None,
        };
        let timeline = Timeline {
            migration_id: "r".into(),
            called_at: start,
            events: vec![
                event(100, MigrationEventKind::Started, 0),
                event(1100, MigrationEventKind::Batch, 1000),
                event(1600, MigrationEventKind::Batch, 2000),
                event(2000, MigrationEventKind::Batch, 2500),
            ],
        };
        let batches = timeline.batches();
        assert_eq!(batches.len(), 3);
        assert_eq!(timeline.first_batch_ms_per_1000(), Some(1000.0));
        // 500 ms per 1000, and 400 ms per 500 = 800 ms per 1000.
        assert_eq!(timeline.steady_ms_per_1000(), Some(650.0));
        assert_eq!(timeline.first_event(), Some(Duration::from_millis(100)));
        assert_eq!(timeline.moved(), 2500);
    }
}
