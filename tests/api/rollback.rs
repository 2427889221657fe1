//! Phases 3 and 4 and the way back, through the API: reporting aliases,
//! validation, and a rollback on the same engine as the execution.
use std::time::Duration;

use hera_migrate::proto::*;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    as_user, catalog,
    fixtures::{self, row_counts},
    process::{client_of, server_on},
    runs::{
        aliases, collect, get, installed, ledger_digest, migrate, migrate_paced, rollback,
        rolled_back, seeded, start, started, trial_balance, validate, watch, watched,
    },
};

async fn aliased_by(pool: &PgPool, id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions WHERE metadata ->> 'alias_migration_id' = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn failed_checks(report: &ValidationReport) -> Vec<&ValidationCheck> {
    report
        .checks
        .iter()
        .filter(|check| check.result() != CheckResult::Pass)
        .collect()
}

/// The report of a sound run that skipped `skipped` closed-period
/// candidates: WARN, completeness alone warning, and saying why.
fn only_the_skips_warn(report: &ValidationReport, skipped: i64) {
    let warned = failed_checks(report);
    assert_eq!(report.overall(), CheckResult::Warn, "{warned:#?}");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let completeness = warned[0];
    assert_eq!(completeness.name, "completeness");
    assert_eq!(completeness.result(), CheckResult::Warn);
    assert!(
        completeness
            .summary
            .contains(&format!("closed or locked period: {skipped}")),
        "{completeness:#?}"
    );
    assert_eq!(completeness.details["skipped_closed"], skipped.to_string());
}

/// Issue 6's acceptance: migrate, apply aliases, validate (every check PASS
/// but completeness, which WARNs listing what the run skipped), roll back
/// (streams to ROLLED_BACK), validate (ROLLBACK_COMPLETE): the trial
/// balance is identical at every step and no table is created; then the
/// restored originals migrate again.
#[tokio::test]
async fn migrate_alias_validate_roll_back_validate_and_migrate_again() {
    let s = seeded(200).await;
    let before = trial_balance(&s.pool, s.org).await;
    let tables = catalog::tables(&s.pool).await;
    let mut client = s.app.client().await;
    let id = migrate(&s, &mut client, 25).await;
    let run = crate::support::runs::get(&mut client, s.org, s.owner, &id).await;
    let progress = run.progress.unwrap();
    let (skipped, migrated) = (
        progress.transactions_skipped,
        progress.transactions_processed - progress.transactions_skipped,
    );
    assert!(skipped > 0 && migrated > 0, "{progress:?}");
    assert_eq!(trial_balance(&s.pool, s.org).await, before);

    let applied = client
        .apply_reporting_aliases(as_user(aliases(s.org, &id, "alias-1"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        applied.total_aliased, skipped,
        "what the run skipped: {applied:?}"
    );
    assert!(
        applied
            .counts
            .iter()
            .all(|c| c.target_smart_code.ends_with(".v2"))
    );
    let again = client
        .apply_reporting_aliases(as_user(aliases(s.org, &id, "alias-2"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.total_aliased, 0, "applying twice changes nothing");
    assert_eq!(
        again.counts.iter().map(|c| c.already_aliased).sum::<i64>(),
        skipped
    );
    let replayed = client
        .apply_reporting_aliases(as_user(aliases(s.org, &id, "alias-1"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        replayed.alias_batch_id, applied.alias_batch_id,
        "a request id replays its answer"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);

    let report = validate(&mut client, s.org, s.owner, &id).await;
    only_the_skips_warn(&report, skipped);
    assert_eq!(report.sacred_six_status(), SacredSixStatus::Compliant);
    assert_eq!(report.rollback_status(), RollbackStatus::Unspecified);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for name in [
        "zero_tables",
        "gl_balance",
        "trial_balance",
        "completeness",
        "performance",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let psql: Value = sqlx::query_scalar("SELECT hera_migration_validate_v2($1::uuid)")
        .bind(&id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let psql_results: Vec<(String, String)> = psql["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    let rpc_results: Vec<(String, String)> = report
        .checks
        .iter()
        .map(|c| (c.name.clone(), c.result().short_name().into()))
        .collect();
    assert_eq!(psql_results, rpc_results, "psql and the RPC agree");
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE id = $1::uuid AND transaction_type = 'MIGRATION_VALIDATION'",
    )
    .bind(&report.audit_transaction_id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1, "the report is recorded as an audit row");

    let events = rolled_back(&mut client, rollback(s.org, &id, "rb-1"), s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::RolledBack, "{last:?}");
    assert_eq!(last.phase(), MigrationPhase::Rollback);
    assert_eq!(
        (last.transactions_processed, last.progress_percentage),
        (migrated, 100.0)
    );
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "{events:?}"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    assert_eq!(aliased_by(&s.pool, &id).await, 0, "its aliases are gone");

    let report = validate(&mut client, s.org, s.owner, &id).await;
    assert_eq!(
        report.rollback_status(),
        RollbackStatus::Complete,
        "{report:#?}"
    );
    only_the_skips_warn(&report, skipped);
    let again = client
        .rollback_migration(as_user(rollback(s.org, &id, "rb-2"), s.owner))
        .await
        .expect_err("already rolled back");
    assert_eq!(again.code(), Code::FailedPrecondition);

    let second = migrate(&s, &mut client, 25).await;
    let (reversed, reversals, reposts) = fixtures::migrated_copies(&s.pool, s.org, &second).await;
    assert_eq!(
        (reversed, reposts),
        (migrated, migrated),
        "the restored originals migrate again"
    );
    assert!(reversals >= migrated);
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    assert_eq!(catalog::tables(&s.pool).await, tables, "no table created");
    s.app.stop().await;
}

#[tokio::test]
async fn a_rollback_without_a_reason_is_refused_naming_it_and_the_run_is_untouched() {
    let s = seeded(60).await;
    let mut client = s.app.client().await;
    let id = migrate(&s, &mut client, 25).await;
    let counts = row_counts(&s.pool).await;
    let ledger = ledger_digest(&s.pool, s.org).await;

    for reason in ["", "  \t "] {
        let refused = client
            .rollback_migration(as_user(
                RollbackMigrationRequest {
                    reason: reason.into(),
                    ..rollback(s.org, &id, "no-reason")
                },
                s.owner,
            ))
            .await
            .expect_err("a rollback needs a reason");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{reason:?}: {refused:?}"
        );
        assert!(
            refused.message().starts_with("reason:"),
            "{}",
            refused.message()
        );
        use tonic_types::StatusExt;
        let details = refused.get_error_details();
        let violations = &details
            .bad_request()
            .expect("field violations")
            .field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "reason");
    }

    assert_eq!(row_counts(&s.pool).await, counts, "nothing written");
    assert_eq!(ledger_digest(&s.pool, s.org).await, ledger);
    let run = get(&mut client, s.org, s.owner, &id).await;
    assert_eq!(run.state(), MigrationState::Succeeded, "{run:?}");
    assert_eq!(run.phase(), MigrationPhase::Execution, "{run:?}");
    s.app.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_nothing_written_and_force_cancels_first() {
    let s = seeded(200).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let counts = row_counts(&s.pool).await;

    let unknown = client
        .rollback_migration(as_user(
            rollback(s.org, &Uuid::new_v4().to_string(), "x"),
            s.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_mapping = client
        .apply_reporting_aliases(as_user(
            ApplyReportingAliasesRequest {
                smart_code_mappings: vec![SmartCodeMapping {
                    source_smart_code: "HERA.SALON.POS.TXN.SALE.v1".into(),
                    target_smart_code: "not a smart code".into(),
                }],
                ..aliases(s.org, "", "bad")
            },
            s.owner,
        ))
        .await
        .expect_err("invalid mapping");
    assert_eq!(bad_mapping.code(), Code::InvalidArgument);
    assert!(
        bad_mapping
            .message()
            .starts_with("smart_code_mappings[0].target_smart_code"),
        "{}",
        bad_mapping.message()
    );
    // A mapping without a target is refused by the SQL (invalid_parameter_value,
    // raised by hera_migration_alias_mappings_v2): still INVALID_ARGUMENT naming
    // the field, never INTERNAL.
    let no_target = client
        .apply_reporting_aliases(as_user(
            ApplyReportingAliasesRequest {
                smart_code_mappings: vec![SmartCodeMapping {
                    source_smart_code: "HERA.SALON.POS.TXN.SALE.v1".into(),
                    target_smart_code: String::new(),
                }],
                ..aliases(s.org, "", "no-target")
            },
            s.owner,
        ))
        .await
        .expect_err("an alias needs a target");
    assert_eq!(no_target.code(), Code::InvalidArgument, "{no_target:?}");
    {
        use tonic_types::StatusExt;
        let details = no_target.get_error_details();
        let violation = &details
            .bad_request()
            .expect("field violations")
            .field_violations[0];
        assert_eq!(violation.field, "smart_code_mappings[0].target_smart_code");
    }
    let unknown = client
        .validate_migration(as_user(
            ValidateMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: Uuid::new_v4().to_string(),
                allow_partial: false,
            },
            s.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let probes = row_counts(&s.pool).await;
    assert_eq!(
        probes[..4],
        counts[..4],
        "nothing written but the probes' audit rows"
    );

    // A run still executing: refused, unless forced (cancelled, then rolled back).
    let mut running = client
        .start_migration(as_user(
            StartMigrationRequest {
                batch_size: 5,
                max_transactions_per_second: Some(200.0),
                ..start(s.org)
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let id = crate::support::runs::next(&mut running).await.migration_id;
    let refused = client
        .rollback_migration(as_user(rollback(s.org, &id, "rb-1"), s.owner))
        .await
        .expect_err("still running");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("force"), "{}", refused.message());
    let aborted = client
        .apply_reporting_aliases(as_user(aliases(s.org, &id, "a-1"), s.owner))
        .await
        .expect_err("a run is active");
    assert_eq!(aborted.code(), Code::Aborted);

    let forced = rolled_back(
        &mut client,
        RollbackMigrationRequest {
            force: true,
            ..rollback(s.org, &id, "rb-2")
        },
        s.owner,
    )
    .await;
    assert_eq!(
        forced.last().unwrap().state(),
        MigrationState::RolledBack,
        "{forced:?}"
    );
    let ended = collect(running).await;
    assert_eq!(ended.last().unwrap().state(), MigrationState::Cancelled);
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    let report = validate(&mut client, s.org, s.owner, &id).await;
    assert_eq!(
        report.rollback_status(),
        RollbackStatus::Complete,
        "{report:#?}"
    );
    let in_effect: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE metadata ->> 'migration_id' = $1 AND metadata ? 'original_transaction_id'
            AND transaction_status <> 'voided'",
    )
    .bind(&id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(in_effect, 0);

    // A dry run wrote nothing to roll back.
    let dry = started(
        &mut client,
        StartMigrationRequest {
            dry_run: true,
            ..start(s.org)
        },
        s.owner,
    )
    .await;
    let dry_id = dry.last().unwrap().migration_id.clone();
    let refused = client
        .rollback_migration(as_user(rollback(s.org, &dry_id, "rb-3"), s.owner))
        .await
        .expect_err("dry");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    s.app.stop().await;
}

#[tokio::test]
async fn a_rollback_whose_server_is_killed_is_finished_by_the_next_server() {
    let (db, pool, org, owner) = installed(300).await;
    let before = trial_balance(&pool, org).await;

    let mut first = server_on(&db);
    let mut client = client_of(&first).await;
    let done = started(
        &mut client,
        StartMigrationRequest {
            batch_size: 5,
            ..start(org)
        },
        owner,
    )
    .await;
    let id = done.last().unwrap().migration_id.clone();
    let mut events = client
        .rollback_migration(as_user(rollback(org, &id, "rb-crash"), owner))
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = crate::support::runs::next(&mut events).await;
        if event.phase() == MigrationPhase::Rollback && event.transactions_processed >= 20 {
            break;
        }
    }
    first.signal(libc::SIGKILL);
    first.exit_within(Duration::from_secs(10)).await;
    let (state, phase): (String, String) = sqlx::query_as(
        "SELECT metadata ->> 'state', metadata ->> 'phase' FROM universal_transactions WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), phase.as_str()),
        ("RUNNING", "ROLLBACK"),
        "killed mid-rollback"
    );

    let next = server_on(&db);
    let mut client = client_of(&next).await;
    let watched = watched(&mut client, watch(org, &id), owner).await;
    let last = watched.last().unwrap();
    assert_eq!(
        last.state(),
        MigrationState::RolledBack,
        "{last:?}\n{}",
        next.logs()
    );
    assert_eq!(trial_balance(&pool, org).await, before);
    let validated = client
        .validate_migration(as_user(
            ValidateMigrationRequest {
                organization_id: org.to_string(),
                migration_id: id,
                allow_partial: false,
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_report();
    assert_eq!(validated.rollback_status(), RollbackStatus::Complete);
}

/// Issue 6's second acceptance point: two databases seeded alike and migrated
/// alike; one then gets the three SQL functions from psql, the other the RPCs.
#[tokio::test]
async fn the_sql_functions_from_psql_give_what_the_rpcs_give() {
    let (by_psql, by_rpc) = (seeded(150).await, seeded(150).await);
    let mut psql_client = by_psql.app.client().await;
    let mut client = by_rpc.app.client().await;
    let psql_run = migrate(&by_psql, &mut psql_client, 30).await;
    let rpc_run = migrate(&by_rpc, &mut client, 30).await;
    let before = (
        trial_balance(&by_psql.pool, by_psql.org).await,
        trial_balance(&by_rpc.pool, by_rpc.org).await,
    );

    let psql_aliases: Value = sqlx::query_scalar(
        "SELECT hera_migration_apply_reporting_aliases_v2($1, '[]'::jsonb, $2::uuid)",
    )
    .bind(by_psql.org)
    .bind(&psql_run)
    .fetch_one(&by_psql.pool)
    .await
    .unwrap();
    let rpc_aliases = client
        .apply_reporting_aliases(as_user(aliases(by_rpc.org, &rpc_run, "a"), by_rpc.owner))
        .await
        .unwrap()
        .into_inner();
    let mut from_psql: Vec<(String, String, i64, i64)> = psql_aliases["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["source_smart_code"].as_str().unwrap().to_owned(),
                m["target_smart_code"].as_str().unwrap().to_owned(),
                m["transactions_aliased"].as_i64().unwrap(),
                m["already_aliased"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut from_rpc: Vec<(String, String, i64, i64)> = rpc_aliases
        .counts
        .iter()
        .map(|c| {
            (
                c.source_smart_code.clone(),
                c.target_smart_code.clone(),
                c.transactions_aliased,
                c.already_aliased,
            )
        })
        .collect();
    from_psql.sort();
    from_rpc.sort();
    assert!(!from_rpc.is_empty());
    assert_eq!(from_psql, from_rpc, "aliases");

    let results = |checks: Vec<(String, String)>| {
        checks
            .into_iter()
            .filter(|(name, _)| name != "performance") // a timing, not a result
            .collect::<Vec<_>>()
    };
    let psql_report: Value = sqlx::query_scalar("SELECT hera_migration_validate_v2($1::uuid)")
        .bind(&psql_run)
        .fetch_one(&by_psql.pool)
        .await
        .unwrap();
    let rpc_report = validate(&mut client, by_rpc.org, by_rpc.owner, &rpc_run).await;
    let psql_checks = |report: &Value| {
        results(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().into(),
                        c["result"].as_str().unwrap().into(),
                    )
                })
                .collect(),
        )
    };
    let rpc_checks = |report: &ValidationReport| {
        results(
            report
                .checks
                .iter()
                .map(|c| (c.name.clone(), c.result().short_name().into()))
                .collect(),
        )
    };
    assert_eq!(
        psql_checks(&psql_report),
        rpc_checks(&rpc_report),
        "validation"
    );

    let psql_rollback: Value =
        sqlx::query_scalar("SELECT hera_migration_rollback_v2($1, $2, 'psql')")
            .bind(by_psql.org)
            .bind(&psql_run)
            .fetch_one(&by_psql.pool)
            .await
            .unwrap();
    let rpc_rollback = rolled_back(
        &mut client,
        rollback(by_rpc.org, &rpc_run, "rb"),
        by_rpc.owner,
    )
    .await;
    let last = rpc_rollback.last().unwrap();
    assert_eq!(psql_rollback["state"], "ROLLED_BACK");
    assert_eq!(last.state(), MigrationState::RolledBack);
    assert_eq!(
        psql_rollback["restored"].as_i64().unwrap(),
        last.transactions_processed,
        "rollback: {psql_rollback}"
    );
    assert_eq!(
        (
            trial_balance(&by_psql.pool, by_psql.org).await,
            trial_balance(&by_rpc.pool, by_rpc.org).await,
        ),
        before
    );
    let psql_report: Value = sqlx::query_scalar("SELECT hera_migration_validate_v2($1::uuid)")
        .bind(&psql_run)
        .fetch_one(&by_psql.pool)
        .await
        .unwrap();
    let rpc_report = validate(&mut client, by_rpc.org, by_rpc.owner, &rpc_run).await;
    assert_eq!(psql_report["rollback_status"], "ROLLBACK_COMPLETE");
    assert_eq!(rpc_report.rollback_status(), RollbackStatus::Complete);
    assert_eq!(
        psql_checks(&psql_report),
        rpc_checks(&rpc_report),
        "validation after"
    );
    by_psql.app.stop().await;
    by_rpc.app.stop().await;
}

#[tokio::test]
async fn a_rollback_pauses_and_resumes_between_batches() {
    let s = seeded(200).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    // The rollback keeps the run's pace: slow enough for the pause to land mid-way.
    let id = migrate_paced(&s, &mut client, 5, Some(400.0)).await;
    let mut events = client
        .rollback_migration(as_user(rollback(s.org, &id, "rb"), s.owner))
        .await
        .unwrap()
        .into_inner();
    let control = |request_id: &str| PauseMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: id.clone(),
        request_id: request_id.into(),
    };
    client
        .pause_migration(as_user(control("p"), s.owner))
        .await
        .unwrap();
    let paused = crate::support::runs::until_state(&mut events, MigrationState::Paused).await;
    assert_eq!(paused.phase(), MigrationPhase::Rollback);
    let resume = control("r");
    client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: resume.organization_id,
                migration_id: resume.migration_id,
                request_id: resume.request_id,
            },
            s.owner,
        ))
        .await
        .unwrap();
    let done = crate::support::runs::until_state(&mut events, MigrationState::RolledBack).await;
    assert!(done.sequence > paused.sequence);
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    let report = validate(&mut client, s.org, s.owner, &id).await;
    assert_eq!(report.rollback_status(), RollbackStatus::Complete);
    s.app.stop().await;
}
