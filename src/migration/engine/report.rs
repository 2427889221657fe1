//! What the executor says about a batch: the part of its event that only it
//! knows (the message, the health of what the batch did, timings, rate and
//! pace); the history's SQL adds the run's state and counts
//! (`sql/functions/events.sql`).
use serde::Deserialize;
use serde_json::{Value, json};

use crate::migration::{
    progress::{EventKind, Health, PacingState, Throughput},
    run::{Counters, Phase, SetAside},
};

/// What one batch reports (see `hera_migration_execute_batch_v2`).
#[derive(Debug, Deserialize)]
pub struct BatchResult {
    pub transactions: i64,
    pub done: bool,
    pub duration_ms: f64,
    pub counters: Counters,
    #[serde(default)]
    pub batch_number: i64,
    /// This batch's own counts: an execution's migrated and skipped, a
    /// rollback's restored, an application's aliased.
    #[serde(default)]
    pub migrated: i64,
    #[serde(default)]
    pub skipped_closed: i64,
    #[serde(default)]
    pub skipped_unmapped: i64,
    #[serde(default)]
    pub restored: i64,
    #[serde(default)]
    pub aliased: i64,
    /// The quarantined (execution) or refused restores (rollback), each with
    /// the rule that stood in the way.
    #[serde(default)]
    pub quarantined: Vec<SetAside>,
    #[serde(default)]
    pub refused: Vec<SetAside>,
    #[serde(default = "balanced")]
    pub balanced: bool,
    /// Of duration_ms, the time spent taking the run's lock and its
    /// candidates' row locks: where a batch waits on other transactions
    /// (work sizing leaves it out).
    #[serde(default)]
    pub locking_ms: f64,
    /// Set when the run was no longer RUNNING: nothing was done.
    #[serde(default)]
    pub halted: Option<String>,
}

fn balanced() -> bool {
    true
}

impl BatchResult {
    /// The run ended with this batch, which took nothing: no event of its
    /// own (the end says it all).
    pub fn is_empty_end(&self) -> bool {
        self.done && self.transactions == 0
    }
}

/// A committed batch's event: WARNING when it set transactions aside (a
/// person must look), HEALTHY otherwise, whatever the pace.
pub fn batch_event(
    phase: Phase,
    dry_run: bool,
    batch: &BatchResult,
    throughput: &Throughput,
    pacing: &PacingState,
) -> Value {
    let set_aside = batch.quarantined.len() + batch.refused.len();
    json!({
        "kind": EventKind::Batch,
        "health": if set_aside == 0 { Health::Healthy } else { Health::Warning },
        "message": batch_message(phase, dry_run, batch),
        "batch_transactions": batch.transactions,
        "current_batch_ms": batch.duration_ms,
        "average_batch_ms": throughput.average_batch_ms(),
        "transactions_per_second": throughput.transactions_per_second().unwrap_or(0.0),
        "pacing": pacing,
    })
}

/// "batch 3 committed: 1000 transaction(s), 640 migrated, 350 skipped (350
/// closed period), 10 quarantined (10 unbalanced)"; a dry run's batch
/// "rolled back", its counts what it "would be".
fn batch_message(phase: Phase, dry_run: bool, batch: &BatchResult) -> String {
    // A dry run's events all begin "dry run: " (the history's SQL says so).
    let verb = if dry_run { "rolled back" } else { "committed" };
    let mut message = format!(
        "batch {} {verb}: {} transaction(s)",
        batch.counters.batches, batch.transactions
    );
    match phase {
        Phase::Execution => {
            let would = if dry_run { "would be " } else { "" };
            message.push_str(&format!(", {} {would}migrated", batch.migrated));
            let skipped = batch.skipped_closed + batch.skipped_unmapped;
            if skipped > 0 {
                message.push_str(&format!(
                    ", {skipped} skipped ({} closed period, {} unmapped)",
                    batch.skipped_closed, batch.skipped_unmapped
                ));
            }
        }
        Phase::Rollback => message.push_str(&format!(", {} restored", batch.restored)),
        Phase::Aliasing => message.push_str(&format!(", {} aliased", batch.aliased)),
    }
    if !batch.quarantined.is_empty() {
        message.push_str(&format!(
            ", {} quarantined ({})",
            batch.quarantined.len(),
            by_rule(&batch.quarantined)
        ));
    }
    if !batch.refused.is_empty() {
        message.push_str(&format!(
            "; the database refused {} ({}): they stay as they were",
            batch.refused.len(),
            by_rule(&batch.refused)
        ));
    }
    message
}

/// The end of a rollback whose restores the database refused, naming them.
pub fn refused_restores(refused: &[SetAside]) -> String {
    const NAMED: usize = 5;
    let named: Vec<String> = refused
        .iter()
        .take(NAMED)
        .map(|r| {
            let id = r
                .transaction_id
                .map(|id| id.to_string())
                .unwrap_or_default();
            format!("{id} ({}: {})", r.rule, r.reason)
        })
        .collect();
    let more = match refused.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "rolled back, except {} transaction(s) whose restore the database refused: {}{more}; \
         they stay migrated (the ledger is whole); fix the cause and roll back again to retry them",
        refused.len(),
        named.join("; "),
    )
}

/// The end of an application of reporting aliases: what it aliased, and
/// what the database refused.
pub fn aliased(counters: &Counters) -> String {
    let done = format!(
        "aliased {} transaction(s), {} already aliased",
        counters.migrated, counters.skipped_unmapped
    );
    match counters.refused {
        0 => done,
        n => format!(
            "{done}; the database refused {n} (they keep no alias: see the run's refused list)"
        ),
    }
}

/// The end of an execution: what became of every candidate.
pub fn executed(dry_run: bool, counters: &Counters) -> String {
    let skipped = counters.skipped_closed + counters.skipped_unmapped;
    if dry_run {
        format!(
            "dry run complete: every batch rolled back, nothing written; it would have migrated \
             {}, skipped {skipped}, quarantined {}",
            counters.migrated, counters.quarantined
        )
    } else {
        format!(
            "every candidate processed: {} migrated, {skipped} skipped ({} closed period, {} \
             unmapped), {} quarantined",
            counters.migrated,
            counters.skipped_closed,
            counters.skipped_unmapped,
            counters.quarantined
        )
    }
}

/// "2 fx_posting, 1 unbalanced": how many were set aside by each rule.
fn by_rule(list: &[SetAside]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for entry in list {
        *counts.entry(entry.rule.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(rule, n)| format!("{n} {rule}"))
        .collect::<Vec<_>>()
        .join(", ")
}
