//! A run's pace listens to PostgreSQL: a VACUUM of the six tables slows it,
//! a business probe made slow on purpose holds it, a signal that cannot be
//! read holds it (fail closed) until the operator disables it; each time
//! the events name the signal with its reading, and the run resumes its
//! pace by itself once the signal clears. The tests drive the real causes
//! (a real VACUUM, a real lock the probe waits on) and wait for events,
//! never for time.
use hera_migrate::proto::*;
use sqlx::PgPool;
use tonic::Code;

use crate::support::{
    as_user,
    runs::{Client, Started, collect, get, next, seeded, seeded_with, start, updated},
};

/// The probe the tests' servers time: it waits on an advisory lock the
/// test takes when it wants the business to feel slow.
const PROBE_LOCK: i64 = 7_317_001;

fn signal_of(event: &MigrationProgress) -> (ThrottleReason, PaceSignal) {
    let pacing = event.pacing.as_ref().expect("pacing");
    (pacing.reason(), pacing.signal())
}

/// Reads events until one is held or slowed by `signal`.
async fn until_signal(events: &mut Started, signal: PaceSignal) -> MigrationProgress {
    loop {
        let event = next(events).await;
        assert!(
            !matches!(
                event.state(),
                MigrationState::Succeeded | MigrationState::Failed
            ),
            "the run ended before {signal:?} showed: {}",
            event.message
        );
        if signal_of(&event) == (ThrottleReason::DatabaseSignal, signal) {
            return event;
        }
    }
}

/// Starts a run of small batches, slowed by a rate limit so that it lasts
/// while the test drives a signal.
async fn start_listening(
    client: &mut Client,
    s: &crate::support::runs::Seeded,
    signals: Vec<SignalSetting>,
) -> Started {
    let request = StartMigrationRequest {
        batch_size: 5,
        max_transactions_per_second: Some(100.0),
        signals,
        ..start(s.org)
    };
    client
        .start_migration(as_user(request, s.owner))
        .await
        .expect("started")
        .into_inner()
}

/// A VACUUM made slow by its cost delay, on its own connection (until
/// cancelled): its task, which answers how the VACUUM ended, and its pid.
async fn slow_vacuum(pool: &PgPool) -> (tokio::task::JoinHandle<String>, i32) {
    let mut vacuum = pool.acquire().await.unwrap().detach();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut vacuum)
        .await
        .unwrap();
    // One statement each: VACUUM refuses the implicit transaction of a
    // multi-statement query.
    for set in ["SET vacuum_cost_delay = 100", "SET vacuum_cost_limit = 1"] {
        sqlx::raw_sql(set).execute(&mut vacuum).await.unwrap();
    }
    let task = tokio::spawn(async move {
        match sqlx::raw_sql("VACUUM (DISABLE_PAGE_SKIPPING) universal_transactions")
            .execute(&mut vacuum)
            .await
        {
            Ok(_) => "finished".to_owned(),
            Err(error) => error.to_string(),
        }
    });
    (task, pid)
}

