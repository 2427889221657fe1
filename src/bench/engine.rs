//! Figures b, d, j and l: the engine migrating end to end (gRPC, batch,
//! commit, progress event), timed by the client between BATCH events; at 1 M
//! also the server's memory and the time to the first event and batch.
use tokio_util::sync::CancellationToken;

use super::{
    client::{Client, Owner},
    runs,
    server::{self, Memory, ServerChild},
    timeline::Timeline,
};

/// What a run's timeline says, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub migration_id: String,
    pub batches: usize,
    /// Migrated (a rollback: restored).
    pub moved: i64,
    pub skipped: i64,
    pub quarantined: i64,
    /// Median ms per 1,000 moved, the first batch excluded.
    pub steady_ms_per_1000: Option<f64>,
    pub first_batch_ms_per_1000: Option<f64>,
    pub first_event_ms: Option<f64>,
    pub wall_s: f64,
}

impl RunSummary {
    pub fn of(timeline: &Timeline) -> Self {
        let (skipped, quarantined) = timeline.skipped_and_quarantined();
        Self {
            migration_id: timeline.migration_id.clone(),
            batches: timeline.batches().len(),
            moved: timeline.moved(),
            skipped,
            quarantined,
            steady_ms_per_1000: timeline.steady_ms_per_1000(),
            first_batch_ms_per_1000: timeline.first_batch_ms_per_1000(),
            first_event_ms: timeline.first_event().map(|d| d.as_secs_f64() * 1000.0),
            wall_s: timeline.wall().as_secs_f64(),
        }
    }

    /// The steady rate, transactions per second.
    pub fn steady_per_second(&self) -> Option<f64> {
        self.steady_ms_per_1000.map(|ms| 1_000_000.0 / ms)
    }

    /// Moved over the wall time.
    pub fn overall_per_second(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.moved as f64 / self.wall_s
        } else {
            0.0
        }
    }
}

/// The 1 M run: its timeline and the server's memory during it.
pub struct BigRun {
    pub timeline: Timeline,
    /// The highest VmRSS sampled, and the kernel's VmHWM at the end (the
    /// server was started for this run alone).
    pub memory: Memory,
}

/// Migrates the big organization on `server`, sampling its memory meanwhile.
pub async fn migrate_big(
    server: &ServerChild,
    client: &Client,
    owner: &Owner,
    batch: u32,
) -> anyhow::Result<BigRun> {
    let stop = CancellationToken::new();
    let sampler = tokio::spawn(server::sample_memory(server.pid(), stop.clone()));
    let timeline = runs::migrate(client, owner, batch, "d. the 1 M run").await;
    stop.cancel();
    let memory = sampler.await?;
    Ok(BigRun {
        timeline: timeline?,
        memory,
    })
}
