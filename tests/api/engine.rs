//! Phase 2 through the API: StartMigration runs to the end on the server,
//! streams its progress, and keeps the ledger; the controls around starting.
use hera_migrate::proto::*;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestApp, as_user,
    fixtures::{self, row_counts},
    reason,
    runs::{
        collect, control, seeded, start, start_in_small_batches, started, trial_balance,
        until_state, watched,
    },
};

#[tokio::test]
async fn a_migration_streams_to_succeeded_and_keeps_the_ledger() {
    let s = seeded(300).await;
    let before = trial_balance(&s.pool, s.org).await;
    let tables = crate::support::catalog::tables(&s.pool).await;
    let mut client = s.app.client().await;

    let events = started(&mut client, start(s.org), s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(
        (last.progress_percentage, last.transactions_processed),
        (100.0, 300)
    );
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequence strictly increases"
    );
    assert!(events.iter().all(|e| e.migration_id == last.migration_id));

    let (originals, reversals, reposts) =
        fixtures::migrated_copies(&s.pool, s.org, &last.migration_id).await;
    assert_eq!((originals, reversals, reposts), (300, 300, 300));
    assert_eq!(
        trial_balance(&s.pool, s.org).await,
        before,
        "the trial balance is unchanged"
    );
    assert_eq!(
        crate::support::catalog::tables(&s.pool).await,
        tables,
        "no table created"
    );

    // A watcher attaching afterwards gets the terminal state.
    let watched = watched(
        &mut client,
        WatchMigrationRequest {
            organization_id: s.org.to_string(),
            migration_id: last.migration_id.clone(),
            after_sequence: 0,
        },
        s.owner,
    )
    .await;
    assert_eq!(watched.last().unwrap().state(), MigrationState::Succeeded);
    s.app.stop().await;
}

