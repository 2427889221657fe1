//! MeasurePerformance's samples, measured, never assumed: each measurement
//! is taken `samples` times and reported as percentiles. Nothing a sample
//! writes stays: the batch and the posting are written inside a
//! subtransaction their SQL function rolls back, in a transaction the
//! service rolls back too.
use std::time::Instant;

use chrono::{Days, NaiveDate, Utc};
use serde_json::Value;

use super::{
    Operations, Outcome,
    performance::{Measurement, judge, percentile},
};
use crate::{auth::Access, db::scope, error::Result};

const DATES: &str = "SELECT min(transaction_date)::date, max(transaction_date)::date
                       FROM universal_transactions WHERE organization_id = $1";
const FISCAL_PERIOD: &str = "SELECT hera_validate_fiscal_period_v2_enhanced($1, $2)";
/// A small preview, its calibration skipped ('{}').
const PREVIEW: &str = "SELECT (hera_migration_preview_candidates_v2($1, $2, $3, 10, '[]', \
                       ARRAY['posted'], 'SKIP', '{}') ->> 'total_candidates')::bigint";
const BATCH: &str =
    "SELECT hera_migration_sample_batch_v2($1, $2, $3, ARRAY['posted'], '[]', $4, $5)";
const POSTING: &str = "SELECT hera_migration_sample_posting_v2($1, $2)";

/// The fiscal-period lookup's limit, as ValidateMigration's performance check.
const FISCAL_PERIOD_MS: f64 = 10.0;
/// The preview's goal: 2 s for a million candidates.
const PREVIEW_MS: f64 = 2000.0;
/// A batch: 100 ms, and 1 ms for each transaction it writes.
const BATCH_BASE_MS: f64 = 100.0;
const BATCH_PER_TRANSACTION_MS: f64 = 1.0;
const POSTING_MS: f64 = 50.0;

fn measured(name: &str, mut times: Vec<f64>, threshold_ms: f64, detail: String) -> Measurement {
    times.sort_by(f64::total_cmp);
    // To the microsecond: finer is noise.
    let at = |q| (percentile(&times, q) * 1000.0).round() / 1000.0;
    let (p50, p95, p99) = (at(0.5), at(0.95), at(0.99));
    Measurement {
        name: name.to_owned(),
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        samples: times.len() as u32,
        threshold_ms,
        result: judge(p50, p95, threshold_ms),
        detail,
        transactions: None,
        baseline_ms: None,
        ratio: None,
        regressed: false,
    }
}

