//! A run outlives whoever watches it and whichever server executes it: callers
//! that go away, a second replica on the same database, a stopped server, and
//! a server killed with SIGKILL.
use std::time::Duration;

use hera_migrate::{config::OnInterrupted, proto::*};
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestApp,
    app::test_settings,
    as_user, fixtures,
    process::{client_of, server_on},
    runs::{
        Client, collect, installed, seeded, start, start_in_small_batches, start_paced_until,
        trial_balance, until_state, watch,
    },
};

async fn watch_on(
    client: &mut Client,
    org: Uuid,
    owner: Uuid,
    id: &str,
) -> tonic::Streaming<WatchMigrationResponse> {
    client
        .watch_migration(as_user(watch(org, id), owner))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_caller_that_goes_away_leaves_the_run_going_and_a_watcher_sees_it_end() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;
    let (events, id) = start_in_small_batches(&s, &mut client).await;
    drop(events);
    drop(client); // the connection goes too

    let mut watcher = s.app.client().await;
    let watched = collect(watch_on(&mut watcher, s.org, s.owner, &id).await).await;
    let last = watched.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(last.transactions_processed, 200);
    assert!(watched.len() > 1, "it watched the run go on: {watched:?}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_second_server_follows_a_run_it_does_not_execute_and_takes_it_over_when_the_first_stops()
{
    let s = seeded(400).await;
    let before = trial_balance(&s.pool, s.org).await;
    let second = TestApp::spawn(s.db.options()).await;
    let mut first_client = s.app.client().await;
    let (mut events, id) = start_in_small_batches(&s, &mut first_client).await;
    crate::support::runs::next(&mut events).await;

    let mut client = second.client().await;
    let aborted = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .expect_err("one active run per organization, across servers");
    assert_eq!(aborted.code(), Code::Aborted);
    assert!(aborted.message().contains(&id), "{}", aborted.message());
    let mut followed = watch_on(&mut client, s.org, s.owner, &id).await;
    let seen = crate::support::runs::next(&mut followed).await;
    assert_eq!(seen.state(), MigrationState::Running);

    drop(events);
    s.app.stop().await; // the first server goes; its run stays RUNNING

    let rest: Vec<MigrationProgress> = collect(followed).await;
    let last = rest.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(
        (last.transactions_processed, last.progress_percentage),
        (400, 100.0)
    );
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (400, 400, 400),
        "exactly once across the two servers"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    second.stop().await;
}

#[tokio::test]
async fn a_server_configured_to_pause_interrupted_runs_leaves_them_paused_with_the_reason() {
    let s = seeded(300).await;
    let mut settings = test_settings(s.db.options());
    settings.engine.on_interrupted = OnInterrupted::Pause;
    let second = TestApp::spawn_with(settings).await;
    let mut first_client = s.app.client().await;
    let (mut events, id) = start_in_small_batches(&s, &mut first_client).await;
    crate::support::runs::next(&mut events).await;
    drop(events);
    s.app.stop().await;

    let mut client = second.client().await;
    let mut watched = watch_on(&mut client, s.org, s.owner, &id).await;
    let paused = until_state(&mut watched, MigrationState::Paused).await;
    assert!(
        paused.message.contains("server executing it stopped"),
        "{}",
        paused.message
    );
    assert!(paused.transactions_processed < 300);

    client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.clone(),
                request_id: "resume-after-interruption".into(),
            },
            s.owner,
        ))
        .await
        .unwrap();
    let done = until_state(&mut watched, MigrationState::Succeeded).await;
    assert_eq!(done.transactions_processed, 300);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (300, 300, 300)
    );
    second.stop().await;
}

