//! What a scrape reads: the instruments under their Prometheus names, with
//! their units as suffixes and only the attributes they are meant to carry.
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use uuid::Uuid;

use super::{BatchFigures, Recorder, prometheus};

fn scraped() -> (SdkMeterProvider, ::prometheus::Registry) {
    let registry = ::prometheus::Registry::new();
    let provider = SdkMeterProvider::builder()
        .with_reader(prometheus::exporter(&registry).unwrap())
        .build();
    (provider, registry)
}

/// The sample lines of `name` (exactly: `name{...} value` or `name value`).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_batch_comes_out_as_counters_and_a_histogram_in_seconds() {
    let (provider, registry) = scraped();
    let recorder = Recorder::new(&provider.meter("test"));
    let org = Uuid::new_v4();
    let run = recorder.run(org, "EXECUTION", false);
    let figures = BatchFigures {
        transactions: 50,
        migrated: 40,
        skipped_closed_period: 6,
        skipped_unmapped: 0,
        quarantined: 4,
        refused: 0,
    };
    run.batch(&figures, Duration::from_millis(300));
    run.batch(&figures, Duration::from_millis(700));
    run.throttled("OPERATOR_RATE_LIMIT", Duration::from_millis(1500));
    let text = prometheus::render(&registry).unwrap();

    let batches = samples(&text, "hera_migration_batches_total");
    assert_eq!(batches.len(), 1, "{text}");
    assert!(batches[0].contains(&format!("organization_id=\"{org}\"")));
    assert!(batches[0].contains("phase=\"EXECUTION\""));
    assert!(batches[0].contains("dry_run=\"false\""));
    assert_eq!(value(batches[0]), 2.0);

    let migrated = samples(&text, "hera_migration_transactions_migrated_total");
    assert_eq!(value(migrated[0]), 80.0, "{text}");
    let skipped = samples(&text, "hera_migration_transactions_skipped_total");
    assert_eq!(
        skipped.len(),
        1,
        "no series for a reason that never counted: {text}"
    );
    assert!(skipped[0].contains("reason=\"closed_period\""));
    assert_eq!(value(skipped[0]), 12.0);
    let quarantined = samples(&text, "hera_migration_transactions_quarantined_total");
    assert_eq!(value(quarantined[0]), 8.0);

    let count = samples(&text, "hera_migration_batch_duration_seconds_count");
    assert_eq!(value(count[0]), 2.0, "{text}");
    assert!(
        !count[0].contains("organization_id"),
        "histograms carry no organization: {}",
        count[0]
    );
    let sum = samples(&text, "hera_migration_batch_duration_seconds_sum");
    assert!((value(sum[0]) - 1.0).abs() < 1e-9, "{text}");
    assert!(
        text.contains("le=\"0.5\""),
        "second-sized buckets, not the SDK's millisecond defaults: {text}"
    );
    let throttled = samples(&text, "hera_migration_throttled_seconds_total");
    assert!(throttled[0].contains("reason=\"OPERATOR_RATE_LIMIT\""));
    assert_eq!(value(throttled[0]), 1.5);
    assert!(text.contains("# TYPE hera_migration_batches_total counter"));
    assert!(text.contains("# TYPE hera_migration_batch_duration_seconds histogram"));
}

#[test]
fn the_runs_gauge_follows_an_executor_from_running_to_paused_to_gone() {
    let (provider, registry) = scraped();
    let recorder = Recorder::new(&provider.meter("test"));
    let gauge = |state: &str| {
        let text = prometheus::render(&registry).unwrap();
        samples(&text, "hera_migration_runs_active")
            .into_iter()
            .find(|line| line.contains(&format!("state=\"{state}\"")))
            .map(value)
            .unwrap_or(0.0)
    };
    let mut run = recorder.run(Uuid::new_v4(), "ROLLBACK", false);
    assert_eq!((gauge("RUNNING"), gauge("PAUSED")), (1.0, 0.0));
    run.state("PAUSED");
    run.state("PAUSED");
    assert_eq!((gauge("RUNNING"), gauge("PAUSED")), (0.0, 1.0));
    drop(run);
    assert_eq!((gauge("RUNNING"), gauge("PAUSED")), (0.0, 0.0));
}

#[test]
fn a_disabled_recorder_records_without_a_provider() {
    let recorder = Recorder::disabled();
    let mut run = recorder.run(Uuid::new_v4(), "EXECUTION", true);
    run.batch(&BatchFigures::default(), Duration::from_millis(1));
    run.lock_wait(Duration::from_secs(2), "lock_timeout");
    run.state("PAUSED");
    recorder.serving(true);
}
