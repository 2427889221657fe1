//! Listing an organization's runs, page by page (ListMigrations), newest first.
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{RUN_COLUMNS, RunRow, from_row};
use crate::{
    db::scope,
    error::{Error, Result},
    migration::run::{Run, RunState},
};

/// Where a listing page starts: after this (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl PageToken {
    pub fn encode(self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(token: &str) -> Result<Option<Self>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a token this service returned");
        let (micros, id) = token.split_once('_').ok_or_else(invalid)?;
        let created_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Some(Self { created_at, id }))
    }
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// Runs of an organization, newest first, optionally only in `states`.
pub async fn list(
    pool: &PgPool,
    organization_id: Uuid,
    states: &[RunState],
    page_size: i64,
    after: Option<PageToken>,
) -> Result<(Vec<Run>, Option<PageToken>)> {
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let rows: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{RUN_COLUMNS}
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN'
            AND (cardinality($2::text[]) = 0 OR metadata ->> 'state' = ANY ($2))
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC
          LIMIT $5"
    )))
    .bind(organization_id)
    .bind(&states)
    .bind(after.map(|t| t.created_at))
    .bind(after.map(|t| t.id))
    .bind(page_size + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    let more = rows.len() as i64 > page_size;
    let runs: Vec<Run> = rows
        .into_iter()
        .take(page_size as usize)
        .map(from_row)
        .collect::<Result<_>>()?;
    let next = more.then(|| {
        let last = runs.last().expect("a full page");
        PageToken {
            created_at: last.created_at,
            id: last.id,
        }
    });
    Ok((runs, next))
}

/// A page size: 0 means the default, at most `MAX_PAGE`.
pub fn page_size(value: i32) -> Result<i64> {
    match i64::from(value) {
        0 => Ok(DEFAULT_PAGE),
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Error::invalid(
            "page_size",
            format!("{n} is out of range (1 to {MAX_PAGE}, or 0 for {DEFAULT_PAGE})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_named() {
        let token = PageToken {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(PageToken::decode(&token.encode()).unwrap(), Some(token));
        assert_eq!(PageToken::decode("").unwrap(), None);
        assert!(
            PageToken::decode("x_y")
                .unwrap_err()
                .to_string()
                .starts_with("page_token:")
        );
    }
}