#[tokio::test]
async fn a_server_killed_mid_run_is_resumed_by_the_next_with_the_result_of_an_uninterrupted_run() {
    let (db, pool, org, owner) = installed(400).await;
    let before = trial_balance(&pool, org).await;

    let mut first = server_on(&db);
    let mut client = client_of(&first).await;
    let mut events = client
        .start_migration(as_user(
            StartMigrationRequest {
                batch_size: 5,
                ..start(org)
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let id = loop {
        let event = crate::support::runs::next(&mut events).await;
        if event.transactions_processed >= 50 {
            break event.migration_id;
        }
    };
    first.signal(libc::SIGKILL);
    first.exit_within(Duration::from_secs(10)).await;
    let (state, processed): (String, i64) = sqlx::query_as(
        "SELECT metadata ->> 'state', (metadata #>> '{counters,processed}')::bigint
           FROM universal_transactions WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "RUNNING");
    assert!(processed < 400, "killed mid-run ({processed} processed)");

    let next = server_on(&db);
    let mut client = client_of(&next).await;
    let watched = collect(watch_on(&mut client, org, owner, &id).await).await;
    let last = watched.last().unwrap();
    assert_eq!(
        last.state(),
        MigrationState::Succeeded,
        "{last:?}\n{}",
        next.logs()
    );
    assert_eq!(
        (last.transactions_processed, last.progress_percentage),
        (400, 100.0)
    );
    assert_eq!(
        fixtures::migrated_copies(&pool, org, &id).await,
        (400, 400, 400),
        "no transaction lost or migrated twice"
    );
    assert_eq!(trial_balance(&pool, org).await, before);
}

/// Two replicas; the executing one is killed. The other takes the run over
/// within its lease check interval (200 ms here, plus the time to notice),
/// and the audit trail shows the two never wrote batches at once: every
/// batch's audit row before the takeover is the killed server's, every one
/// after it the survivor's, batch numbers strictly increasing in time.
#[tokio::test]
async fn a_killed_replica_is_taken_over_within_the_lease_interval_and_the_two_never_overlap() {
    let (db, pool, org, owner) = installed(400).await;
    let before = trial_balance(&pool, org).await;
    let mut first = server_on(&db);
    let second = server_on(&db);
    let mut client = client_of(&first).await;
    let (_events, id) = start_paced_until(&mut client, (org, owner), 200.0, 50).await;
    let mut survivor = client_of(&second).await;
    let followed = watch_on(&mut survivor, org, owner, &id).await;
    first.signal(libc::SIGKILL);
    let killed_at: chrono::DateTime<chrono::Utc> = chrono::Utc::now();
    first.exit_within(Duration::from_secs(10)).await;

    let rest = collect(followed).await;
    assert_eq!(rest.last().unwrap().state(), MigrationState::Succeeded);
    let (taken_at,): (chrono::DateTime<chrono::Utc>,) = sqlx::query_as(
        "SELECT (line_data ->> 'emitted_at')::timestamptz FROM universal_transaction_lines
          WHERE transaction_id = $1::uuid AND line_data ->> 'kind' = 'TAKEN_OVER'",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let took = (taken_at - killed_at).to_std().unwrap_or_default();
    assert!(
        took < Duration::from_secs(2),
        "taken over {took:?} after the kill (lease check every 200 ms)"
    );
    let audit: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT (metadata ->> 'batch_number')::bigint, created_at FROM universal_transactions
          WHERE transaction_type = 'MIGRATION_OPERATION' AND metadata ->> 'migration_id' = $1
          ORDER BY created_at, (metadata ->> 'batch_number')::bigint",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let numbers: Vec<i64> = audit.iter().map(|(n, _)| *n).collect();
    let expected: Vec<i64> = (1..=numbers.len() as i64).collect();
    assert_eq!(numbers, expected, "one audit row per batch, in time order");
    let split = audit.iter().position(|(_, at)| *at > taken_at).unwrap();
    assert!(
        audit[..split].iter().all(|(_, at)| *at <= killed_at),
        "no batch of the killed server began after it died"
    );
    assert!(split < audit.len(), "the survivor wrote the rest");
    assert_eq!(
        fixtures::migrated_copies(&pool, org, &id).await,
        (400, 400, 400)
    );
    assert_eq!(trial_balance(&pool, org).await, before);
}
