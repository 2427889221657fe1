//! What to do about a run, decided from its assessment (a pure function):
//! each action with its reason and the command to run, a summary, and
//! whether a rollback is recommended (only when the ledger's integrity is in
//! doubt and something of the run's is still in effect to undo).
use super::{assessment::Assessment, commands::Commands};
use crate::migration::{
    progress::EventKind,
    run::{Phase, RunState},
};

/// One recommended action: `action` names it (resume, emergency-rollback,
/// validate-migration, fix-data, new-run, raise-lock-timeout, inspect-locks,
/// apply-reporting-aliases, start-server, wait, investigate,
/// nothing-to-recover).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Action {
    pub action: String,
    pub reason: String,
    pub command: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advice {
    pub summary: String,
    pub actions: Vec<Action>,
    pub rollback_recommended: bool,
}

fn action(action: &str, reason: impl Into<String>, command: impl Into<String>) -> Action {
    Action {
        action: action.to_owned(),
        reason: reason.into(),
        command: command.into(),
    }
}

/// The checks whose FAIL puts the ledger's integrity in doubt (run with
/// allow_partial, completeness FAILs only when the ledger disagrees with the
/// run's counts), each as "name: summary".
pub fn integrity_problems(a: &Assessment) -> Vec<String> {
    ["gl_balance", "trial_balance", "completeness", "rollback"]
        .iter()
        .filter_map(|name| a.check(name))
        .filter(|check| check.result == "FAIL")
        .map(|check| format!("{}: {}", check.name, check.summary))
        .collect()
}

/// A failure that came from waiting on the business's row locks.
fn lock_failure(message: &str) -> bool {
    let message = message.to_lowercase();
    ["row locks", "lock timeout", "55p03", "deadlock", "40p01"]
        .iter()
        .any(|sign| message.contains(sign))
}

pub fn advise(a: &Assessment) -> Advice {
    let commands = Commands::of(a);
    let problems = integrity_problems(a);
    let rollback_recommended =
        !problems.is_empty() && a.still_migrated > 0 && a.phase() != Phase::Aliasing;
    let mut actions = Vec::new();
    if rollback_recommended {
        actions.push(action(
            "emergency-rollback",
            format!(
                "the ledger's integrity is in doubt ({}); a rollback voids the run's {} reversal(s) \
                 and repost(s) still in effect and restores their originals (if the business \
                 posted meanwhile, compare those postings first: the trial balance check is exact)",
                problems.join("; "),
                a.still_migrated
            ),
            commands.rollback(&problems[0]),
        ));
    }
    if !rollback_recommended {
        // Resuming or waiting for a run whose ledger is in doubt is no advice.
        by_state(a, &commands, &mut actions);
    }
    left_out(a, &commands, &mut actions);
    for check in a.checks.iter().flat_map(|r| r.checks.iter()) {
        if check.result == "FAIL" && ["zero_tables", "performance"].contains(&check.name.as_str()) {
            actions.push(action(
                "investigate",
                format!("{} FAILs: {}", check.name, check.summary),
                commands.validate(false),
            ));
        }
    }
    if a.state().is_terminal() && !actions.iter().any(|a| a.action == "validate-migration") {
        let partial = a.pending > 0 && matches!(a.state(), RunState::Cancelled | RunState::Failed);
        actions.push(action(
            "validate-migration",
            "record the validation suite's verdict on the run (a MIGRATION_VALIDATION row)",
            commands.validate(partial),
        ));
    }
    Advice {
        summary: summary(a, &problems, rollback_recommended),
        actions,
        rollback_recommended,
    }
}

