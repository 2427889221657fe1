//! Turning what batches report into progress snapshots: live from an executor
//! here, or read from a run's row when another server executes it.
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::migration::{
    progress::{Health, Progress, Throughput},
    run::{Counters, Run, RunState, SetAside, store},
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
    /// The quarantined (execution) or refused restores (rollback), each with
    /// the rule that stood in the way.
    #[serde(default)]
    pub quarantined: Vec<SetAside>,
    #[serde(default)]
    pub refused: Vec<SetAside>,
    #[serde(default = "balanced")]
    pub balanced: bool,
    /// Set when the run was no longer RUNNING: nothing was done.
    #[serde(default)]
    pub halted: Option<String>,
}

fn balanced() -> bool {
    true
}

/// How often a watcher of a run executing elsewhere reads its row.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Applies a committed batch. `slowed` says why the run waits before its next
/// batch, when it does (throttling is a WARNING, so that it is seen).
pub fn apply_batch(
    progress: &mut Progress,
    batch: &BatchResult,
    throughput: &Throughput,
    total: i64,
    slowed: Option<String>,
) {
    let now = chrono::Utc::now();
    if progress.state != RunState::Running {
        // Resumed: the state change is an event of its own.
        progress.state = RunState::Running;
        progress.sequence += 1;
    }
    progress.sequence += 1;
    apply_counters(progress, &batch.counters, total);
    let set_aside = batch.quarantined.len() + batch.refused.len();
    progress.warnings += set_aside as i64;
    progress.current_batch_ms = batch.duration_ms;
    progress.average_batch_ms = throughput.average_batch_ms();
    progress.transactions_per_second = throughput.transactions_per_second().unwrap_or(0.0);
    progress.estimated_completion = throughput.estimated_completion(progress.remaining, now);
    let mut message = format!("batch {} committed", batch.counters.batches);
    if !batch.quarantined.is_empty() {
        message.push_str(&format!(
            "; {} transaction(s) quarantined ({})",
            batch.quarantined.len(),
            by_rule(&batch.quarantined)
        ));
    }
    if !batch.refused.is_empty() {
        message.push_str(&format!(
            "; the database refused {} restore(s) ({}): they stay migrated",
            batch.refused.len(),
            by_rule(&batch.refused)
        ));
    }
    if let Some(slowed) = &slowed {
        message.push_str("; ");
        message.push_str(slowed);
    }
    progress.health = if set_aside == 0 && slowed.is_none() {
        Health::Healthy
    } else {
        Health::Warning
    };
    progress.message = message;
    progress.emitted_at = now;
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
/// what the database refused (a WARNING: those transactions keep no alias).
pub fn aliased(counters: &Counters) -> (Health, String) {
    let done = format!(
        "aliased {} transaction(s), {} already aliased",
        counters.migrated, counters.skipped_unmapped
    );
    match counters.refused {
        0 => (Health::Healthy, done),
        n => (
            Health::Warning,
            format!(
                "{done}; the database refused {n} (they keep no alias: see the run's refused list)"
            ),
        ),
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

fn apply_counters(progress: &mut Progress, counters: &Counters, total: i64) {
    progress.batch_number = counters.batches;
    progress.processed = counters.processed;
    progress.remaining = (total - counters.processed).max(0);
    progress.migrated = counters.migrated;
    progress.skipped = counters.skipped_closed + counters.skipped_unmapped;
    progress.quarantined = counters.quarantined;
}

/// A run's latest state as recorded in its row, for runs not executing in
/// this process (finished, or executed by another replica).
pub fn snapshot(run: &Run) -> Progress {
    let record = &run.record;
    let phase = record.phase;
    let rollback = record.rollback.clone().unwrap_or_default();
    let (counters, total) = phase.progress_of(record);
    // Refused restores (a rollback) or refused aliases: a person must look.
    let refused = record.counters.refused + rollback.counters.refused;
    let state = record.state;
    let batches = record.counters.batches + rollback.counters.batches;
    let mut progress = Progress {
        migration_id: run.id,
        organization_id: run.organization_id,
        sequence: u64::try_from(batches).unwrap_or(0) + record.state_changes.unwrap_or(0),
        phase,
        state,
        processed: 0,
        remaining: 0,
        migrated: 0,
        skipped: 0,
        quarantined: 0,
        batch_number: 0,
        current_batch_ms: 0.0,
        average_batch_ms: 0.0,
        transactions_per_second: 0.0,
        estimated_completion: None,
        health: if state == RunState::Failed {
            Health::Critical
        } else if refused > 0 {
            Health::Warning
        } else {
            Health::Healthy
        },
        errors: i64::from(state == RunState::Failed),
        warnings: record.counters.quarantined + refused,
        message: record.message.clone().unwrap_or_default(),
        emitted_at: run.updated_at,
        dry_run: record.parameters.dry_run,
    };
    apply_counters(&mut progress, &counters, total);
    if matches!(state, RunState::Succeeded | RunState::RolledBack) {
        progress.remaining = 0;
    }
    progress
}

/// Publishes a state the run's row already records (set by a control).
pub fn publish_state(sender: &watch::Sender<Progress>, state: RunState, message: &str) {
    sender.send_if_modified(|p| {
        if p.state == state {
            return false;
        }
        p.sequence += 1;
        p.state = state;
        p.message = message.to_owned();
        p.estimated_completion = None;
        p.emitted_at = chrono::Utc::now();
        true
    });
}

/// Publishes that the run is held back (lock waits) or in trouble.
pub fn publish_health(sender: &watch::Sender<Progress>, health: Health, message: String) {
    sender.send_modify(|p| {
        p.sequence += 1;
        p.health = health;
        p.warnings += i64::from(health == Health::Warning);
        p.message = message;
        p.emitted_at = chrono::Utc::now();
    });
}

/// Publishes the end of a run.
pub fn publish_end(
    sender: &watch::Sender<Progress>,
    state: RunState,
    health: Health,
    message: &str,
) {
    sender.send_modify(|p| {
        p.sequence += 1;
        p.state = state;
        p.health = health;
        p.errors += i64::from(state == RunState::Failed);
        p.warnings += i64::from(health == Health::Warning);
        p.message = message.to_owned();
        p.estimated_completion = None;
        if matches!(state, RunState::Succeeded | RunState::RolledBack) {
            p.remaining = 0;
        }
        p.emitted_at = chrono::Utc::now();
    });
}

/// Follows a run executed by another server through its row: a snapshot per
/// change, with a rate and an ETA measured from the changes seen.
pub fn follow(pool: PgPool, run: &Run, shutdown: CancellationToken) -> watch::Receiver<Progress> {
    let (sender, receiver) = watch::channel(snapshot(run));
    let (id, organization_id) = (run.id, run.organization_id);
    tokio::spawn(async move {
        let mut throughput = Throughput::default();
        let mut seen = (sender.borrow().processed, Instant::now());
        while !sender.borrow().state.is_terminal() {
            tokio::select! {
                () = sender.closed() => return,
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
            let Ok(run) = store::get(&pool, organization_id, id).await else {
                continue; // a passing database error: try again
            };
            let mut latest = snapshot(&run);
            if latest.processed > seen.0 {
                let elapsed = seen.1.elapsed().as_secs_f64() * 1000.0;
                throughput.record(latest.processed - seen.0, elapsed, elapsed);
                seen = (latest.processed, Instant::now());
            }
            latest.transactions_per_second = throughput.transactions_per_second().unwrap_or(0.0);
            latest.estimated_completion = (!latest.state.is_terminal())
                .then(|| throughput.estimated_completion(latest.remaining, chrono::Utc::now()))
                .flatten();
            sender.send_if_modified(|current| {
                let changed = latest.sequence > current.sequence || latest.state != current.state;
                if changed {
                    *current = latest;
                }
                changed
            });
        }
    });
    receiver
}
