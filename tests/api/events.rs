//! A run's durable event history: every state change and batch is an event,
//! replayed whole and identical by the stream, WatchMigration, GetMigration
//! and ListMigrations, on any server and after a kill -9; logged once per
//! event; dry runs and forced rollbacks say what they are.
use std::time::Duration;

use hera_migrate::proto::*;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{
    app::as_user,
    process::{client_of, server_on},
    runs::{self, Client, collect, get, installed, start, watch, watched},
    wait,
};

fn kinds(events: &[MigrationProgress]) -> Vec<MigrationEventKind> {
    events.iter().map(|e| e.kind()).collect()
}

/// Whether `wanted` appear in `kinds` in this order (others between them).
fn in_order(kinds: &[MigrationEventKind], wanted: &[MigrationEventKind]) -> bool {
    let mut rest = kinds.iter();
    wanted.iter().all(|w| rest.any(|k| k == w))
}

async fn update(
    client: &mut Client,
    org: Uuid,
    owner: Uuid,
    id: &str,
    change: UpdateMigrationRequest,
) {
    let request = UpdateMigrationRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
        ..change
    };
    client
        .update_migration(as_user(request, owner))
        .await
        .unwrap();
}

async fn until_batches(client: &mut Client, org: Uuid, owner: Uuid, id: &str, batches: i64) {
    wait::until("batches", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let run = get(&mut client, org, owner, id).await;
            (run.progress.unwrap().batch_number >= batches).then_some(())
        }
    })
    .await;
}

/// Starts a run of batches of 10 at 40 transactions a second (so that
/// controls and kills land mid-run): its stream.
async fn start_slow(
    client: &mut Client,
    org: Uuid,
    owner: Uuid,
) -> tonic::Streaming<StartMigrationResponse> {
    let slow = StartMigrationRequest {
        batch_size: 10,
        max_transactions_per_second: Some(40.0),
        ..start(org)
    };
    client
        .start_migration(as_user(slow, owner))
        .await
        .unwrap()
        .into_inner()
}

/// Business rows the run's committed batches wrote operations for.
async fn committed_batches(pool: &PgPool, id: &str) -> i64 {
    runs::batches(pool, id)
        .await
        .iter()
        .filter(|(_, transactions)| *transactions > 0)
        .count() as i64
}

