//! Batches sized to a time (target_batch_ms) instead of a count: they grow
//! at most 1.5x a batch, hold at the operator's bounds, cut hard when a
//! batch runs far over its target, and every event says why its size.
//! No test asserts how long a batch took: sizes follow from batches far
//! under or far over their target, whatever the machine's load.
use hera_migrate::proto::*;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    as_user,
    runs::{Client, batches, collect, get, seeded, start, until_state, updated},
};

fn sizing(event: &MigrationProgress) -> BatchSizing {
    event
        .pacing
        .as_ref()
        .and_then(|p| p.sizing.clone())
        .unwrap_or_else(|| panic!("event #{} reports no sizing", event.sequence))
}

fn batch_events(events: &[MigrationProgress]) -> Vec<&MigrationProgress> {
    events
        .iter()
        .filter(|e| e.kind() == MigrationEventKind::Batch)
        .collect()
}

async fn run_to_end(
    client: &mut Client,
    owner: Uuid,
    request: StartMigrationRequest,
) -> Vec<MigrationProgress> {
    let stream = client
        .start_migration(as_user(request, owner))
        .await
        .expect("started")
        .into_inner();
    collect(stream).await
}

/// Batches of 100 work far under 500 ms on any machine: each grows by
/// 1.5x until max_batch_size holds it, and the events say so.
#[tokio::test]
async fn a_target_grows_batches_at_most_one_and_a_half_times_up_to_the_operators_bound() {
    let s = seeded(1500).await;
    let mut client = s.app.client().await;
    let request = StartMigrationRequest {
        batch_size: 0,
        target_batch_ms: Some(30_000),
        max_batch_size: Some(300),
        ..start(s.org)
    };
    let events = run_to_end(&mut client, s.owner, request).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{}", last.message);

    let id = &last.migration_id;
    let sizes: Vec<i64> = batches(&s.pool, id)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(&sizes[..4], &[100, 150, 225, 300], "{sizes:?}");
    assert!(sizes[4..].iter().all(|&n| n <= 300), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), 1500);

    let reported: Vec<BatchSizing> = batch_events(&events).into_iter().map(sizing).collect();
    assert_eq!(
        reported[0].reason(),
        SizingReason::GrowthLimit,
        "{reported:?}"
    );
    assert_eq!(reported[0].batch_size, 150);
    assert_eq!(
        reported[2].reason(),
        SizingReason::MaxBatchSize,
        "{reported:?}"
    );
    assert_eq!(reported[2].batch_size, 300);
    assert!(
        reported
            .iter()
            .all(|r| r.target_batch_ms == 30_000 && r.work_ms > 0.0)
    );
    assert!(
        reported[2].detail.contains("max_batch_size") && reported[2].detail.contains("30000 ms"),
        "{}",
        reported[2].detail
    );
    let parameters = get(&mut client, s.org, s.owner, id)
        .await
        .parameters
        .unwrap();
    assert_eq!(
        (
            parameters.target_batch_ms,
            parameters.min_batch_size,
            parameters.max_batch_size
        ),
        (30_000, 10, 300)
    );
    s.app.stop().await;
}

/// A batch of 1,000 cannot work under 50 ms (5x a 10 ms target): the next
/// is cut to a tenth, and the event names the cut.
#[tokio::test]
async fn a_batch_far_over_its_target_cuts_the_next_to_a_tenth() {
    let s = seeded(1200).await;
    let mut client = s.app.client().await;
    let request = StartMigrationRequest {
        batch_size: 1000,
        target_batch_ms: Some(10),
        ..start(s.org)
    };
    let events = run_to_end(&mut client, s.owner, request).await;
    assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
    let first = sizing(batch_events(&events)[0]);
    assert_eq!(
        (first.reason(), first.batch_size),
        (SizingReason::OverTarget, 100),
        "{first:?}"
    );
    let sizes = batches(&s.pool, &events[0].migration_id).await;
    assert_eq!((sizes[0].1, sizes[1].1), (1000, 100), "{sizes:?}");
    s.app.stop().await;
}

/// A fixed batch_size is what it was: every batch that size, FIXED.
#[tokio::test]
async fn without_a_target_batches_keep_the_operators_size() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;
    let events = run_to_end(&mut client, s.owner, start(s.org)).await;
    let reported: Vec<BatchSizing> = batch_events(&events).into_iter().map(sizing).collect();
    assert!(
        reported.iter().all(|r| r.reason() == SizingReason::Fixed
            && r.batch_size == 40
            && r.target_batch_ms == 0),
        "{reported:?}"
    );
    let sizes = batches(&s.pool, &events[0].migration_id).await;
    // The last batch finds the end, empty.
    assert!(sizes.iter().all(|(_, n)| *n == 40 || *n == 0), "{sizes:?}");
    s.app.stop().await;
}

/// UpdateMigration sets a target and bounds on a running run: the next
/// batches follow them.
#[tokio::test]
async fn update_gives_a_running_run_a_target_and_bounds() {
    let s = seeded(600).await;
    let mut client = s.app.client().await;
    let paced = StartMigrationRequest {
        batch_size: 5,
        max_transactions_per_second: Some(200.0),
        ..start(s.org)
    };
    let mut events = client
        .start_migration(as_user(paced, s.owner))
        .await
        .unwrap()
        .into_inner();
    let id = until_state(&mut events, MigrationState::Running)
        .await
        .migration_id;
    let update = UpdateMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: id.clone(),
        target_batch_ms: Some(30_000),
        min_batch_size: Some(20),
        max_batch_size: Some(20),
        max_transactions_per_second: Some(0.0),
        ..Default::default()
    };
    let updated = updated(&mut client, s.owner, update).await;
    assert_eq!(updated.parameters.unwrap().target_batch_ms, 30_000);
    let rest = collect(events).await;
    assert_eq!(rest.last().unwrap().state(), MigrationState::Succeeded);
    let last_batch = sizing(batch_events(&rest).last().unwrap());
    assert_eq!(
        last_batch.reason(),
        SizingReason::MaxBatchSize,
        "{last_batch:?}"
    );
    let sizes: Vec<i64> = batches(&s.pool, &id)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let sized = sizes.iter().position(|&n| n == 20).expect("batches of 20");
    assert!(
        sizes[..sized].iter().all(|&n| n == 5) && sizes[sized..].iter().all(|&n| n <= 20),
        "{sizes:?}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn sizing_fields_out_of_range_are_refused_naming_the_field() {
    let s = seeded(10).await;
    let mut client = s.app.client().await;
    for (bad, field) in [
        (
            StartMigrationRequest {
                target_batch_ms: Some(5),
                ..start(s.org)
            },
            "target_batch_ms",
        ),
        (
            StartMigrationRequest {
                target_batch_ms: Some(500),
                min_batch_size: Some(400),
                max_batch_size: Some(300),
                ..start(s.org)
            },
            "min_batch_size",
        ),
        (
            StartMigrationRequest {
                max_batch_size: Some(5001),
                ..start(s.org)
            },
            "max_batch_size",
        ),
    ] {
        let status = client
            .start_migration(as_user(bad, s.owner))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    s.app.stop().await;
}