#[tokio::test]
async fn request_ids_are_idempotent_and_a_second_active_run_is_aborted() {
    let s = seeded(60).await;
    let mut client = s.app.client().await;
    let first = StartMigrationRequest {
        request_id: "nightly-1".into(),
        ..start(s.org)
    };
    let a = started(&mut client, first.clone(), s.owner).await;
    let again = started(&mut client, first.clone(), s.owner).await;
    assert_eq!(
        a.last().unwrap().migration_id,
        again.last().unwrap().migration_id,
        "same request, same run"
    );
    assert_eq!(again.last().unwrap().state(), MigrationState::Succeeded);

    let changed = StartMigrationRequest {
        batch_size: 7,
        ..first
    };
    let conflict = client
        .start_migration(as_user(changed, s.owner))
        .await
        .expect_err("conflict");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert_eq!(reason(&conflict), "REQUEST_ID_REUSED");
    let info = tonic_types::StatusExt::get_error_details(&conflict)
        .error_info()
        .cloned();
    assert_eq!(
        info.unwrap().metadata["migration_id"],
        a.last().unwrap().migration_id
    );
    assert!(
        conflict.message().starts_with("request_id:"),
        "{}",
        conflict.message()
    );

    // An active run (as an operator might have created from psql) blocks a second one.
    let active: Uuid = sqlx::query_scalar("SELECT hera_migration_create_run_v2($1, $2, $3)")
        .bind(s.org)
        .bind(s.owner)
        .bind(json!({"from_date": "2024-01-01", "to_date": "2024-12-31"}))
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let aborted = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .expect_err("aborted");
    assert_eq!(aborted.code(), Code::Aborted);
    assert_eq!(reason(&aborted), "RUN_ALREADY_ACTIVE");
    let info = tonic_types::StatusExt::get_error_details(&aborted)
        .error_info()
        .cloned();
    assert_eq!(
        info.unwrap().metadata["active_migration_id"],
        active.to_string()
    );
    assert!(
        aborted.message().contains(&active.to_string()),
        "{}",
        aborted.message()
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_drifted_plan_and_bad_input_are_refused_and_nothing_is_written() {
    let s = seeded(30).await;
    let mut client = s.app.client().await;
    let before = row_counts(&s.pool).await;
    let drifted = StartMigrationRequest {
        expected_plan_fingerprint: "0".repeat(32),
        ..start(s.org)
    };
    let status = client
        .start_migration(as_user(drifted, s.owner))
        .await
        .expect_err("drifted");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "PLAN_CHANGED");
    assert!(
        status.message().starts_with("expected_plan_fingerprint:"),
        "{}",
        status.message()
    );

    for (bad, field) in [
        (
            StartMigrationRequest {
                batch_size: 5001,
                ..start(s.org)
            },
            "batch_size",
        ),
        (
            StartMigrationRequest {
                batch_size: -1,
                ..start(s.org)
            },
            "batch_size",
        ),
        (
            StartMigrationRequest {
                to_date: "2023-01-01".into(),
                ..start(s.org)
            },
            "from_date",
        ),
        (
            StartMigrationRequest {
                max_transactions_per_second: Some(0.0),
                ..start(s.org)
            },
            "max_transactions_per_second",
        ),
        (
            StartMigrationRequest {
                closed_period_policy: 7,
                ..start(s.org)
            },
            "closed_period_policy",
        ),
    ] {
        let status = client
            .start_migration(as_user(bad, s.owner))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    assert_eq!(row_counts(&s.pool).await, before, "nothing written");

    // With the fingerprint the preview gives for the same plan (its policy
    // included), the start goes ahead.
    let plan = client
        .preview_candidates(as_user(
            PreviewCandidatesRequest {
                organization_id: s.org.to_string(),
                from_date: "2024-01-01".into(),
                to_date: "2024-12-31".into(),
                closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let matching = StartMigrationRequest {
        expected_plan_fingerprint: plan.plan_fingerprint,
        ..start(s.org)
    };
    let events = started(&mut client, matching, s.owner).await;
    assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
    s.app.stop().await;
}

#[tokio::test]
async fn a_run_interrupted_by_a_stopping_server_is_resumed_by_the_next_without_duplicates() {
    let s = seeded(400).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let (mut events, migration_id) = start_in_small_batches(&s, &mut client).await;
    for _ in 0..2 {
        crate::support::runs::next(&mut events).await;
    }
    drop(events); // the caller goes away; the run does not
    s.app.stop().await;

    let (state, processed): (String, i64) = sqlx::query_as(
        "SELECT metadata ->> 'state', (metadata #>> '{counters,processed}')::bigint
           FROM universal_transactions WHERE id = $1::uuid",
    )
    .bind(&migration_id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        state, "RUNNING",
        "a stopped server leaves its run to be resumed"
    );
    assert!(processed < 400, "stopped mid-run ({processed} processed)");

    let next = TestApp::spawn(s.db.options()).await;
    let watched: Vec<MigrationProgress> = next
        .client()
        .await
        .watch_migration(as_user(
            WatchMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: migration_id.clone(),
                after_sequence: 0,
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .map(|event| event.unwrap().into_progress())
        .collect()
        .await;
    let last = watched.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(last.transactions_processed, 400);

    let (originals, reversals, reposts) =
        fixtures::migrated_copies(&s.pool, s.org, &migration_id).await;
    assert_eq!(
        (originals, reversals, reposts),
        (400, 400, 400),
        "exactly once across the restart"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    next.stop().await;
}

#[tokio::test]
async fn pause_and_resume_take_effect_between_batches() {
    let s = seeded(300).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let (mut events, id) = start_in_small_batches(&s, &mut client).await;
    let (org, run) = control(s.org, &id);

    let paused = client
        .pause_migration(as_user(
            PauseMigrationRequest {
                organization_id: org.clone(),
                migration_id: run.clone(),
                request_id: "p1".into(),
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(paused.state(), MigrationState::Paused);
    let at_pause = until_state(&mut events, MigrationState::Paused).await;
    assert!(at_pause.transactions_processed < 300, "paused mid-run");

    let resumed = client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: org.clone(),
                migration_id: run.clone(),
                request_id: "r1".into(),
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(resumed.state(), MigrationState::Running);
    let done = until_state(&mut events, MigrationState::Succeeded).await;
    assert_eq!(done.transactions_processed, 300);
    assert!(done.sequence > at_pause.sequence);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (300, 300, 300)
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);

    let finished = client
        .pause_migration(as_user(
            PauseMigrationRequest {
                organization_id: org.clone(),
                migration_id: run,
                request_id: "p2".into(),
            },
            s.owner,
        ))
        .await
        .expect_err("finished");
    assert_eq!(finished.code(), Code::FailedPrecondition);
    let unknown = client
        .cancel_migration(as_user(
            CancelMigrationRequest {
                organization_id: org,
                migration_id: Uuid::new_v4().to_string(),
                request_id: "c1".into(),
            },
            s.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "MIGRATION_NOT_FOUND");
    let resource = tonic_types::StatusExt::get_error_details(&unknown)
        .resource_info()
        .cloned();
    assert_eq!(resource.unwrap().owner, s.org.to_string());
    s.app.stop().await;
}

#[tokio::test]
async fn cancel_stops_after_the_batch_in_flight_and_keeps_what_was_migrated() {
    let s = seeded(300).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let (events, id) = start_in_small_batches(&s, &mut client).await;
    let (org, run) = control(s.org, &id);
    let cancelled = client
        .cancel_migration(as_user(
            CancelMigrationRequest {
                organization_id: org,
                migration_id: run,
                request_id: "c1".into(),
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(cancelled.state(), MigrationState::Cancelled);
    let last = collect(events).await.pop().unwrap();
    assert_eq!(
        last.state(),
        MigrationState::Cancelled,
        "the stream ends with the terminal state"
    );

    let (reversed, reversals, reposts) = fixtures::migrated_copies(&s.pool, s.org, &id).await;
    assert!(reversed < 300, "stopped early ({reversed})");
    assert_eq!(
        (reversals, reposts),
        (reversed, reversed),
        "what was migrated stays, whole"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);

    // No active run is left: a new run migrates the rest.
    let rest = started(&mut client, start(s.org), s.owner).await;
    let last = rest.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded);
    assert_eq!(last.transactions_processed, 300 - reversed);
    s.app.stop().await;
}