#[tokio::test]
async fn pause_update_and_resume_are_events_replayed_whole_and_identical_after_a_kill() {
    let (db, pool, org, owner) = installed(120).await;
    let first = server_on(&db);
    let mut client = client_of(&first).await;
    let mut stream = start_slow(&mut client, org, owner).await;
    let first_event = crate::support::runs::next(&mut stream).await;
    let id = first_event.migration_id.clone();
    let streamed = tokio::spawn(async move {
        let mut events = vec![first_event];
        events.extend(collect(stream).await);
        events
    });

    until_batches(&mut client, org, owner, &id, 1).await;
    let (o, m) = runs::control(org, &id);
    client
        .pause_migration(as_user(
            PauseMigrationRequest {
                organization_id: o.clone(),
                migration_id: m.clone(),
                ..Default::default()
            },
            owner,
        ))
        .await
        .unwrap();
    let resize = UpdateMigrationRequest {
        batch_size: Some(20),
        ..Default::default()
    };
    update(&mut client, org, owner, &id, resize).await;
    client
        .resume_migration(as_user(
            ResumeMigrationRequest {
                organization_id: o,
                migration_id: m,
                ..Default::default()
            },
            owner,
        ))
        .await
        .unwrap();
    let lift = UpdateMigrationRequest {
        max_transactions_per_second: Some(0.0),
        ..Default::default()
    };
    update(&mut client, org, owner, &id, lift).await;

    let streamed = streamed.await.unwrap();
    use MigrationEventKind as K;
    let kinds = kinds(&streamed);
    assert!(
        in_order(
            &kinds,
            &[
                K::Started,
                K::Batch,
                K::Paused,
                K::Updated,
                K::Resumed,
                K::Updated,
                K::Batch,
                K::Ended
            ]
        ),
        "{kinds:?}"
    );
    let sequences: Vec<u64> = streamed.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=streamed.len() as u64).collect::<Vec<_>>(),
        "every event, in order"
    );
    let resumed = streamed
        .iter()
        .position(|e| e.kind() == K::Resumed)
        .unwrap();
    let next_batch = streamed[resumed..]
        .iter()
        .find(|e| e.kind() == K::Batch)
        .unwrap();
    assert_eq!(
        next_batch.batch_transactions, 20,
        "the update took effect from the next batch"
    );
    let resized = streamed.iter().find(|e| e.kind() == K::Updated).unwrap();
    assert!(
        resized.message.contains("batch_size 10 -> 20"),
        "{}",
        resized.message
    );
    assert_eq!(resized.actor_id, owner.to_string());
    let last = streamed.last().unwrap();
    assert_eq!(
        (last.state(), last.progress_percentage),
        (MigrationState::Succeeded, 100.0)
    );
    for event in &streamed[..streamed.len() - 1] {
        assert!(
            event.progress_percentage < 100.0,
            "100 only at the end: {event:?}"
        );
        assert_eq!(event.health_status(), HealthStatus::Healthy, "{event:?}");
    }
    assert_eq!(
        streamed.iter().filter(|e| e.kind() == K::Batch).count() as i64,
        committed_batches(&pool, &id).await,
        "one event per committed batch"
    );

    // The same history from Watch, Get and List.
    assert_eq!(watched(&mut client, watch(org, &id), owner).await, streamed);
    assert_eq!(
        get(&mut client, org, owner, &id).await.progress.as_ref(),
        Some(last)
    );
    let listed = client
        .list_migrations(as_user(
            ListMigrationsRequest {
                organization_id: org.to_string(),
                ..Default::default()
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.migrations[0].progress.as_ref(), Some(last));

    // One log line per batch, naming the run.
    let logs = first.logs();
    let batch_lines = logs
        .lines()
        .filter(|line| line.contains(&id) && line.contains("committed:"))
        .count();
    assert_eq!(
        batch_lines,
        streamed.iter().filter(|e| e.kind() == K::Batch).count(),
        "{logs}"
    );

    // Killed and restarted: the history is still whole, from any sequence.
    let mut first = first;
    first.signal(libc::SIGKILL);
    first.exit_within(Duration::from_secs(10)).await;
    let next = server_on(&db);
    let mut client = client_of(&next).await;
    assert_eq!(watched(&mut client, watch(org, &id), owner).await, streamed);
    let tail = WatchMigrationRequest {
        after_sequence: last.sequence - 2,
        ..watch(org, &id)
    };
    assert_eq!(
        watched(&mut client, tail, owner).await,
        streamed[streamed.len() - 2..]
    );
    let past_the_end = WatchMigrationRequest {
        after_sequence: last.sequence + 5,
        ..watch(org, &id)
    };
    assert_eq!(
        watched(&mut client, past_the_end, owner).await,
        std::slice::from_ref(last),
        "its end"
    );
}

#[tokio::test]
async fn a_run_killed_mid_way_is_taken_over_with_its_history_whole() {
    let (db, pool, org, owner) = installed(120).await;
    let mut first = server_on(&db);
    let mut client = client_of(&first).await;
    let mut stream = start_slow(&mut client, org, owner).await;
    let id = crate::support::runs::next(&mut stream).await.migration_id;
    until_batches(&mut client, org, owner, &id, 2).await;
    first.signal(libc::SIGKILL);
    first.exit_within(Duration::from_secs(10)).await;

    let next = server_on(&db);
    let mut client = client_of(&next).await;
    let events = watched(&mut client, watch(org, &id), owner).await;
    let kinds = kinds(&events);
    use MigrationEventKind as K;
    assert!(
        in_order(
            &kinds,
            &[K::Started, K::Batch, K::TakenOver, K::Batch, K::Ended]
        ),
        "{kinds:?}"
    );
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.iter().filter(|e| e.kind() == K::Batch).count() as i64,
        committed_batches(&pool, &id).await,
        "exactly the batches that committed, none lost, none twice"
    );
    assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
}

