//! From the operations' types (environment checks, performance
//! measurements, a rollback's preview) to the API's messages.
use super::convert::{enum_value, timestamp};
use crate::proto::ShortName;
use crate::{
    migration::rollback_preview::RollbackPreview,
    operations::{Environment, Kind, Measurement, Outcome, PerformanceReport},
    proto,
};

fn result(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Pass => proto::CheckResult::Pass,
        Outcome::Warn => proto::CheckResult::Warn,
        Outcome::Fail => proto::CheckResult::Fail,
        Outcome::Unknown => proto::CheckResult::Unknown,
    }
    .into()
}

pub fn environment(environment: Environment) -> proto::CheckEnvironmentResponse {
    proto::CheckEnvironmentResponse {
        checks: environment
            .checks
            .into_iter()
            .map(|check| proto::EnvironmentCheck {
                result: result(check.result),
                name: check.name,
                detail: check.detail,
                remedy: check.remedy,
            })
            .collect(),
        database_version: environment.database_version,
        schema_version: environment.schema_version,
        schema_mode: proto::SchemaMode::from_short_name(&environment.schema_mode.to_uppercase())
            .unwrap_or(proto::SchemaMode::Unspecified) as i32,
    }
}

fn measurement(m: Measurement) -> proto::PerformanceMeasurement {
    proto::PerformanceMeasurement {
        result: result(m.result),
        name: m.name,
        duration_ms: m.p50_ms,
        threshold_ms: m.threshold_ms,
        p50_ms: m.p50_ms,
        p95_ms: m.p95_ms,
        p99_ms: m.p99_ms,
        samples: i32::try_from(m.samples).unwrap_or(i32::MAX),
        baseline_ms: m.baseline_ms.unwrap_or_default(),
        ratio: m.ratio.unwrap_or_default(),
        regressed: m.regressed,
        detail: m.detail,
    }
}

pub fn performance(report: PerformanceReport) -> proto::MeasurePerformanceResponse {
    let kind = match report.kind {
        Kind::Baseline => proto::MeasurementKind::Baseline,
        Kind::Test => proto::MeasurementKind::Test,
    };
    proto::MeasurePerformanceResponse {
        kind: kind.into(),
        measurements: report.measurements.into_iter().map(measurement).collect(),
        measured_at: Some(timestamp(report.measured_at)),
        baseline_audit_transaction_id: report
            .baseline_audit_transaction_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        audit_transaction_id: report.audit_transaction_id.to_string(),
        regression_threshold: report.regression_threshold,
        batch_size: report.batch_size,
        regressed: report.regressed,
    }
}

/// What a rollback would do.
pub fn rollback_preview(p: RollbackPreview) -> proto::PreviewRollbackResponse {
    proto::PreviewRollbackResponse {
        organization_id: p.organization_id.to_string(),
        migration_id: p.migration_id.to_string(),
        state: enum_value(
            proto::MigrationState::from_short_name(&p.state),
            proto::MigrationState::Unspecified,
        ),
        originals_to_restore: p.originals,
        copies_to_void: p.copies,
        aliases_to_remove: p.aliases,
        estimated_duration_ms: p.estimated_ms,
        estimate_basis: p.estimate_basis,
        periods: p
            .periods
            .into_iter()
            .map(|period| proto::RollbackPeriod {
                status: enum_value(
                    proto::FiscalPeriodState::from_short_name(&period.status),
                    proto::FiscalPeriodState::Unspecified,
                ),
                period_code: period.period_code,
                transactions: period.transactions,
            })
            .collect(),
        dependent_postings: p
            .dependent
            .into_iter()
            .map(|d| proto::DependentPosting {
                transaction_id: d.transaction_id.to_string(),
                transaction_code: d.transaction_code.unwrap_or_default(),
                smart_code: d.smart_code.unwrap_or_default(),
                references_transaction_id: d.references_transaction_id.to_string(),
                reference: d.reference,
                created_at: Some(timestamp(d.created_at)),
            })
            .collect(),
        dependent_posting_count: p.dependent_count,
        risks: p.risks,
        generated_at: Some(timestamp(p.generated_at)),
    }
}
