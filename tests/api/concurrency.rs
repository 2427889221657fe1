//! Many callers at once on one organization: however StartMigration calls
//! race, the organization gets one run, each candidate is migrated once, and
//! every call that loses the race is told why.
use hera_migrate::proto::*;
use tokio::task::JoinSet;
use tonic::Code;

use crate::support::{
    as_user,
    fixtures::{self},
    runs::{collect, seeded, seeded_with, start, until_state},
};

/// Callers racing each other.
const CALLERS: usize = 20;

/// A run slow enough (paced) that every racing call arrives while it is
/// still active.
fn paced_start(org: uuid::Uuid, request_id: String) -> StartMigrationRequest {
    StartMigrationRequest {
        request_id,
        max_transactions_per_second: Some(100.0),
        ..start(org)
    }
}

/// Each caller's outcome: the run it streamed to its end, or its status.
type Outcome = Result<Vec<MigrationProgress>, tonic::Status>;

async fn race(
    app: &crate::support::TestApp,
    owner: uuid::Uuid,
    requests: Vec<StartMigrationRequest>,
) -> Vec<Outcome> {
    let mut calls = JoinSet::new();
    for request in requests {
        let mut client = app.client().await;
        calls.spawn(async move {
            let stream = client.start_migration(as_user(request, owner)).await?;
            Ok(collect(stream.into_inner()).await)
        });
    }
    let mut outcomes = Vec::with_capacity(CALLERS);
    while let Some(outcome) = calls.join_next().await {
        outcomes.push(outcome.expect("a caller"));
    }
    outcomes
}

async fn runs_of(pool: &sqlx::PgPool, org: uuid::Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN'",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn twenty_simultaneous_starts_give_one_run_and_the_rest_are_aborted_with_its_id() {
    let s = seeded(200).await;
    let requests = (0..CALLERS)
        .map(|i| paced_start(s.org, format!("racer-{i}")))
        .collect();
    let outcomes = race(&s.app, s.owner, requests).await;

    let (won, lost): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    assert_eq!(won.len(), 1, "exactly one caller starts the run");
    let events = won.into_iter().next().unwrap().unwrap();
    let last = events.last().expect("events");
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    for status in lost.into_iter().map(Result::unwrap_err) {
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert!(
            status.message().contains(&last.migration_id),
            "the refusal names the active run: {}",
            status.message()
        );
    }
    assert_eq!(runs_of(&s.pool, s.org).await, 1, "one run recorded");
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &last.migration_id).await,
        (200, 200, 200),
        "every candidate reversed and reposted once"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn twenty_simultaneous_starts_with_one_request_id_all_follow_the_same_run() {
    let s = seeded(120).await;
    let requests = (0..CALLERS)
        .map(|_| paced_start(s.org, "nightly-race".into()))
        .collect();
    let outcomes = race(&s.app, s.owner, requests).await;

    let runs: Vec<String> = outcomes
        .into_iter()
        .map(|outcome| {
            let events = outcome.expect("a retried request follows its run");
            let last = events.last().expect("events").clone();
            assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
            last.migration_id
        })
        .collect();
    assert!(
        runs.iter().all(|id| *id == runs[0]),
        "one run for one request id: {runs:?}"
    );
    assert_eq!(runs_of(&s.pool, s.org).await, 1, "one run recorded");
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &runs[0]).await,
        (120, 120, 120)
    );
    s.app.stop().await;
}

#[tokio::test]
async fn ten_organizations_started_at_once_each_migrate_exactly_once() {
    let s = seeded(10).await;
    let fleet = fixtures::seed_2024(&s.pool, 10, 80, 11).await;
    let mut calls = JoinSet::new();
    for organization in &fleet.organizations {
        let (org, owner) = (organization.id, organization.users[0].id);
        let mut client = s.app.client().await;
        calls.spawn(async move {
            let stream = client
                .start_migration(as_user(start(org), owner))
                .await
                .expect("each organization starts its own run");
            (org, collect(stream.into_inner()).await)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (org, events) = joined.expect("a caller");
        let last = events.last().expect("events");
        assert_eq!(last.state(), MigrationState::Succeeded, "{org}: {last:?}");
        assert_eq!(
            fixtures::migrated_copies(&s.pool, org, &last.migration_id).await,
            (80, 80, 80),
            "{org}"
        );
        assert_eq!(runs_of(&s.pool, org).await, 1, "{org}");
    }
    s.app.stop().await;
}

#[tokio::test]
async fn a_pool_of_two_with_fifty_watchers_still_serves_pause_and_resume() {
    const WATCHERS: usize = 50;
    let s = seeded_with(300, |settings| settings.database.pool_size = 2).await;
    let mut client = s.app.client().await;
    let mut stream = client
        .start_migration(as_user(paced_start(s.org, "watched".into()), s.owner))
        .await
        .expect("start")
        .into_inner();
    let id = until_state(&mut stream, MigrationState::Running)
        .await
        .migration_id;

    let mut watchers = JoinSet::new();
    for _ in 0..WATCHERS {
        let mut client = s.app.client().await;
        let request = WatchMigrationRequest {
            organization_id: s.org.to_string(),
            migration_id: id.clone(),
            after_sequence: 0,
        };
        let owner = s.owner;
        watchers.spawn(async move {
            let stream = client.watch_migration(as_user(request, owner)).await?;
            Ok::<_, tonic::Status>(collect(stream.into_inner()).await)
        });
    }
    client
        .pause_migration(as_user(
            PauseMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.clone(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .expect("pause is served beside fifty watchers");
    client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: s.org.to_string(),
                migration_id: id.clone(),
                request_id: String::new(),
            },
            s.owner,
        ))
        .await
        .expect("resume is served beside fifty watchers");

    let mut ends = 0;
    while let Some(joined) = watchers.join_next().await {
        let events = joined.expect("a watcher").expect("a watch stream");
        assert!(
            events.windows(2).all(|w| w[0].sequence < w[1].sequence),
            "each watcher gets the events in sequence"
        );
        assert!(events.iter().any(|e| e.state() == MigrationState::Paused));
        assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
        ends += 1;
    }
    assert_eq!(ends, WATCHERS);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (300, 300, 300)
    );
    s.app.stop().await;
}