/// What the run's state asks for.
fn by_state(a: &Assessment, commands: &Commands, actions: &mut Vec<Action>) {
    let batch = a.last_batch_number();
    match a.state() {
        RunState::Failed => {
            let failure = a.failure.as_ref();
            let message = failure.map_or("", |f| f.message.as_str());
            let attempted = failure.map_or(batch + 1, |f| f.batch_number);
            let phase = if a.phase() == Phase::Rollback {
                "its rollback"
            } else {
                "it"
            };
            if lock_failure(message) {
                actions.push(action(
                    "resume",
                    format!(
                        "batch {attempted} kept waiting on row locks held by the business's own \
                         transactions until its retries ran out; once those locks are released, \
                         resume: the failed batch rolled back whole, so {phase} continues after \
                         batch {batch}, exactly once"
                    ),
                    commands.resume(),
                ));
                actions.push(action(
                    "inspect-locks",
                    "the sessions holding row locks for longer than a batch waits (the business's \
                     long transactions)",
                    commands.lock_holders(),
                ));
                actions.push(action(
                    "raise-lock-timeout",
                    format!(
                        "a batch waits at most {} ms on a row lock (HERA_BATCH_LOCK_TIMEOUT_MS) and \
                         retries {} times (HERA_BATCH_LOCK_RETRIES) before the run fails; if the \
                         business routinely holds locks longer, serve with more",
                        a.lock.timeout_ms, a.lock.retries
                    ),
                    commands.serve_with_lock_timeout(a.lock),
                ));
            } else {
                actions.push(action(
                    "resume",
                    format!(
                        "batch {attempted} failed with the error above; fix its cause, then \
                         resume: the failed batch rolled back whole, so {phase} continues after \
                         batch {batch}"
                    ),
                    commands.resume(),
                ));
            }
        }
        RunState::Paused => {
            let why = a.run.record.message.clone().unwrap_or_default();
            actions.push(action(
                "resume",
                format!("the run is paused ({why}); resume it to go on after batch {batch}"),
                commands.resume(),
            ));
        }
        RunState::Running if a.run.latest.kind == EventKind::Interrupted => {
            actions.push(action(
                "start-server",
                format!(
                    "the server executing it stopped after batch {batch}; the next server to \
                     start (or any replica, within HERA_LEASE_CHECK_INTERVAL_MS) resumes it"
                ),
                "hera-migrate serve",
            ));
        }
        RunState::Running => {
            actions.push(action(
                "wait",
                format!(
                    "the run is executing (batch {batch}, {:.1} %); assess it again once it ends",
                    a.run.latest.percentage()
                ),
                commands.assess(),
            ));
        }
        RunState::RolledBack if !a.rollback_refused().is_empty() => {
            actions.push(action(
                "emergency-rollback",
                format!(
                    "the database refused to restore {} original(s) (listed); once the cause is \
                     fixed, rolling back again retries exactly those",
                    a.rollback_refused().len()
                ),
                commands.rollback("retry the refused restores"),
            ));
        }
        RunState::Cancelled if a.pending > 0 => {
            actions.push(action(
                "new-run",
                format!(
                    "the run was cancelled after batch {batch} with {} candidate(s) pending (what \
                     it migrated stays; roll it back to undo it); a new run over the same range \
                     migrates the rest",
                    a.pending
                ),
                commands.new_run(),
            ));
        }
        RunState::Succeeded | RunState::RolledBack | RunState::Cancelled => {
            if nothing_to_recover(a) {
                let what = match a.state() {
                    RunState::Succeeded => "the run SUCCEEDED",
                    RunState::RolledBack => "the run was rolled back completely",
                    _ => "the run was cancelled with nothing pending (what it migrated stays)",
                };
                actions.push(action(
                    "nothing-to-recover",
                    format!("{what} and the ledger balances: nothing failed, nothing to recover"),
                    "",
                ));
            }
        }
    }
}

/// The run ended (not FAILED), set nothing aside and the ledger balances
/// (one that failed and was resumed has recovered).
fn nothing_to_recover(a: &Assessment) -> bool {
    a.state().is_terminal()
        && a.state() != RunState::Failed
        && a.quarantined().is_empty()
        && a.rollback_refused().is_empty()
        && integrity_problems(a).is_empty()
}

