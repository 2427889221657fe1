//! What must hold after each phase, read from outside the engine (the login
//! role, SQL of its own in `sql/faults/`): each compared with what an
//! uninterrupted run leaves, and reported as a list of what did not hold.
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

const COUNTS: &str = include_str!("../../sql/faults/checks.sql");
const HISTORY: &str = include_str!("../../sql/faults/history.sql");
const TRIAL_BALANCE: &str = "SELECT hera_migration_trial_balance_v2($1)::text";

#[derive(Debug, Clone, Copy, FromRow, serde::Serialize)]
pub struct Counts {
    pub originals_reversed: i64,
    pub live_reversals: i64,
    pub live_reposts: i64,
    pub doubled: i64,
    pub half_written: i64,
    pub unbalanced: i64,
    pub aliased: i64,
}

pub async fn counts(conn: &mut PgConnection, org: Uuid) -> anyhow::Result<Counts> {
    Ok(sqlx::query_as(COUNTS).bind(org).fetch_one(conn).await?)
}

/// The organization's trial balance as text: equal texts, equal balances.
pub async fn trial_balance(conn: &mut PgConnection, org: Uuid) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(TRIAL_BALANCE)
        .bind(org)
        .fetch_one(conn)
        .await?)
}

/// What is wrong with run `id`'s history: a sequence missing or out of
/// place, an event emitted before the one it follows. Empty when complete
/// and strictly ordered.
pub async fn history_faults(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Vec<String>> {
    let events: Vec<(i64, Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as(HISTORY).bind(id).fetch_all(conn).await?;
    let mut faults = Vec::new();
    for (at, (sequence, kind, emitted)) in events.iter().enumerate() {
        let expected = i64::try_from(at).unwrap_or(i64::MAX) + 1;
        if *sequence != expected {
            faults.push(format!("event {sequence} where {expected} was due"));
        }
        if at > 0 && emitted < &events[at - 1].2 {
            faults.push(format!(
                "event {sequence} ({}) emitted before the event it follows",
                kind.as_deref().unwrap_or("?")
            ));
        }
    }
    if events.is_empty() {
        faults.push("no event recorded".into());
    }
    Ok(faults)
}

/// `what` unless `holds`.
pub fn expect(faults: &mut Vec<String>, holds: bool, what: impl FnOnce() -> String) {
    if !holds {
        faults.push(what());
    }
}
