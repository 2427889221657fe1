//! MeasurePerformance through the real server: measured over samples and
//! reported as percentiles, a BASELINE recorded as an audit row, a TEST
//! compared with it (ratios, regressed), and nothing a sample writes stays.
use hera_migrate::proto::*;
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::support::{
    World, as_user,
    runs::{ledger_digest, seeded, trial_balance},
};

pub const MEASUREMENTS: &[&str] = &[
    "fiscal_period_validation",
    "preview_sample",
    "batch_sample",
    "business_posting",
];

pub fn measure(org: Uuid, kind: MeasurementKind, samples: i32) -> MeasurePerformanceRequest {
    MeasurePerformanceRequest {
        organization_id: org.to_string(),
        kind: kind.into(),
        batch_size: 20,
        samples,
        ..Default::default()
    }
}

/// The organization's business rows, everything but hera-migrate's own
/// (runs, audit rows, security validations, performance records): a digest
/// of the headers, their count, and the lines' digest.
pub async fn business_ledger(pool: &PgPool, org: Uuid) -> (String, i64, String) {
    let (headers, count): (String, i64) = sqlx::query_as(
        "SELECT md5(coalesce(string_agg(t.id::text || t.transaction_status || t.smart_code
                                        || t.total_amount::text || t.metadata::text,
                                        ',' ORDER BY t.id), '')),
                count(*)
           FROM universal_transactions t
          WHERE t.organization_id = $1
            AND t.smart_code NOT LIKE 'HERA.ACCOUNTING.MIGRATION.%'",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap();
    (headers, count, ledger_digest(pool, org).await.1)
}

async fn audit_row(pool: &PgPool, id: &str) -> (String, String, String, Value) {
    sqlx::query_as(
        "SELECT transaction_type, smart_code, transaction_status, metadata
           FROM universal_transactions WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("the audit row")
}

/// Nothing the samples write survives: no sample run, no sample posting.
async fn no_sample_left(pool: &PgPool, org: Uuid) {
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE organization_id = $1
            AND (transaction_type IN ('MIGRATION_RUN', 'MIGRATION_OPERATION')
                 OR transaction_code LIKE 'PERF-%' OR metadata ? 'performance_sample')",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "a sample's rows stayed");
}

fn assert_percentiles(response: &MeasurePerformanceResponse, samples: i32) {
    let names: Vec<&str> = response
        .measurements
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, MEASUREMENTS, "{response:#?}");
    for m in &response.measurements {
        assert_eq!(m.samples, samples, "{m:?}");
        assert!(m.p50_ms > 0.0, "{m:?}");
        assert!(m.p50_ms <= m.p95_ms && m.p95_ms <= m.p99_ms, "{m:?}");
        assert_eq!(m.duration_ms, m.p50_ms);
        assert!(m.threshold_ms > 0.0, "{m:?}");
        assert!(
            matches!(
                m.result(),
                CheckResult::Pass | CheckResult::Warn | CheckResult::Fail
            ),
            "{m:?}"
        );
        assert!(!m.detail.is_empty());
    }
}

