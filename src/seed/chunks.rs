//! Inserting the transactions: chunks of one statement each
//! (`sql/seed/transactions.sql`), [`PARALLEL_CHUNKS`] at a time.
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use sqlx::{PgPool, Row};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{
    PARALLEL_CHUNKS, SeedParams, SeededOrganization, TRANSACTIONS_SQL, id_prefix, per_second,
};
use crate::error::{Error, Result};

/// The flattened lookups `transactions.sql` indexes into (see its header).
struct ChunkInputs {
    org_ids: Vec<Uuid>,
    owner_ids: Vec<Uuid>,
    period_ids: Vec<Uuid>,
    account_ids: Vec<Uuid>,
    account_codes: Vec<String>,
    account_names: Vec<String>,
    tag: String,
    /// See `$15` and `$16` in `transactions.sql`.
    transaction_id_prefix: String,
    line_id_prefix: String,
    params: SeedParams,
}

impl ChunkInputs {
    fn new(params: &SeedParams, tag: &str, organizations: &[SeededOrganization]) -> Result<Self> {
        let first = organizations.first().ok_or_else(|| {
            Error::FailedPrecondition("seed-demo: no organizations to seed".into())
        })?;
        let account_codes: Vec<String> = first.gl_accounts.iter().map(|a| a.code.clone()).collect();
        let account_names = first.gl_accounts.iter().map(|a| a.name.clone()).collect();
        let months = first.fiscal_periods.len();
        let mut inputs = Self {
            org_ids: Vec::with_capacity(organizations.len()),
            owner_ids: Vec::with_capacity(organizations.len()),
            period_ids: Vec::with_capacity(organizations.len() * months),
            account_ids: Vec::with_capacity(organizations.len() * account_codes.len()),
            account_codes,
            account_names,
            tag: tag.to_owned(),
            transaction_id_prefix: id_prefix(),
            line_id_prefix: id_prefix(),
            params: params.clone(),
        };
        for org in organizations {
            let same_chart = org.gl_accounts.len() == inputs.account_codes.len()
                && org
                    .gl_accounts
                    .iter()
                    .zip(&inputs.account_codes)
                    .all(|(a, code)| &a.code == code);
            let owner = org.users.iter().find(|u| u.role == "ORG_OWNER");
            let (Some(owner), true, true) = (owner, same_chart, org.fiscal_periods.len() == months)
            else {
                return Err(Error::FailedPrecondition(format!(
                    "seed-demo setup returned an incomplete organization {}",
                    org.code
                )));
            };
            inputs.org_ids.push(org.id);
            inputs.owner_ids.push(owner.id);
            inputs
                .period_ids
                .extend(org.fiscal_periods.iter().map(|p| p.id));
            inputs
                .account_ids
                .extend(org.gl_accounts.iter().map(|a| a.id));
        }
        Ok(inputs)
    }
}

/// What one chunk inserted for one organization.
struct ChunkCount {
    organization_id: Uuid,
    transactions: u64,
    lines: u64,
    amount: Decimal,
}

async fn insert_chunk(
    pool: PgPool,
    inputs: Arc<ChunkInputs>,
    first: u64,
    last: u64,
) -> Result<Vec<ChunkCount>> {
    let p = &inputs.params;
    let rows = sqlx::query(TRANSACTIONS_SQL)
        .bind(&inputs.org_ids)
        .bind(&inputs.owner_ids)
        .bind(&inputs.tag)
        .bind(first as i64)
        .bind(last as i64)
        .bind(p.transactions as i64)
        .bind(p.lines as i32)
        .bind(p.from)
        .bind(p.to)
        .bind(p.seed)
        .bind(&inputs.period_ids)
        .bind(&inputs.account_ids)
        .bind(&inputs.account_codes)
        .bind(&inputs.account_names)
        .bind(&inputs.transaction_id_prefix)
        .bind(&inputs.line_id_prefix)
        .fetch_all(&pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ChunkCount {
                organization_id: row.try_get("organization_id")?,
                transactions: row.try_get::<i64, _>("transactions")? as u64,
                lines: row.try_get::<i64, _>("lines")? as u64,
                amount: row.try_get("amount")?,
            })
        })
        .collect()
}

/// Inserts all transactions in chunks, [`PARALLEL_CHUNKS`] at a time, adding
/// the counts to `organizations`. Returns the number of chunks.
pub(super) async fn insert_transactions(
    pool: &PgPool,
    params: &SeedParams,
    tag: &str,
    chunk: u64,
    organizations: &mut [SeededOrganization],
) -> Result<u64> {
    let total = u64::from(params.organizations) * params.transactions;
    if total == 0 {
        return Ok(0);
    }
    let inputs = Arc::new(ChunkInputs::new(params, tag, organizations)?);
    let chunks = total.div_ceil(chunk);
    let started = Instant::now();
    let mut next: u64 = 0;
    let mut done_transactions: u64 = 0;
    let mut done_chunks: u64 = 0;
    let mut in_flight = JoinSet::new();
    while done_chunks < chunks {
        while next < total && in_flight.len() < PARALLEL_CHUNKS {
            let last = (next + chunk).min(total) - 1;
            in_flight.spawn(insert_chunk(pool.clone(), Arc::clone(&inputs), next, last));
            next = last + 1;
        }
        // Dropping `in_flight` on an error aborts the chunks still running;
        // each chunk is one statement, so an aborted one leaves nothing behind.
        let counts = match in_flight.join_next().await {
            Some(Ok(counts)) => counts?,
            Some(Err(join_error)) => {
                return Err(Error::Aborted(format!(
                    "seed-demo chunk task failed: {join_error}"
                )));
            }
            None => break,
        };
        for count in counts {
            done_transactions += count.transactions;
            if let Some(org) = organizations
                .iter_mut()
                .find(|o| o.id == count.organization_id)
            {
                org.transactions += count.transactions;
                org.lines += count.lines;
                org.total_amount += count.amount;
            }
        }
        done_chunks += 1;
        tracing::info!(
            run_tag = %tag,
            chunk = done_chunks,
            chunks,
            transactions = done_transactions,
            total,
            percent = format_args!("{:.1}", 100.0 * done_transactions as f64 / total as f64),
            per_second = per_second(done_transactions, started.elapsed()) as u64,
            "seed-demo: chunk committed"
        );
    }
    let expected_lines = total * u64::from(params.lines);
    let lines: u64 = organizations.iter().map(|o| o.lines).sum();
    if done_transactions != total || lines != expected_lines {
        return Err(Error::FailedPrecondition(format!(
            "seed-demo inserted {done_transactions} transactions and {lines} lines, expected {total} and {expected_lines}"
        )));
    }
    Ok(chunks)
}
