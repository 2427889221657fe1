//! Figure k: the business's own traffic: a normal posting (a v2 journal
//! entry, one header and two balanced lines, its own short transaction, from
//! a connection of its own) at a steady 20 a second, on the idle database
//! and then while a migration of the same organization runs; p50 and p99.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveTime, TimeZone as _, Utc};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    client::{Client, Owner},
    engine::RunSummary,
    progress, runs,
    timeline::{Timeline, percentile},
};
use crate::{proto::StartMigrationRequest, seed::SeededOrganization};

const HEADER_SQL: &str = include_str!("../../sql/bench/traffic_header.sql");
const LINES_SQL: &str = include_str!("../../sql/bench/traffic_lines.sql");

/// Postings per second: a steady stream, as a busy shop's tills make; enough
/// for a p99 of a 12-second run to be more than its slowest posting (at 5 a
/// second such a run had 61, whose p99 is their maximum).
pub const PER_SECOND: u32 = 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latencies {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Latencies {
    fn of(samples_ms: &[f64]) -> Self {
        Self {
            samples: samples_ms.len(),
            p50_ms: percentile(samples_ms, 50.0),
            p99_ms: percentile(samples_ms, 99.0),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Traffic {
    pub per_second: u32,
    pub idle: Latencies,
    pub during_migration: Latencies,
    pub migration: RunSummary,
    /// A sized run's batches: their work time against its target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizedBatches>,
}

/// How close a sized run's batches kept to their target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SizedBatches {
    pub target_ms: f64,
    /// The batches judged: all but the first [`CONVERGING`], which climb
    /// from the first batch's size.
    pub judged: usize,
    pub median_work_ms: Option<f64>,
    /// Of the judged, the share whose work was within ±30 % of the target.
    pub within_30_percent: f64,
}

/// Batches a sized run takes to climb to its target (1.5x a batch from 100).
pub const CONVERGING: usize = 10;

impl SizedBatches {
    fn of(run: &Timeline, target_ms: f64) -> Option<Self> {
        let batches = run.batches();
        // The climb excluded, and the last batch, which takes what is left;
        // a run too short for that (a small scale) is judged whole.
        let judged = match batches.len() {
            n if n > CONVERGING + 1 => &batches[CONVERGING..n - 1],
            _ => &batches[..],
        };
        let work: Vec<f64> = judged.iter().filter_map(|b| b.work_ms).collect();
        (!work.is_empty()).then(|| Self {
            target_ms,
            judged: work.len(),
            median_work_ms: super::timeline::median(&work),
            within_30_percent: work
                .iter()
                .filter(|ms| (*ms / target_ms - 1.0).abs() <= 0.3)
                .count() as f64
                / work.len() as f64,
        })
    }
}

impl Traffic {
    pub fn p99_ratio(&self) -> Option<f64> {
        match (self.during_migration.p99_ms, self.idle.p99_ms) {
            (Some(during), Some(idle)) if idle > 0.0 => Some(during / idle),
            _ => None,
        }
    }
}

/// What a posting needs: the organization's salaries and cash accounts, an
/// open period, and a user to name.
#[derive(Debug, Clone)]
pub struct Posting {
    org: Uuid,
    user: Uuid,
    debit: Uuid,
    credit: Uuid,
    period: Uuid,
    period_code: String,
    date: chrono::DateTime<Utc>,
    year: i32,
    month: i32,
}

impl Posting {
    pub fn of(organization: &SeededOrganization) -> anyhow::Result<Self> {
        let account = |code: &str| {
            organization
                .gl_accounts
                .iter()
                .find(|a| a.code == code)
                .map(|a| a.id)
                .with_context(|| format!("GL account {code}"))
        };
        let period = organization
            .fiscal_periods
            .iter()
            .find(|p| p.status == "OPEN")
            .context("an open fiscal period")?;
        let noon = period
            .start_date
            .and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"));
        let (year, month) = period
            .period_code
            .split_once('-')
            .and_then(|(y, m)| Some((y.parse().ok()?, m.parse().ok()?)))
            .context("a period code YYYY-MM")?;
        Ok(Self {
            org: organization.id,
            user: organization.users.first().context("a user")?.id,
            debit: account("5300")?,
            credit: account("1100")?,
            period: period.id,
            period_code: period.period_code.clone(),
            date: Utc.from_utc_datetime(&noon),
            year,
            month,
        })
    }

    /// One posting in its own transaction; its latency, commit included.
    async fn post(&self, conn: &mut PgConnection) -> anyhow::Result<Duration> {
        let amount = Decimal::new(12_345, 2);
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        let header: Uuid = sqlx::query_scalar(HEADER_SQL)
            .bind(self.org)
            .bind(format!("BENCH-TRAFFIC-{}", Uuid::new_v4().simple()))
            .bind(self.date)
            .bind(amount)
            .bind(self.period)
            .bind(self.year)
            .bind(self.month)
            .bind(&self.period_code)
            .bind(self.user)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(LINES_SQL)
            .bind(self.org)
            .bind(header)
            .bind(self.debit)
            .bind(self.credit)
            .bind(amount)
            .bind(self.user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(started.elapsed())
    }
}

/// Postings made, and not counted, before the idle ones.
const WARM_UP: usize = 10;

/// Posts at [`PER_SECOND`] until `count` postings are made or `stop` fires;
/// the latencies in ms.
async fn post_steadily(
    conn: &mut PgConnection,
    posting: &Posting,
    count: Option<usize>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<f64>> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / PER_SECOND);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    while count.is_none_or(|count| samples.len() < count) {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        samples.push(posting.post(conn).await?.as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// `idle_posts` postings on the idle database, then postings for as long as
/// the migration `request` of `owner`'s organization runs.
pub async fn measure(
    conn: PgConnection,
    posting: Posting,
    (client, owner): (&Client, &Owner),
    request: StartMigrationRequest,
    idle_posts: usize,
    label: &'static str,
) -> anyhow::Result<Traffic> {
    let mut conn = conn;
    let target_ms = request.target_batch_ms;
    // Not counted: a connection's first postings parse their statements and
    // fill its caches, which no posting after them pays.
    post_steadily(&mut conn, &posting, Some(WARM_UP), CancellationToken::new())
        .await
        .context("warming up on the idle database")?;
    let idle = post_steadily(
        &mut conn,
        &posting,
        Some(idle_posts),
        CancellationToken::new(),
    )
    .await
    .context("posting on the idle database")?;
    let stop = CancellationToken::new();
    let poster = tokio::spawn({
        let stop = stop.clone();
        async move { post_steadily(&mut conn, &posting, None, stop).await }
    });
    let run: anyhow::Result<Timeline> = runs::migrate_with(client, owner, request, label).await;
    stop.cancel();
    let during = poster.await?.context("posting while a migration runs")?;
    let run = run?;
    let traffic = Traffic {
        per_second: PER_SECOND,
        idle: Latencies::of(&idle),
        during_migration: Latencies::of(&during),
        migration: RunSummary::of(&run),
        sizing: target_ms.and_then(|t| SizedBatches::of(&run, f64::from(t))),
    };
    progress!(
        "{label}: p99 {:.1} ms idle, {:.1} ms during the migration ({} postings)",
        traffic.idle.p99_ms.unwrap_or(f64::NAN),
        traffic.during_migration.p99_ms.unwrap_or(f64::NAN),
        traffic.during_migration.samples
    );
    Ok(traffic)
}
