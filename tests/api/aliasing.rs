//! Phase 3 on the engine: an application of reporting aliases is a run of its
//! own in phase ALIASING, listed, watched, paused, resumed and paced like any
//! run, and finished by the next server after a kill -9.
use std::time::Duration;

use hera_migrate::proto::*;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    as_user,
    process::{client_of, server_on},
    runs::{
        aliases, control, get, installed, migrate, seeded, start, trial_balance, watch, watched,
    },
    sql, wait,
};

/// The aliasing run's row: its state, phase and metadata.
async fn aliasing_row(pool: &PgPool, org: Uuid) -> Option<(Uuid, String, String, Value)> {
    sqlx::query_as(
        "SELECT id, metadata ->> 'state', metadata ->> 'phase', metadata FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN'
            AND metadata ->> 'phase' = 'ALIASING'
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(org)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Waits until the organization's aliasing run has committed `batches`.
async fn until_batches(pool: &PgPool, org: Uuid, batches: i64) -> Value {
    wait::until("aliasing batches", Duration::from_secs(30), || async {
        aliasing_row(pool, org)
            .await
            .map(|(_, _, _, metadata)| metadata)
            .filter(|m| m["counters"]["batches"].as_i64().unwrap_or(0) >= batches)
    })
    .await
}

async fn carrying_alias(pool: &PgPool, alias_batch_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE metadata ->> 'alias_batch_id' = $1 AND transaction_type <> 'MIGRATION_OPERATION'",
    )
    .bind(alias_batch_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn audit_rows(pool: &PgPool, alias_batch_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE transaction_type = 'MIGRATION_OPERATION' AND metadata ->> 'operation_type' = 'ALIAS'
            AND id = $1::uuid",
    )
    .bind(alias_batch_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_application_of_aliases_whose_server_is_killed_is_finished_by_the_next_server() {
    let (db, pool, org, owner) = installed(300).await;
    let before = trial_balance(&pool, org).await;
    let request = ApplyReportingAliasesRequest {
        batch_size: 5,
        max_transactions_per_second: Some(100.0),
        ..aliases(org, "", "aliases-crash")
    };

    let mut first = server_on(&db);
    let mut client = client_of(&first).await;
    let call = {
        let request = as_user(request.clone(), owner);
        tokio::spawn(async move { client.apply_reporting_aliases(request).await })
    };
    let metadata = until_batches(&pool, org, 4).await;
    first.signal(libc::SIGKILL);
    first.exit_within(Duration::from_secs(10)).await;
    let interrupted = call.await.unwrap();
    assert!(interrupted.is_err(), "the call died with its server");

    let (id, state, _, metadata_after) = aliasing_row(&pool, org).await.unwrap();
    assert_eq!(state, "RUNNING", "killed mid-application");
    let alias_batch_id = metadata["aliasing"]["alias_batch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let total = metadata_after["total_candidates"].as_i64().unwrap();
    let so_far = carrying_alias(&pool, &alias_batch_id).await;
    assert_eq!(
        so_far,
        metadata_after["counters"]["migrated"].as_i64().unwrap(),
        "what the committed batches counted is what carries the alias"
    );
    assert!(so_far > 0 && so_far < total, "{so_far} of {total}");

    // The next server resumes it; the same request id answers what it did.
    let next = server_on(&db);
    let mut client = client_of(&next).await;
    let applied = client
        .apply_reporting_aliases(as_user(request, owner))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", next.logs()))
        .into_inner();
    assert_eq!(applied.aliasing_run_id, id.to_string());
    assert_eq!(applied.alias_batch_id, alias_batch_id);
    assert_eq!(applied.total_aliased, total, "every eligible one, once");
    assert_eq!(carrying_alias(&pool, &alias_batch_id).await, total);
    assert_eq!(audit_rows(&pool, &alias_batch_id).await, 1);
    let run = get(&mut client, org, owner, &id.to_string()).await;
    assert_eq!(
        (run.phase(), run.state()),
        (MigrationPhase::Aliasing, MigrationState::Succeeded)
    );
    let progress = run.progress.unwrap();
    assert_eq!(progress.transactions_processed, total);
    assert_eq!(progress.progress_percentage, 100.0);
    assert_eq!(trial_balance(&pool, org).await, before, "metadata only");
}

#[tokio::test]
async fn an_application_of_aliases_is_a_run_listed_watched_and_refused_what_it_is_not() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;
    let id = migrate(&s, &mut client, 40).await;
    let applied = client
        .apply_reporting_aliases(as_user(
            ApplyReportingAliasesRequest {
                batch_size: 7,
                ..aliases(s.org, &id, "closed")
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(applied.total_aliased > 0, "{applied:?}");

    let run = get(&mut client, s.org, s.owner, &applied.aliasing_run_id).await;
    assert_eq!(
        (run.phase(), run.state()),
        (MigrationPhase::Aliasing, MigrationState::Succeeded)
    );
    assert_eq!(run.aliased_migration_id, id);
    assert_eq!(run.request_id, "closed");
    let parameters = run.parameters.clone().unwrap();
    assert_eq!(parameters.batch_size, 7);
    assert_eq!(
        (parameters.from_date.as_str(), parameters.to_date.as_str()),
        ("2024-01-01", "2024-12-31"),
        "the aliased run's range"
    );
    let progress = run.progress.unwrap();
    assert_eq!(progress.transactions_processed, applied.total_aliased);
    assert_eq!(
        progress.batch_number,
        applied.total_aliased / 7 + 1,
        "7 at a time"
    );

    let events = watched(&mut client, watch(s.org, &applied.aliasing_run_id), s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.phase(), last.state()),
        (MigrationPhase::Aliasing, MigrationState::Succeeded)
    );

    let listed = client
        .list_migrations(as_user(
            ListMigrationsRequest {
                organization_id: s.org.to_string(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .migrations
        .iter()
        .map(|m| m.migration_id.as_str())
        .collect();
    assert_eq!(ids, [applied.aliasing_run_id.as_str(), id.as_str()]);

    let (org, alias_run) = control(s.org, &applied.aliasing_run_id);
    let refused = client
        .rollback_migration(as_user(
            RollbackMigrationRequest {
                organization_id: org.clone(),
                migration_id: alias_run.clone(),
                reason: "no".into(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .expect_err("an application of aliases is not rolled back on its own");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("roll back the migration it aliased")
    );
    let refused = client
        .validate_migration(as_user(
            ValidateMigrationRequest {
                organization_id: org.clone(),
                migration_id: alias_run.clone(),
                allow_partial: false,
            },
            s.owner,
        ))
        .await
        .expect_err("nor validated");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = client
        .apply_reporting_aliases(as_user(aliases(s.org, &alias_run, "of-aliases"), s.owner))
        .await
        .expect_err("nor aliased");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_paused_application_of_aliases_answers_aborted_and_finishes_once_resumed() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;
    let request = ApplyReportingAliasesRequest {
        batch_size: 5,
        max_transactions_per_second: Some(50.0),
        ..aliases(s.org, "", "slow")
    };
    let call = {
        let (mut client, request) = (client.clone(), as_user(request.clone(), s.owner));
        tokio::spawn(async move { client.apply_reporting_aliases(request).await })
    };
    until_batches(&s.pool, s.org, 2).await;
    let (id, _, _, _) = aliasing_row(&s.pool, s.org).await.unwrap();
    let paused = client
        .pause_migration(as_user(
            PauseMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.to_string(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(paused.phase(), MigrationPhase::Aliasing);
    let aborted = call.await.unwrap().expect_err("paused");
    assert_eq!(aborted.code(), Code::Aborted, "{aborted:?}");
    assert!(
        aborted.message().contains("PAUSED"),
        "{}",
        aborted.message()
    );
    let busy = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .expect_err("a paused application holds the organization");
    assert_eq!(busy.code(), Code::Aborted, "{busy:?}");

    client
        .update_migration(as_user(
            UpdateMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.to_string(),
                max_transactions_per_second: Some(0.0),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap();
    client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.to_string(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap();
    let applied = client
        .apply_reporting_aliases(as_user(request, s.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.aliasing_run_id, id.to_string());
    let (_, state, _, metadata) = aliasing_row(&s.pool, s.org).await.unwrap();
    assert_eq!(state, "SUCCEEDED");
    assert_eq!(
        applied.total_aliased,
        metadata["total_candidates"].as_i64().unwrap()
    );
    assert_eq!(
        carrying_alias(&s.pool, &applied.alias_batch_id).await,
        applied.total_aliased
    );
    s.app.stop().await;
}

/// The phase's SQL alone, as psql would drive it: a run created, batches to
/// the end, the audit row recorded once; a batch after the end finds nothing.
#[tokio::test]
async fn the_aliasing_phase_runs_from_psql_batch_by_batch() {
    let (_db, pool, org, owner) = installed(40).await;
    let id: Uuid = sqlx::query_scalar(
        "SELECT hera_migration_create_alias_run_v2($1, $2, '{\"batch_size\": 9}', NULL, 'psql')",
    )
    .bind(org)
    .bind(owner)
    .fetch_one(&pool)
    .await
    .unwrap();
    const BATCH: &str = "SELECT hera_migration_alias_batch_v2($1, 9)";
    let batches = sql::to_end_sql(&pool, BATCH, id).await;
    let (_, state, phase, metadata) = aliasing_row(&pool, org).await.unwrap();
    assert_eq!(
        (state.as_str(), phase.as_str()),
        ("RUNNING", "ALIASING"),
        "the engine ends it"
    );
    let total = metadata["total_candidates"].as_i64().unwrap();
    assert_eq!(batches.len() as i64, total / 9 + 1);
    let alias_batch_id = metadata["aliasing"]["alias_batch_id"].as_str().unwrap();
    assert_eq!(carrying_alias(&pool, alias_batch_id).await, total);
    assert_eq!(audit_rows(&pool, alias_batch_id).await, 1);
    let after = sql::call_sql(&pool, BATCH, id).await;
    assert_eq!(
        (after["done"].as_bool(), after["transactions"].as_i64()),
        (Some(true), Some(0))
    );
    assert_eq!(audit_rows(&pool, alias_batch_id).await, 1, "recorded once");
}
