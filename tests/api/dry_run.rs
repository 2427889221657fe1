//! A dry run executes every batch for real and rolls each back: real counts,
//! balance checks and timings, and nothing of the ledger stays written.
use hera_migrate::proto::*;

use crate::support::{
    catalog, fixtures,
    runs::{batches, get, ledger_digest, seeded, start, started, trial_balance},
};

#[tokio::test]
async fn a_dry_run_reports_real_counts_and_leaves_the_ledger_as_it_was() {
    let s = seeded(120).await;
    let before = trial_balance(&s.pool, s.org).await;
    let digest = ledger_digest(&s.pool, s.org).await;
    let tables = catalog::tables(&s.pool).await;
    let mut client = s.app.client().await;

    let events = started(
        &mut client,
        StartMigrationRequest {
            batch_size: 25,
            dry_run: true,
            ..start(s.org)
        },
        s.owner,
    )
    .await;
    assert!(events.iter().all(|e| e.dry_run), "every event says dry run");
    for event in &events {
        assert!(event.message.starts_with("dry run"), "{}", event.message);
        assert!(!event.message.contains("committed"), "{}", event.message);
    }
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded, "{last:?}");
    assert_eq!(
        (last.transactions_processed, last.progress_percentage),
        (120, 100.0)
    );
    assert!(
        last.batch_number >= 5,
        "five batches of 25 and a last empty one: {last:?}"
    );
    assert!(last.message.contains("dry run"), "{}", last.message);
    assert!(
        events.iter().any(|e| e
            .performance_metrics
            .as_ref()
            .unwrap()
            .current_batch_time_ms
            > 0.0),
        "real timings"
    );

    assert_eq!(
        ledger_digest(&s.pool, s.org).await,
        digest,
        "nothing written"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, before);
    assert_eq!(catalog::tables(&s.pool).await, tables);
    assert!(
        batches(&s.pool, &last.migration_id).await.is_empty(),
        "no audit row of a batch that rolled back"
    );
    let run = get(&mut client, s.org, s.owner, &last.migration_id).await;
    assert!(run.parameters.unwrap().dry_run);

    // The candidates are all still there for the real run.
    let real = started(&mut client, start(s.org), s.owner).await;
    let done = real.last().unwrap();
    assert_eq!(done.transactions_processed, 120);
    assert!(!done.dry_run);
    assert_eq!(
        fixtures::migrated_copies(&s.pool, s.org, &done.migration_id).await,
        (120, 120, 120)
    );
    s.app.stop().await;
}
