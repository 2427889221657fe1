//! Figure c, the guide's way: the same batch migrated one transaction at a
//! time from the client, reverse then emit, two database calls each (the
//! reversal with its negated lines and the original marked reversed; then the
//! v2 repost with its lines), each transaction its own `BEGIN … COMMIT` as the
//! guide's Phase 2 pattern writes it. Beside it, for what that commit costs,
//! the same calls under one commit for the whole batch. It runs in the floor's
//! database, on the originals the floor has not taken.
use std::time::Instant;

use anyhow::Context as _;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::{progress, timeline::median};
use crate::db::adapt::Adaptation;

const ORIGINALS_SQL: &str = include_str!("../../sql/bench/originals.sql");
const REVERSE_SQL: &str = include_str!("../../sql/bench/guide_reverse.sql");
const REPOST_SQL: &str = include_str!("../../sql/bench/guide_repost.sql");

/// Rounds measured of each way; one more of each runs first to warm the
/// caches and the connection's prepared statements.
pub const ROUNDS: usize = 3;

/// Batches of originals the measurement takes: both ways, warm-ups included.
pub const BATCHES_TAKEN: usize = 2 * (ROUNDS + 1);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Guide {
    /// The guide's pattern: a commit per transaction (the figure).
    pub rounds_ms: Vec<f64>,
    pub median_ms: f64,
    /// The same calls with one commit for the whole batch.
    pub one_commit: Rounds,
    pub originals: u32,
    /// Database calls per round (two per transaction, the pick of the ids),
    /// besides the BEGIN and COMMIT of each transaction.
    pub calls: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rounds {
    pub rounds_ms: Vec<f64>,
    pub median_ms: f64,
}

/// Where a round's commits fall.
#[derive(Debug, Clone, Copy)]
enum Commits {
    EachTransaction,
    OnceForTheBatch,
}

struct Statements {
    reverse: String,
    repost: String,
}

impl Guide {
    pub fn ms_per_1000(&self) -> f64 {
        self.median_ms / f64::from(self.originals) * 1000.0
    }

    pub fn one_commit_ms_per_1000(&self) -> f64 {
        self.one_commit.median_ms / f64::from(self.originals) * 1000.0
    }
}

pub async fn measure(conn: &mut PgConnection, org: Uuid, batch: u32) -> anyhow::Result<Guide> {
    conn.execute("SET jit = off").await?;
    let adaptation = Adaptation::read(conn).await?;
    let statements = Statements {
        reverse: adaptation.render(REVERSE_SQL),
        repost: adaptation.render(REPOST_SQL),
    };
    let (mut each, mut once) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    // The two ways alternate, so that both meet the same caches and table sizes.
    for round in 0..=ROUNDS {
        let each_ms = one_round(conn, &statements, org, batch, Commits::EachTransaction).await?;
        let once_ms = one_round(conn, &statements, org, batch, Commits::OnceForTheBatch).await?;
        if round > 0 {
            each.push(each_ms);
            once.push(once_ms);
        }
    }
    let median_ms = median(&each).context("no round of the guide's way")?;
    let one_commit = Rounds {
        median_ms: median(&once).context("no round under one commit")?,
        rounds_ms: once,
    };
    progress!(
        "c. the guide's way: median {median_ms:.1} ms for {batch} transactions, {:.1} ms under one commit",
        one_commit.median_ms
    );
    Ok(Guide {
        rounds_ms: each,
        median_ms,
        one_commit,
        originals: batch,
        calls: 2 * u64::from(batch) + 1,
    })
}

/// One round of `batch` transactions, every commit included, in ms.
async fn one_round(
    conn: &mut PgConnection,
    statements: &Statements,
    org: Uuid,
    batch: u32,
    commits: Commits,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let originals: Vec<Uuid> = sqlx::query_scalar(ORIGINALS_SQL)
        .bind(org)
        .bind(i64::from(batch))
        .fetch_all(&mut *conn)
        .await?;
    anyhow::ensure!(
        !originals.is_empty(),
        "no originals left for the guide's way"
    );
    match commits {
        Commits::EachTransaction => {
            for original in originals {
                let mut tx = conn.begin().await?;
                migrate_one(&mut tx, statements, original).await?;
                tx.commit().await?;
            }
        }
        Commits::OnceForTheBatch => {
            let mut tx = conn.begin().await?;
            for original in originals {
                migrate_one(&mut tx, statements, original).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// The guide's two calls for one transaction: reverse, then emit.
async fn migrate_one(
    conn: &mut PgConnection,
    statements: &Statements,
    original: Uuid,
) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(statements.reverse.clone()))
        .bind(original)
        .bind(Uuid::now_v7())
        .execute(&mut *conn)
        .await
        .context("the guide's reversal")?;
    sqlx::query(sqlx::AssertSqlSafe(statements.repost.clone()))
        .bind(original)
        .bind(Uuid::now_v7())
        .execute(&mut *conn)
        .await
        .context("the guide's repost")?;
    Ok(())
}