#[tokio::test]
async fn a_forced_rollback_ignores_the_runs_rate_limit_and_runs_no_empty_batch() {
    let s = runs::seeded(200).await;
    let mut client = s.app.client().await;
    let slow = StartMigrationRequest {
        batch_size: 10,
        max_transactions_per_second: Some(20.0),
        ..start(s.org)
    };
    let mut stream = client
        .start_migration(as_user(slow, s.owner))
        .await
        .unwrap()
        .into_inner();
    let id = crate::support::runs::next(&mut stream).await.migration_id;
    until_batches(&mut client, s.org, s.owner, &id, 2).await;

    let forced = RollbackMigrationRequest {
        force: true,
        ..runs::rollback(s.org, &id, "emergency")
    };
    let events = runs::rolled_back(&mut client, forced, s.owner).await;
    use MigrationEventKind as K;
    let kinds = kinds(&events);
    assert_eq!(kinds[0], K::RollbackStarted, "{kinds:?}");
    assert!(
        events[0].message.contains("wrong mapping"),
        "the reason: {}",
        events[0].message
    );
    let lifted = events
        .iter()
        .find(|e| e.kind() == K::Updated)
        .expect("its own pace");
    assert!(
        lifted
            .message
            .contains("max_transactions_per_second 20.0 -> none"),
        "{}",
        lifted.message
    );
    let batches: Vec<_> = events.iter().filter(|e| e.kind() == K::Batch).collect();
    assert!(!batches.is_empty(), "{kinds:?}");
    for batch in &batches {
        assert!(batch.batch_transactions > 0, "no empty batch: {batch:?}");
        assert!(
            !batch.pacing.as_ref().unwrap().throttled,
            "no limit: {batch:?}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(
        (last.state(), last.kind()),
        (MigrationState::RolledBack, K::Ended)
    );
    let rollback_rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT (metadata ->> 'transactions')::bigint FROM universal_transactions
          WHERE transaction_type = 'MIGRATION_OPERATION' AND metadata ->> 'operation_type' = 'ROLLBACK'
            AND metadata ->> 'migration_id' = $1",
    )
    .bind(&id)
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(rollback_rows.len(), batches.len(), "{rollback_rows:?}");
    assert!(rollback_rows.iter().all(|(n,)| *n > 0), "{rollback_rows:?}");
    s.app.stop().await;
}

#[tokio::test]
async fn the_previews_prediction_is_what_the_run_does() {
    let s = runs::seeded(150).await;
    let mut client = s.app.client().await;
    let request = PreviewCandidatesRequest {
        closed_period_policy: ClosedPeriodPolicy::Skip.into(),
        ..runs::preview_2024(s.org)
    };
    let plan = client
        .preview_candidates(as_user(request, s.owner))
        .await
        .unwrap()
        .into_inner();
    let predicted = plan.prediction.unwrap();
    assert!(
        predicted.skipped_closed > 0,
        "the seed closes periods: {predicted:?}"
    );
    let events = runs::started(
        &mut client,
        StartMigrationRequest {
            closed_period_policy: ClosedPeriodPolicy::Skip.into(),
            expected_plan_fingerprint: plan.plan_fingerprint,
            ..start(s.org)
        },
        s.owner,
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.transactions_migrated,
            last.transactions_skipped_closed_period,
            last.transactions_skipped_unmapped,
            last.transactions_quarantined,
            last.transactions_processed,
        ),
        (
            predicted.migrated,
            predicted.skipped_closed,
            predicted.skipped_unmapped,
            predicted.quarantined,
            plan.total_candidates,
        ),
        "{last:?}"
    );
    assert!(
        events[0]
            .message
            .contains(&format!("predicted {} migrated", predicted.migrated)),
        "{}",
        events[0].message
    );
    s.app.stop().await;
}

