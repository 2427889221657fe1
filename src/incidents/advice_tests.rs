//! The advice, decided from assessments made up for each case.
use std::collections::BTreeMap;

use chrono::Utc;
use uuid::Uuid;

use super::advise;
use crate::{
    incidents::{
        Advice,
        assessment::{Assessment, Committed, LockSettings},
    },
    migration::{
        progress::{EventKind, Progress},
        run::{Run, RunRecord, RunState, SetAside},
        validation::{Check, Report},
    },
};

fn assessment(state: RunState, failing: &[&str]) -> Assessment {
    let checks = ["zero_tables", "gl_balance", "trial_balance", "completeness"]
        .iter()
        .map(|name| Check {
            name: (*name).to_owned(),
            result: if failing.contains(name) {
                "FAIL"
            } else {
                "PASS"
            }
            .to_owned(),
            summary: format!("{name} says so"),
            details: BTreeMap::new(),
        })
        .collect();
    Assessment {
        run: Run {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            record: RunRecord {
                state,
                ..RunRecord::default()
            },
            latest: Progress {
                state,
                ..Progress::default()
            },
        },
        events: Vec::new(),
        committed: Committed::default(),
        failure: None,
        pending: 0,
        still_migrated: 10,
        checks: Some(Report {
            overall: "PASS".into(),
            sacred_six_status: None,
            rollback_status: None,
            validated_at: Utc::now(),
            checks,
            allow_partial: true,
            audit_transaction_id: Uuid::nil(),
            audit_anchor: Default::default(),
        }),
        latest_validation: None,
        lock: LockSettings {
            timeout_ms: 2000,
            retries: 10,
        },
        assessed_at: Utc::now(),
        advice: Advice::default(),
    }
}

fn actions(advice: &Advice) -> Vec<&str> {
    advice.actions.iter().map(|a| a.action.as_str()).collect()
}

#[test]
fn a_paused_run_is_resumed_and_an_interrupted_one_waits_for_a_server() {
    let paused = advise(&assessment(RunState::Paused, &[]));
    assert_eq!(actions(&paused), ["resume"]);
    assert!(!paused.rollback_recommended);

    let mut interrupted = assessment(RunState::Running, &[]);
    interrupted.run.latest.kind = EventKind::Interrupted;
    assert_eq!(actions(&advise(&interrupted)), ["start-server"]);
}

#[test]
fn a_broken_ledger_recommends_a_rollback_only_with_something_to_undo() {
    let broken = advise(&assessment(RunState::Succeeded, &["trial_balance"]));
    assert!(broken.rollback_recommended);
    assert_eq!(broken.actions[0].action, "emergency-rollback");
    assert!(
        broken.actions[0]
            .command
            .contains("--reason \"trial_balance: trial_balance says so\""),
        "{}",
        broken.actions[0].command
    );
    assert!(!actions(&broken).contains(&"nothing-to-recover"));

    let mut undone = assessment(RunState::Succeeded, &["trial_balance"]);
    undone.still_migrated = 0; // a dry run, or everything restored
    let undone = advise(&undone);
    assert!(!undone.rollback_recommended);
    assert!(!actions(&undone).contains(&"emergency-rollback"));

    // A table created since the run began is no reason to undo the ledger.
    let tables = advise(&assessment(RunState::Succeeded, &["zero_tables"]));
    assert!(!tables.rollback_recommended);
    assert!(actions(&tables).contains(&"investigate"));
}

#[test]
fn a_clean_run_has_nothing_to_recover_and_a_rollback_with_refusals_is_retried() {
    let clean = advise(&assessment(RunState::Succeeded, &[]));
    assert_eq!(
        actions(&clean),
        ["nothing-to-recover", "validate-migration"]
    );
    assert!(
        clean.summary.ends_with("Nothing to recover."),
        "{}",
        clean.summary
    );

    let mut refused = assessment(RunState::RolledBack, &[]);
    refused.run.record.rollback = Some(crate::migration::run::RollbackRecord {
        refused: vec![SetAside {
            transaction_id: Some(Uuid::new_v4()),
            rule: "trg_block".into(),
            reason: "refused".into(),
        }],
        ..Default::default()
    });
    let refused = advise(&refused);
    assert_eq!(
        actions(&refused),
        ["emergency-rollback", "validate-migration"]
    );
    assert!(!refused.rollback_recommended, "the ledger is whole");
}
