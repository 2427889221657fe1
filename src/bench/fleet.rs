//! Figure h: ten organizations migrated at once (ten StartMigration streams,
//! one organization each) against one alone, as migrated transactions per
//! second over the wall time, all streams on one server.
use std::time::Instant;

use anyhow::Context as _;

use super::{
    client::{Client, Owner},
    progress, runs,
};

/// Organizations migrated at once.
pub const AT_ONCE: usize = 10;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Fleet {
    pub alone_migrated: i64,
    pub alone_wall_s: f64,
    pub together_runs: usize,
    pub together_migrated: i64,
    pub together_wall_s: f64,
}

impl Fleet {
    pub fn alone_per_second(&self) -> f64 {
        rate(self.alone_migrated, self.alone_wall_s)
    }

    pub fn together_per_second(&self) -> f64 {
        rate(self.together_migrated, self.together_wall_s)
    }
}

fn rate(count: i64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `alone` first, then `together` (AT_ONCE organizations) concurrently.
pub async fn measure(
    client: &Client,
    alone: &Owner,
    together: &[Owner],
    batch: u32,
) -> anyhow::Result<Fleet> {
    let single = runs::migrate(client, alone, batch, "h. one organization alone").await?;
    progress!(
        "h. one alone: {} migrated in {:.1} s",
        single.moved(),
        single.wall().as_secs_f64()
    );
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (n, owner) in together.iter().cloned().enumerate() {
        let client = client.clone();
        let label = format!("h. organization {} of {}", n + 1, together.len());
        set.spawn(async move { runs::migrate(&client, &owner, batch, &label).await });
    }
    let mut timelines = Vec::with_capacity(together.len());
    while let Some(joined) = set.join_next().await {
        timelines.push(joined.context("a run of the fleet")??);
    }
    let together_wall_s = started.elapsed().as_secs_f64();
    let together_migrated = timelines.iter().map(|t| t.moved()).sum();
    progress!(
        "h. {} at once: {together_migrated} migrated in {together_wall_s:.1} s",
        together.len()
    );
    Ok(Fleet {
        alone_migrated: single.moved(),
        alone_wall_s: single.wall().as_secs_f64(),
        together_runs: together.len(),
        together_migrated,
        together_wall_s,
    })
}