/// What the run left out: quarantined transactions to fix, skipped ones.
fn left_out(a: &Assessment, commands: &Commands, actions: &mut Vec<Action>) {
    let quarantined = a.quarantined();
    let ended = matches!(a.state(), RunState::Succeeded | RunState::Cancelled);
    let execution = a.phase() == Phase::Execution;
    if !quarantined.is_empty() && execution {
        let mut rules: Vec<(String, usize)> = Vec::new();
        for q in quarantined {
            match rules.iter_mut().find(|(rule, _)| *rule == q.rule) {
                Some((_, n)) => *n += 1,
                None => rules.push((q.rule.clone(), 1)),
            }
        }
        let rules: Vec<String> = rules.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        actions.push(action(
            "fix-data",
            format!(
                "{} transaction(s) were quarantined and left untouched as v1 ({}); fix what each \
                 rule names (the query lists them with their GL sides)",
                quarantined.len(),
                rules.join(", ")
            ),
            commands.quarantined_sql(quarantined),
        ));
        if ended {
            actions.push(action(
                "new-run",
                "quarantined transactions stay v1 candidates: once fixed, a new run over the \
                 same range migrates them (what was migrated is no longer a candidate)",
                commands.new_run(),
            ));
        }
    }
    let counters = a.counters();
    if counters.skipped_closed > 0 && execution && ended && !a.dry_run() {
        actions.push(action(
            "apply-reporting-aliases",
            format!(
                "{} transaction(s) were skipped because their fiscal period is closed or locked; \
                 reporting aliases give them their v2 code for reporting without moving data \
                 (or reopen the periods, or run again with POST_TO_OPEN_PERIOD)",
                counters.skipped_closed
            ),
            commands.aliases(),
        ));
    }
    if counters.skipped_unmapped > 0 && execution && ended {
        actions.push(action(
            "fix-data",
            format!(
                "{} transaction(s) were skipped because their smart code has no v2 target; map \
                 them (smart_code_mappings) in a new run (the query lists the v1 codes left)",
                counters.skipped_unmapped
            ),
            commands.v1_codes_left(),
        ));
    }
}

/// How often the run failed, now or before a resume.
fn history_failures(a: &Assessment) -> usize {
    super::history::failures(&a.events).count()
}

fn summary(a: &Assessment, problems: &[String], rollback_recommended: bool) -> String {
    let c = a.counters();
    let mut text = format!(
        "Migration {} is {} in phase {}{} after {} committed batch(es): {} migrated, {} skipped \
         ({} closed period, {} unmapped), {} quarantined, {} pending.",
        a.id(),
        a.state().as_str(),
        a.phase().as_str(),
        if a.dry_run() { " (a dry run)" } else { "" },
        a.last_batch_number(),
        c.migrated,
        c.skipped_closed + c.skipped_unmapped,
        c.skipped_closed,
        c.skipped_unmapped,
        c.quarantined,
        a.pending,
    );
    if let Some(failure) = &a.failure {
        text.push_str(&format!(
            " It failed at batch {}: {}",
            failure.batch_number, failure.message
        ));
        if !text.ends_with('.') {
            text.push('.');
        }
    } else if history_failures(a) > 0 {
        text.push_str(&format!(
            " It failed {} time(s) before and was resumed.",
            history_failures(a)
        ));
    }
    let backoffs = a.count(EventKind::LockBackoff);
    if backoffs > 0 {
        text.push_str(&format!(
            " Batches backed off {backoffs} time(s) from the business's row locks."
        ));
    }
    text.push_str(if problems.is_empty() {
        " The ledger balances."
    } else {
        " The ledger's integrity is in doubt."
    });
    text.push_str(match (rollback_recommended, a.state()) {
        (true, _) => " Roll it back.",
        (false, RunState::Failed) => " No rollback is needed: resume it.",
        (false, RunState::Paused) => " No rollback is needed: resume it when ready.",
        _ if nothing_to_recover(a) => " Nothing to recover.",
        _ => " No rollback is needed.",
    });
    text
}

#[cfg(test)]
#[path = "advice_tests.rs"]
mod tests;