#[tokio::test]
async fn requests_are_checked_and_a_test_needs_a_baseline() {
    let w = World::new().await;
    let mut client = w.app.client().await;
    let cases = [
        (
            MeasurePerformanceRequest {
                batch_size: 5001,
                ..measure(w.org.id, MeasurementKind::Baseline, 1)
            },
            "batch_size",
        ),
        (
            MeasurePerformanceRequest {
                batch_size: -1,
                ..measure(w.org.id, MeasurementKind::Baseline, 1)
            },
            "batch_size",
        ),
        (measure(w.org.id, MeasurementKind::Baseline, 101), "samples"),
        (
            MeasurePerformanceRequest {
                regression_threshold: 0.5,
                ..measure(w.org.id, MeasurementKind::Test, 1)
            },
            "regression_threshold",
        ),
        (
            MeasurePerformanceRequest {
                kind: 7,
                ..measure(w.org.id, MeasurementKind::Test, 1)
            },
            "kind",
        ),
    ];
    for (bad, field) in cases {
        let refused = client
            .measure_performance(as_user(bad, w.org.owner))
            .await
            .expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let details = refused.get_error_details();
        let violations = &details.bad_request().expect("violations").field_violations;
        assert_eq!(violations[0].field, field, "{refused:?}");
    }

    let test = client
        .measure_performance(as_user(
            measure(w.org.id, MeasurementKind::Test, 1),
            w.org.owner,
        ))
        .await
        .expect_err("no baseline yet");
    assert_eq!(test.code(), Code::FailedPrecondition, "{test:?}");
    assert_eq!(
        test.message(),
        "no baseline yet: run MeasurePerformance with kind BASELINE first"
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE transaction_type LIKE 'MIGRATION_PERFORMANCE_%'",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(recorded, 0, "nothing recorded");

    let stranger = client
        .measure_performance(as_user(
            measure(w.org.id, MeasurementKind::Baseline, 1),
            Uuid::new_v4(),
        ))
        .await
        .expect_err("a stranger may not measure");
    assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
    w.app.stop().await;
}

#[tokio::test]
async fn a_baseline_is_recorded_and_a_test_reports_ratios_leaving_the_ledger_as_it_was() {
    let s = seeded(60).await;
    let mut client = s.app.client().await;
    let ledger = business_ledger(&s.pool, s.org).await;
    let balance = trial_balance(&s.pool, s.org).await;

    let baseline = client
        .measure_performance(as_user(
            measure(s.org, MeasurementKind::Baseline, 5),
            s.owner,
        ))
        .await
        .expect("a baseline")
        .into_inner();
    assert_eq!(baseline.kind(), MeasurementKind::Baseline);
    assert_percentiles(&baseline, 5);
    assert_eq!(baseline.batch_size, 20);
    assert!(baseline.baseline_audit_transaction_id.is_empty());
    let batch = &baseline.measurements[2];
    assert!(batch.detail.contains("20 taken"), "{batch:?}");
    let (kind, code, status, metadata) = audit_row(&s.pool, &baseline.audit_transaction_id).await;
    assert_eq!(kind, "MIGRATION_PERFORMANCE_BASELINE");
    assert_eq!(code, "HERA.ACCOUNTING.MIGRATION.PERF.BASELINE.v2");
    assert_eq!(status, "completed");
    let valid: bool = sqlx::query_scalar("SELECT hera_smart_code_is_valid($1)")
        .bind(&code)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(valid);
    assert_eq!(metadata["kind"], "BASELINE");
    assert_eq!(metadata["measurements"].as_array().unwrap().len(), 4);
    assert_eq!(
        metadata["measurements"][0]["p50_ms"].as_f64(),
        Some(baseline.measurements[0].p50_ms)
    );

    // A TEST measures the same (the baseline's batch size and samples) and
    // compares each p50 with the baseline's.
    let test = client
        .measure_performance(as_user(
            MeasurePerformanceRequest {
                batch_size: 0,
                samples: 0,
                ..measure(s.org, MeasurementKind::Test, 0)
            },
            s.owner,
        ))
        .await
        .expect("a test")
        .into_inner();
    assert_eq!(test.kind(), MeasurementKind::Test);
    assert_percentiles(&test, 5);
    assert_eq!(test.batch_size, 20);
    assert_eq!(test.regression_threshold, 1.5);
    assert_eq!(
        test.baseline_audit_transaction_id,
        baseline.audit_transaction_id
    );
    for (now, then) in test.measurements.iter().zip(&baseline.measurements) {
        assert_eq!(now.baseline_ms, then.p50_ms, "{now:?}");
        let ratio = now.p50_ms / then.p50_ms;
        assert!((now.ratio - ratio).abs() < 1e-9, "{now:?}");
        assert_eq!(now.regressed, now.ratio > 1.5, "{now:?}");
    }
    assert_eq!(
        test.regressed,
        test.measurements.iter().any(|m| m.regressed)
    );
    let (kind, code, _, metadata) = audit_row(&s.pool, &test.audit_transaction_id).await;
    assert_eq!(kind, "MIGRATION_PERFORMANCE_TEST");
    assert_eq!(code, "HERA.ACCOUNTING.MIGRATION.PERF.TEST.v2");
    assert_eq!(
        metadata["baseline_audit_transaction_id"],
        baseline.audit_transaction_id.as_str()
    );

    // A baseline a hundred thousand times faster than today: every
    // measurement has regressed.
    sqlx::query(
        "UPDATE universal_transactions
            SET metadata = jsonb_set(metadata, '{measurements}',
                    (SELECT jsonb_agg(m || jsonb_build_object('p50_ms', (m ->> 'p50_ms')::float8 / 100000))
                       FROM jsonb_array_elements(metadata -> 'measurements') m))
          WHERE id = $1::uuid",
    )
    .bind(&baseline.audit_transaction_id)
    .execute(&s.pool)
    .await
    .unwrap();
    let regressed = client
        .measure_performance(as_user(
            MeasurePerformanceRequest {
                regression_threshold: 2.0,
                ..measure(s.org, MeasurementKind::Test, 2)
            },
            s.owner,
        ))
        .await
        .expect("a test")
        .into_inner();
    assert!(regressed.regressed, "{regressed:#?}");
    assert_eq!(regressed.regression_threshold, 2.0);
    for m in &regressed.measurements {
        assert!(m.regressed && m.ratio > 2.0, "{m:?}");
    }

    assert_eq!(
        business_ledger(&s.pool, s.org).await,
        ledger,
        "the ledger is unchanged"
    );
    assert_eq!(trial_balance(&s.pool, s.org).await, balance);
    no_sample_left(&s.pool, s.org).await;
    s.app.stop().await;
}
