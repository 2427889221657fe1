//! Figure c, the guide's way: the same batch migrated one transaction at a
//! time from the client, reverse then emit, two database calls each (the
//! reversal with its negated lines and the original marked reversed; then the
//! v2 repost with its lines), all in one transaction that commits. It runs in
//! the floor's database, on the originals the floor has not taken.
use std::time::Instant;

use anyhow::Context as _;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::{progress, timeline::median};
use crate::db::adapt::Adaptation;

const ORIGINALS_SQL: &str = include_str!("../../sql/bench/originals.sql");
const REVERSE_SQL: &str = include_str!("../../sql/bench/guide_reverse.sql");
const REPOST_SQL: &str = include_str!("../../sql/bench/guide_repost.sql");

/// Rounds measured; one more runs first to warm the caches and the
/// connection's prepared statements.
pub const ROUNDS: usize = 3;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Guide {
    pub rounds_ms: Vec<f64>,
    pub median_ms: f64,
    pub originals: u32,
    /// Database calls per round (two per transaction, the pick of the ids).
    pub calls: u64,
}

impl Guide {
    pub fn ms_per_1000(&self) -> f64 {
        self.median_ms / f64::from(self.originals) * 1000.0
    }
}

pub async fn measure(conn: &mut PgConnection, org: Uuid, batch: u32) -> anyhow::Result<Guide> {
    conn.execute("SET jit = off").await?;
    let adaptation = Adaptation::read(conn).await?;
    let reverse = adaptation.render(REVERSE_SQL);
    let repost = adaptation.render(REPOST_SQL);
    let mut rounds_ms = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let ms = one_round(conn, (&reverse, &repost), org, batch).await?;
        if round > 0 {
            rounds_ms.push(ms);
        }
    }
    let median_ms = median(&rounds_ms).context("no round of the guide's way")?;
    progress!("c. the guide's way: median {median_ms:.1} ms for {batch} transactions");
    Ok(Guide {
        rounds_ms,
        median_ms,
        originals: batch,
        calls: 2 * u64::from(batch) + 1,
    })
}

/// One committed round of `batch` transactions, in ms.
async fn one_round(
    conn: &mut PgConnection,
    (reverse, repost): (&str, &str),
    org: Uuid,
    batch: u32,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let originals: Vec<Uuid> = sqlx::query_scalar(ORIGINALS_SQL)
        .bind(org)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
    anyhow::ensure!(
        !originals.is_empty(),
        "no originals left for the guide's way"
    );
    for original in originals {
        sqlx::query(sqlx::AssertSqlSafe(reverse.to_owned()))
            .bind(original)
            .bind(Uuid::new_v4())
            .execute(&mut *tx)
            .await
            .context("the guide's reversal")?;
        sqlx::query(sqlx::AssertSqlSafe(repost.to_owned()))
            .bind(original)
            .bind(Uuid::new_v4())
            .execute(&mut *tx)
            .await
            .context("the guide's repost")?;
    }
    tx.commit().await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}
