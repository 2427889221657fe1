//! The pace of a run: UpdateMigration mid-run, a rate limit that holds, and
//! backing off (smaller, later) when batches wait on the business's locks.
use hera_migrate::proto::*;
use tokio_stream::StreamExt;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    as_user, fixtures,
    runs::{
        Client, batches, collect, get, seeded, seeded_with, start, start_in_small_batches,
        trial_balance, until_state,
    },
};

fn update(org: Uuid, id: &str) -> UpdateMigrationRequest {
    UpdateMigrationRequest {
        organization_id: org.to_string(),
        migration_id: id.to_owned(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

async fn refused(
    client: &mut Client,
    owner: Uuid,
    request: UpdateMigrationRequest,
) -> tonic::Status {
    client
        .update_migration(as_user(request, owner))
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn update_changes_the_batch_size_from_the_next_batch_and_checks_its_input() {
    let s = seeded(300).await;
    let before = trial_balance(&s.pool, s.org).await;
    let mut client = s.app.client().await;
    let (mut events, id) = start_in_small_batches(&s, &mut client).await;

    for (bad, field) in [
        (
            UpdateMigrationRequest {
                batch_size: Some(5001),
                ..update(s.org, &id)
            },
            "batch_size",
        ),
        (
            UpdateMigrationRequest {
                max_transactions_per_second: Some(-3.0),
                ..update(s.org, &id)
            },
            "max_transactions_per_second",
        ),
        (
            UpdateMigrationRequest {
                batch_delay_ms: Some(3_600_001),
                ..update(s.org, &id)
            },
            "batch_delay_ms",
        ),
        (update(s.org, &id), "batch_size: nothing to change"),
    ] {
        let status = refused(&mut client, s.owner, bad).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let unknown = refused(
        &mut client,
        s.owner,
        UpdateMigrationRequest {
            batch_size: Some(10),
            ..update(s.org, &Uuid::new_v4().to_string())
        },
    )
    .await;
    assert_eq!(unknown.code(), Code::NotFound);

    let updated = client
        .update_migration(as_user(
            UpdateMigrationRequest {
                batch_size: Some(50),
                ..update(s.org, &id)
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(updated.parameters.unwrap().batch_size, 50);
    let done = until_state(&mut events, MigrationState::Succeeded).await;
    assert_eq!(done.transactions_processed, 300);

    let sizes: Vec<i64> = batches(&s.pool, &id)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let first_large = sizes.iter().position(|&n| n == 50).expect("batches of 50");
    assert!(first_large > 0, "it began with batches of 5: {sizes:?}");
    assert!(
        sizes[..first_large].iter().all(|&n| n == 5)
            && sizes[first_large..].iter().all(|&n| n <= 50),
        "5 until the update, then 50: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<i64>(), 300);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &id).await,
        (300, 300, 300)
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);

    let finished = refused(
        &mut client,
        s.owner,
        UpdateMigrationRequest {
            batch_size: Some(10),
            ..update(s.org, &id)
        },
    )
    .await;
    assert_eq!(finished.code(), Code::FailedPrecondition);
    s.app.stop().await;
}

/// An operator's rate limit is pacing, not trouble: the run stays HEALTHY
/// and says why it goes no faster (the peers alert on a deliberate setting).
#[tokio::test]
async fn a_rate_limit_holds_and_shows_as_the_operators_pacing_while_healthy() {
    let s = seeded(100).await;
    let mut client = s.app.client().await;
    let limited = StartMigrationRequest {
        batch_size: 10,
        max_transactions_per_second: Some(100.0),
        ..start(s.org)
    };
    let started = std::time::Instant::now();
    let events: Vec<_> = client
        .start_migration(as_user(limited, s.owner))
        .await
        .unwrap()
        .into_inner()
        .map(|event| event.unwrap().into_progress())
        .collect()
        .await;
    for event in &events {
        let rate = event
            .performance_metrics
            .as_ref()
            .unwrap()
            .transactions_per_second;
        assert!(rate <= 100.0 + 1e-6, "never above the limit: {event:?}");
        assert_eq!(event.health_status(), HealthStatus::Healthy, "{event:?}");
    }
    let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds[0], MigrationEventKind::Started, "{kinds:?}");
    assert!(
        kinds.contains(&MigrationEventKind::ThrottleStarted),
        "{kinds:?}"
    );
    // The latest held-back batch (the rate, and the ETA, come from two batches on).
    let paced = events
        .iter()
        .rev()
        .find(|e| e.kind() == MigrationEventKind::Batch && e.pacing.as_ref().unwrap().throttled)
        .expect("a batch held back by the limit");
    let pacing = paced.pacing.as_ref().unwrap();
    assert_eq!(
        pacing.reason(),
        ThrottleReason::OperatorRateLimit,
        "{paced:?}"
    );
    assert!(pacing.operator_chosen, "{paced:?}");
    assert!(
        pacing.detail.contains("100 transactions/s"),
        "{}",
        pacing.detail
    );
    assert!(
        paced.estimated_completion.is_some(),
        "an ETA while throttled: {paced:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last.state(), last.kind(), last.transactions_processed),
        (MigrationState::Succeeded, MigrationEventKind::Ended, 100)
    );
    assert!(
        last.pacing.as_ref().unwrap().throttled_ms > 0,
        "time held back: {last:?}"
    );
    // Ten batches of ten at 100/s: each of the first nine waits out its 100 ms.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "the limit held: {:?}",
        started.elapsed()
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_batch_that_waits_on_locks_backs_off_smaller_as_a_warning_and_then_finishes() {
    let s = seeded_with(60, |settings| {
        settings.engine.batch_lock_timeout_ms = 50;
        settings.engine.batch_lock_retries = 1000;
    })
    .await;
    let before = trial_balance(&s.pool, s.org).await;
    // The business holds locks on every transaction of the organization.
    let business = crate::support::sql::lock_every_transaction(&s.pool, s.org).await;

    let mut client = s.app.client().await;
    let mut events = client
        .start_migration(as_user(
            StartMigrationRequest {
                batch_size: 40,
                ..start(s.org)
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut warnings = Vec::new();
    while warnings.len() < 3 {
        let event = crate::support::runs::next(&mut events).await;
        assert_eq!(event.state(), MigrationState::Running, "{event:?}");
        if event.health_status() == HealthStatus::Warning {
            warnings.push(event.message);
        }
    }
    assert!(warnings[0].contains("row locks"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("retrying with 20 transactions")
            && warnings[1].contains("retrying with 10 transactions"),
        "each retry halves the batch: {warnings:?}"
    );

    business.rollback().await.unwrap(); // the business lets go
    let last = collect(events).await.pop().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(last.health_status(), HealthStatus::Healthy);
    assert_eq!(last.transactions_processed, 60);
    let run = get(&mut client, s.org, s.owner, &last.migration_id).await;
    assert_eq!(run.state(), MigrationState::Succeeded);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &last.migration_id).await,
        (60, 60, 60),
        "exactly once through the retries"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    s.app.stop().await;
}

/// The time held back is what the run waited, not what it planned to: a
/// rate limit lifted mid-wait counts only the part waited.
#[tokio::test]
async fn time_held_back_counts_the_wait_that_happened_not_the_one_planned() {
    let s = seeded(100).await;
    let mut client = s.app.client().await;
    // Five transactions at half a transaction a second: each batch plans a
    // ten-second wait, and its event counts it.
    let (mut events, id) =
        crate::support::runs::start_paced_until(&mut client, (s.org, s.owner), 0.5, 5).await;
    let lifted = UpdateMigrationRequest {
        max_transactions_per_second: Some(0.0),
        ..update(s.org, &id)
    };
    client
        .update_migration(as_user(lifted, s.owner))
        .await
        .unwrap();
    let next_batch = loop {
        let event = crate::support::runs::next(&mut events).await;
        if event.kind() == MigrationEventKind::Batch {
            break event;
        }
    };
    let held = next_batch.pacing.as_ref().unwrap().throttled_ms;
    assert!(held < 5_000, "only the part waited counts: {next_batch:?}");
    let last = until_state(&mut events, MigrationState::Succeeded).await;
    assert!(
        last.pacing.as_ref().unwrap().throttled_ms < 5_000,
        "{last:?}"
    );
    s.app.stop().await;
}
