//! Figure i: a hundred WatchMigration streams on one run against none: the
//! run's wall time (StartMigration to its last event) on two identical
//! organizations, the first without watchers, the second with them.
use std::time::Instant;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;

use super::{
    client::{Client, Owner},
    progress, runs,
    timeline::Timeline,
};
use crate::proto::WatchMigrationRequest;

pub const WATCHERS: usize = 100;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Watchers {
    pub watchers: usize,
    pub without_s: f64,
    pub with_s: f64,
    /// Events the watchers received in all.
    pub events_watched: u64,
}

impl Watchers {
    pub fn ratio(&self) -> Option<f64> {
        (self.without_s > 0.0).then(|| self.with_s / self.without_s)
    }
}

pub async fn measure(
    client: &Client,
    without: &Owner,
    with: &Owner,
    batch: u32,
) -> anyhow::Result<Watchers> {
    let alone = runs::migrate(client, without, batch, "i. without watchers").await?;
    let (watched, events_watched) = watched_run(client, with, batch).await?;
    let (without_s, with_s) = (alone.wall().as_secs_f64(), watched.wall().as_secs_f64());
    progress!("i. watchers: {without_s:.1} s without, {with_s:.1} s with {WATCHERS}");
    Ok(Watchers {
        watchers: WATCHERS,
        without_s,
        with_s,
        events_watched,
    })
}

/// A run followed by its own stream and, from its first event on, by
/// [`WATCHERS`] WatchMigration streams; each watcher reads to the end.
async fn watched_run(
    client: &Client,
    owner: &Owner,
    batch: u32,
) -> anyhow::Result<(Timeline, u64)> {
    let mut starter = client.clone();
    let called_at = Instant::now();
    let mut stream = starter
        .start_migration(owner.request(runs::start_request(owner, batch)))
        .await?
        .into_inner();
    let first = stream
        .next()
        .await
        .context("the run's first event")?
        .context("the run's first event")?
        .into_progress();
    let mut watchers = JoinSet::new();
    for _ in 0..WATCHERS {
        let (mut client, owner) = (client.clone(), owner.clone());
        let request = WatchMigrationRequest {
            organization_id: owner.org.to_string(),
            migration_id: first.migration_id.clone(),
            after_sequence: 0,
        };
        watchers.spawn(async move {
            let mut watched = client
                .watch_migration(owner.request(request))
                .await?
                .into_inner();
            let mut events = 0u64;
            while let Some(event) = watched.next().await {
                event?;
                events += 1;
            }
            Ok::<u64, tonic::Status>(events)
        });
    }
    // The rest of the run's own stream; its wall time counts from the call.
    let rest = Timeline::follow(called_at, stream, |_| {}).await?;
    let mut events_watched = 0;
    while let Some(joined) = watchers.join_next().await {
        events_watched += joined.context("a watcher")?.context("a watcher's stream")?;
    }
    Ok((rest, events_watched))
}