/// A measurement that could not be taken (FAIL) or had nothing to time (UNKNOWN).
fn not_taken(name: &str, result: Outcome, threshold_ms: f64, detail: String) -> Measurement {
    Measurement {
        result,
        ..measured(name, Vec::new(), threshold_ms, detail)
    }
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

pub(super) async fn measure(
    ops: &Operations,
    access: &Access,
    batch_size: i32,
    samples: u32,
) -> Result<Vec<Measurement>> {
    let org = access.organization_id;
    let today = Utc::now().date_naive();
    let mut tx = scope::begin_read_only(&ops.pool, org).await?;
    let (first, last): (Option<NaiveDate>, Option<NaiveDate>) =
        sqlx::query_as(DATES).bind(org).fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    let range = (first.unwrap_or(today), last.unwrap_or(today));
    Ok(vec![
        fiscal_period(ops, access, samples, today).await?,
        preview(ops, access, samples, range).await?,
        batch(ops, access, samples, range, batch_size).await?,
        posting(ops, access, samples).await?,
    ])
}

async fn fiscal_period(
    ops: &Operations,
    access: &Access,
    samples: u32,
    today: NaiveDate,
) -> Result<Measurement> {
    let org = access.organization_id;
    let mut tx = scope::begin_read_only(&ops.pool, org).await?;
    let mut times = Vec::new();
    for i in 0..samples {
        // Dates spread over the past year, as ValidateMigration's check.
        let date = today - Days::new(u64::from(i * 17 % 365));
        let started = Instant::now();
        let _: Value = sqlx::query_scalar(FISCAL_PERIOD)
            .bind(date)
            .bind(org)
            .fetch_one(&mut *tx)
            .await?;
        times.push(ms_since(started));
    }
    tx.rollback().await?;
    Ok(measured(
        "fiscal_period_validation",
        times,
        FISCAL_PERIOD_MS,
        format!(
            "hera_validate_fiscal_period_v2_enhanced(date, organization) for {samples} dates of \
             the past year, timed by the service (its round trip included)"
        ),
    ))
}

async fn preview(
    ops: &Operations,
    access: &Access,
    samples: u32,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<Measurement> {
    let org = access.organization_id;
    let mut times = Vec::new();
    let mut candidates = 0_i64;
    for _ in 0..samples {
        let mut tx = scope::begin_read_only(&ops.pool, org).await?;
        let started = Instant::now();
        candidates = sqlx::query_scalar(PREVIEW)
            .bind(org)
            .bind(from)
            .bind(to)
            .fetch_one(&mut *tx)
            .await?;
        times.push(ms_since(started));
        tx.rollback().await?;
    }
    Ok(measured(
        "preview_sample",
        times,
        PREVIEW_MS,
        format!(
            "hera_migration_preview_candidates_v2 from {from} to {to} (the organization's \
             dates; {candidates} candidates), batch_limit 10, calibration skipped, in a READ \
             ONLY transaction, timed by the service"
        ),
    ))
}

async fn batch(
    ops: &Operations,
    access: &Access,
    samples: u32,
    (from, to): (NaiveDate, NaiveDate),
    batch_size: i32,
) -> Result<Measurement> {
    const NAME: &str = "batch_sample";
    let org = access.organization_id;
    let mut times = Vec::new();
    let (mut taken, mut written) = (0_i64, 0_i64);
    for _ in 0..samples {
        let mut tx = scope::begin(&ops.pool, org).await?;
        let sample: Value = sqlx::query_scalar(BATCH)
            .bind(org)
            .bind(from)
            .bind(to)
            .bind(access.user_id)
            .bind(batch_size)
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        let threshold = BATCH_BASE_MS + BATCH_PER_TRANSACTION_MS * f64::from(batch_size);
        if let Some(error) = sample.get("error").and_then(Value::as_str) {
            let detail = format!("the sample batch of {batch_size} failed: {error}");
            return Ok(not_taken(NAME, Outcome::Fail, threshold, detail));
        }
        taken = sample["transactions"].as_i64().unwrap_or(0);
        written = sample["written"].as_i64().unwrap_or(0);
        if taken == 0 {
            let detail = format!(
                "no candidates to sample (no posted v1 transaction of the organization from \
                 {from} to {to}): nothing to time"
            );
            return Ok(not_taken(NAME, Outcome::Unknown, threshold, detail));
        }
        times.push(sample["batch_ms"].as_f64().unwrap_or(0.0));
    }
    let threshold = BATCH_BASE_MS + BATCH_PER_TRANSACTION_MS * taken as f64;
    Ok(Measurement {
        transactions: Some(taken),
        ..measured(
            NAME,
            times,
            threshold,
            format!(
                "a dry-run batch of the first {batch_size} candidates ({taken} taken, {written} \
                 reversed and reposted; closed periods posted to the open one), written and rolled \
                 back (hera_migration_sample_batch_v2), timed inside PostgreSQL; limit \
                 {BATCH_BASE_MS} ms + {BATCH_PER_TRANSACTION_MS} ms per transaction"
            ),
        )
    })
}

async fn posting(ops: &Operations, access: &Access, samples: u32) -> Result<Measurement> {
    const NAME: &str = "business_posting";
    let org = access.organization_id;
    let mut times = Vec::new();
    for _ in 0..samples {
        let mut tx = scope::begin(&ops.pool, org).await?;
        let started = Instant::now();
        let sample: Value = sqlx::query_scalar(POSTING)
            .bind(org)
            .bind(access.user_id)
            .fetch_one(&mut *tx)
            .await?;
        let ms = ms_since(started);
        tx.rollback().await?;
        if let Some(error) = sample.get("error").and_then(Value::as_str) {
            let state = sample["sqlstate"].as_str().unwrap_or("?");
            let detail =
                format!("the database refused the sample posting: {error} (SQLSTATE {state})");
            return Ok(not_taken(NAME, Outcome::Fail, POSTING_MS, detail));
        }
        times.push(ms);
    }
    Ok(measured(
        NAME,
        times,
        POSTING_MS,
        "one posted journal entry with two GL lines (DR 5300, CR 1100, 100.00 USD) through \
         every trigger and constraint of the tables, rolled back \
         (hera_migration_sample_posting_v2), timed by the service (its commit excluded)"
            .to_owned(),
    ))
}