#[tokio::test]
async fn a_vacuum_of_the_transactions_table_slows_the_run_which_resumes_its_pace_after() {
    let s = seeded(400).await;
    let mut client = s.app.client().await;
    let mut events = start_listening(&mut client, &s, Vec::new()).await;
    next(&mut events).await;
    let (vacuum, pid) = slow_vacuum(&s.pool).await;

    let slowed = until_signal(&mut events, PaceSignal::Autovacuum).await;
    let pacing = slowed.pacing.clone().unwrap();
    assert!(
        pacing.detail.contains("slowed down") && pacing.detail.contains("universal_transactions ("),
        "{}",
        pacing.detail
    );
    let reading = pacing
        .signals
        .iter()
        .find(|r| r.signal() == PaceSignal::Autovacuum)
        .expect("the autovacuum reading");
    assert_eq!(
        (reading.state(), reading.value),
        (SignalState::Tripped, 1.0)
    );
    // GetMigration shows every signal's latest reading.
    let run = get(&mut client, s.org, s.owner, &slowed.migration_id).await;
    let shown = run.progress.unwrap().pacing.unwrap().signals;
    assert_eq!(shown.len(), 4, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|r| r.signal() == PaceSignal::BusinessProbe && r.state() == SignalState::Disabled)
    );

    sqlx::query("SELECT pg_cancel_backend($1)")
        .bind(pid)
        .execute(&s.pool)
        .await
        .unwrap();
    let ended = vacuum.await.unwrap();
    assert!(ended.contains("canceling statement"), "{ended}");
    let rest = collect(events).await;
    assert_eq!(rest.last().unwrap().state(), MigrationState::Succeeded);
    assert!(
        rest.iter().any(|e| e.kind() == MigrationEventKind::Batch
            && signal_of(e).0 != ThrottleReason::DatabaseSignal),
        "batches went on at their own pace once the VACUUM ended"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_slow_business_probe_holds_the_run_until_the_business_is_fast_again() {
    let s = seeded_with(300, |settings| {
        settings.engine.business_probe_sql =
            Some(format!("SELECT pg_advisory_xact_lock_shared({PROBE_LOCK})"));
    })
    .await;
    let mut client = s.app.client().await;
    let probe = SignalSetting {
        signal: PaceSignal::BusinessProbe.into(),
        action: SignalAction::Hold.into(),
        hold_ms: Some(100),
        ..Default::default()
    };
    let mut events = start_listening(&mut client, &s, vec![probe]).await;
    // The baseline is taken before the first batch: idle, unlocked.
    until_batch(&mut events).await;
    let mut business = s.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PROBE_LOCK)
        .execute(&mut *business)
        .await
        .unwrap();

    let held = until_signal(&mut events, PaceSignal::BusinessProbe).await;
    assert_eq!(
        held.kind(),
        MigrationEventKind::ThrottleStarted,
        "{}",
        held.message
    );
    assert!(held.message.contains("business_probe"), "{}", held.message);
    let run = get(&mut client, s.org, s.owner, &held.migration_id).await;
    assert_eq!(run.state(), MigrationState::Running);

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PROBE_LOCK)
        .execute(&mut *business)
        .await
        .unwrap();
    let rest = collect(events).await;
    assert_eq!(rest.last().unwrap().state(), MigrationState::Succeeded);
    assert!(
        rest.iter().any(|e| e.kind() == MigrationEventKind::Batch
            && signal_of(e).0 != ThrottleReason::DatabaseSignal),
        "the hold ended by itself"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_signal_that_cannot_be_read_holds_the_run_until_the_operator_disables_it() {
    let s = seeded_with(50, |settings| {
        settings.engine.business_probe_sql = Some("SELECT 1 / 0".into());
    })
    .await;
    let mut client = s.app.client().await;
    let probe = SignalSetting {
        signal: PaceSignal::BusinessProbe.into(),
        hold_ms: Some(100),
        ..Default::default()
    };
    let mut events = start_listening(&mut client, &s, vec![probe]).await;
    let held = until_signal(&mut events, PaceSignal::BusinessProbe).await;
    assert_eq!(
        held.health_status(),
        HealthStatus::Warning,
        "{}",
        held.message
    );
    assert!(
        held.message.contains("cannot be read") && held.message.contains("division by zero"),
        "{}",
        held.message
    );
    let update = UpdateMigrationRequest {
        organization_id: s.org.to_string(),
        migration_id: held.migration_id.clone(),
        signals: vec![SignalSetting {
            signal: PaceSignal::BusinessProbe.into(),
            disabled: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let updated = updated(&mut client, s.owner, update).await;
    let probe = updated.parameters.unwrap().signals;
    assert!(
        probe
            .iter()
            .any(|p| p.signal() == PaceSignal::BusinessProbe && p.disabled)
    );
    let rest = collect(events).await;
    assert_eq!(rest.last().unwrap().state(), MigrationState::Succeeded);
    s.app.stop().await;
}

#[tokio::test]
async fn signal_settings_are_checked_naming_the_field() {
    let s = seeded(10).await;
    let mut client = s.app.client().await;
    for (signals, field) in [
        (vec![SignalSetting::default()], "signals[0].signal"),
        (
            vec![SignalSetting {
                signal: PaceSignal::ReplicaLag.into(),
                threshold: Some(0.0),
                ..Default::default()
            }],
            "signals[0].threshold",
        ),
        (
            vec![SignalSetting {
                signal: PaceSignal::Autovacuum.into(),
                hold_ms: Some(10),
                ..Default::default()
            }],
            "signals[0].hold_ms",
        ),
    ] {
        let request = StartMigrationRequest {
            signals,
            ..start(s.org)
        };
        let status = client
            .start_migration(as_user(request, s.owner))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    s.app.stop().await;
}

async fn until_batch(events: &mut Started) -> MigrationProgress {
    loop {
        let event = next(events).await;
        if event.kind() == MigrationEventKind::Batch {
            return event;
        }
    }
}
