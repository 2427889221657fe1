//! Figure a, the floor: one batch's rows (per original a reversal and a
//! repost with every column, their lines, and the original's update) written
//! by one plain `INSERT ... SELECT`/`UPDATE` statement in a transaction that
//! commits, timed from the client. Each round takes the next originals (the
//! last one's are reversed by then), in a database of its own so that its
//! committed copies never meet a migration.
use std::time::Instant;

use anyhow::Context as _;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::{progress, timeline::median};
use crate::db::adapt::Adaptation;

const FLOOR_SQL: &str = include_str!("../../sql/bench/floor.sql");

/// Rounds measured; one more runs first to warm the caches.
pub const ROUNDS: usize = 7;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// Each measured round, in ms (including its commit).
    pub rounds_ms: Vec<f64>,
    pub median_ms: f64,
    /// Originals per round.
    pub originals: u32,
    /// Rows written per round: headers, lines, updated originals.
    pub headers: u64,
    pub lines: u64,
    pub updates: u64,
}

impl Floor {
    /// The median per 1,000 originals.
    pub fn ms_per_1000(&self) -> f64 {
        self.median_ms / f64::from(self.originals) * 1000.0
    }
}

/// The floor on `org`'s ledger; `what` names it in the progress lines.
pub async fn measure(
    conn: &mut PgConnection,
    org: Uuid,
    batch: u32,
    what: &str,
) -> anyhow::Result<Floor> {
    // The batch plans with JIT off; so does its floor.
    conn.execute("SET jit = off").await?;
    let sql = Adaptation::read(conn).await?.render(FLOOR_SQL);
    let mut rounds_ms = Vec::with_capacity(ROUNDS);
    let mut written = (0, 0, 0);
    for round in 0..=ROUNDS {
        let (ms, rows) = one_round(conn, &sql, org, batch).await?;
        if round > 0 {
            rounds_ms.push(ms);
            written = rows;
        }
    }
    let median_ms = median(&rounds_ms).context("no floor round")?;
    progress!("{what}: median {median_ms:.1} ms for {batch} originals");
    Ok(Floor {
        rounds_ms,
        median_ms,
        originals: batch,
        headers: written.0,
        lines: written.1,
        updates: written.2,
    })
}

/// One committed round: its time in ms, and the rows it wrote.
async fn one_round(
    conn: &mut PgConnection,
    sql: &str,
    org: Uuid,
    batch: u32,
) -> anyhow::Result<(f64, (u64, u64, u64))> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let (headers, lines, updates): (i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(org)
            .bind(i64::from(batch))
            .fetch_one(&mut *tx)
            .await
            .context("the floor's statement")?;
    tx.commit().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(updates > 0, "no originals left for the floor");
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok((ms, (count(headers), count(lines), count(updates))))
}