/// A start that expects no fingerprint streams STARTED at once; its executor
/// checks the plan before the first write (PLANNED, recorded as a checked
/// start records it) and reads the trial balance beside the batches, so the
/// run ends with the snapshot its validation compares against.
#[tokio::test]
async fn an_unchecked_start_streams_first_and_plans_before_the_first_write() {
    let s = runs::seeded(120).await;
    let mut client = s.app.client().await;
    let events = runs::started(&mut client, start(s.org), s.owner).await;
    use MigrationEventKind as K;
    let kinds = kinds(&events);
    assert_eq!(&kinds[..2], &[K::Started, K::Planned], "{kinds:?}");
    assert!(
        in_order(&kinds, &[K::Planned, K::Batch, K::Ended]),
        "{kinds:?}"
    );
    assert!(
        events[0]
            .message
            .contains("the plan is checked before the first write"),
        "{}",
        events[0].message
    );
    let planned = &events[1];
    assert!(
        planned.message.starts_with("plan checked: ") && planned.message.contains("predicted"),
        "{}",
        planned.message
    );
    let id = &events[0].migration_id;
    let (total, fingerprint, snapshot): (i64, String, serde_json::Value) = sqlx::query_as(
        "SELECT (metadata ->> 'total_candidates')::bigint, metadata #>> '{parameters,plan_fingerprint}',
                metadata -> 'snapshot'
           FROM universal_transactions WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(total, events.last().unwrap().transactions_processed);
    assert!(!fingerprint.is_empty());
    assert!(snapshot.get("trial_balance").is_some(), "{snapshot}");
    assert!(
        snapshot.get("trial_balance_pending").is_none(),
        "{snapshot}"
    );
    let report = runs::validate(&mut client, s.org, s.owner, id).await;
    let trial_balance = report
        .checks
        .iter()
        .find(|c| c.name == "trial_balance")
        .expect("a trial_balance check");
    assert_eq!(
        trial_balance.result(),
        CheckResult::Pass,
        "{trial_balance:?}"
    );
    s.app.stop().await;
}

/// Many watchers of one live run, some joining mid-way: each gets every
/// event once, in sequence, identical to the history (live events come from
/// memory, the history fills what came before they joined).
#[tokio::test]
async fn many_watchers_each_get_every_event_once_in_sequence() {
    let s = runs::seeded(120).await;
    let mut client = s.app.client().await;
    let mut stream = start_slow(&mut client, s.org, s.owner).await;
    let id = crate::support::runs::next(&mut stream).await.migration_id;
    let mut watchers = Vec::new();
    for n in 0..24 {
        if n == 12 {
            until_batches(&mut client, s.org, s.owner, &id, 3).await;
        }
        let mut client = client.clone();
        let request = watch(s.org, &id);
        let owner = s.owner;
        watchers.push(tokio::spawn(async move {
            watched(&mut client, request, owner).await
        }));
    }
    let history = watched(&mut client, watch(s.org, &id), s.owner).await;
    let sequences: Vec<u64> = history.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=history.len() as u64).collect::<Vec<_>>());
    assert_eq!(history.last().unwrap().kind(), MigrationEventKind::Ended);
    for watcher in watchers {
        assert_eq!(
            watcher.await.unwrap(),
            history,
            "a watcher saw what the history holds"
        );
    }
    s.app.stop().await;
}

/// A code excluded by an explicit mapping is not a candidate, yet the batches
/// look at its transactions (and skip them as unmapped): the remaining count
/// includes them, so the percentage moves evenly and reaches 100 only at the end.
#[tokio::test]
async fn remaining_counts_the_transactions_a_run_skips_for_having_no_target() {
    let s = runs::seeded(150).await;
    let mut client = s.app.client().await;
    let preview = |mappings: Vec<SmartCodeMapping>| {
        as_user(
            PreviewCandidatesRequest {
                smart_code_mappings: mappings,
                closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
                ..runs::preview_2024(s.org)
            },
            s.owner,
        )
    };
    let plain = client.preview_candidates(preview(vec![])).await.unwrap();
    let excluded = SmartCodeMapping {
        source_smart_code: plain.into_inner().smart_code_breakdown[0]
            .source_smart_code
            .clone(),
        target_smart_code: String::new(),
    };
    let plan = client
        .preview_candidates(preview(vec![excluded.clone()]))
        .await
        .unwrap()
        .into_inner();
    let unmapped = plan.prediction.as_ref().unwrap().skipped_unmapped;
    assert!(unmapped > 0, "{plan:?}");
    let looked_at = plan.total_candidates + unmapped;

    let request = StartMigrationRequest {
        smart_code_mappings: vec![excluded],
        batch_size: 20,
        expected_plan_fingerprint: plan.plan_fingerprint,
        ..start(s.org)
    };
    let events = runs::started(&mut client, request, s.owner).await;
    for event in events
        .iter()
        .filter(|e| e.kind() == MigrationEventKind::Batch)
    {
        assert_eq!(
            event.transactions_processed + event.transactions_remaining,
            looked_at,
            "{event:?}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(
        (
            last.transactions_processed,
            last.transactions_skipped_unmapped
        ),
        (looked_at, unmapped)
    );
    s.app.stop().await;
}
