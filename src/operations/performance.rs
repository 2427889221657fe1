//! MeasurePerformance: the request, the report, the baseline a TEST is
//! compared with, and the audit rows both record. The timing itself is in
//! `samples`.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Operations, Outcome, samples};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::input::MAX_BATCH,
};

const BASELINE: &str = include_str!("../../sql/queries/performance_baseline.sql");
const RECORD: &str = "SELECT hera_migration_record_performance_v2($1, $2, $3, $4, $5)";

pub const DEFAULT_BATCH_SIZE: i32 = 100;
pub const DEFAULT_SAMPLES: u32 = 20;
pub const MAX_SAMPLES: u32 = 100;
pub const DEFAULT_REGRESSION_THRESHOLD: f64 = 1.5;
const MAX_REGRESSION_THRESHOLD: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Baseline,
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "BASELINE",
            Self::Test => "TEST",
        }
    }
}

/// A checked MeasurePerformance request. Unset sizes: a BASELINE's
/// defaults; a TEST's baseline's, so that it measures the same.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceRequest {
    pub kind: Kind,
    pub batch_size: Option<i32>,
    pub samples: Option<u32>,
    pub regression_threshold: f64,
}

impl PerformanceRequest {
    /// 0 means unset for each number (the proto's default).
    pub fn parse(
        kind: Kind,
        batch_size: i32,
        samples: i32,
        regression_threshold: f64,
    ) -> Result<Self> {
        let batch_size = match batch_size {
            0 => None,
            1..=MAX_BATCH => Some(batch_size),
            _ => {
                return Err(Error::invalid(
                    "batch_size",
                    format!(
                        "{batch_size} is out of range (1 to {MAX_BATCH}, or 0 for {DEFAULT_BATCH_SIZE})"
                    ),
                ));
            }
        };
        let samples = match u32::try_from(samples) {
            Ok(0) => None,
            Ok(n) if n <= MAX_SAMPLES => Some(n),
            _ => {
                return Err(Error::invalid(
                    "samples",
                    format!(
                        "{samples} is out of range (1 to {MAX_SAMPLES}, or 0 for {DEFAULT_SAMPLES})"
                    ),
                ));
            }
        };
        let regression_threshold = if regression_threshold == 0.0 {
            DEFAULT_REGRESSION_THRESHOLD
        } else if regression_threshold.is_finite()
            && (1.0..=MAX_REGRESSION_THRESHOLD).contains(&regression_threshold)
        {
            regression_threshold
        } else {
            return Err(Error::invalid(
                "regression_threshold",
                format!(
                    "{regression_threshold} is out of range (1 to {MAX_REGRESSION_THRESHOLD}, or 0 \
                     for {DEFAULT_REGRESSION_THRESHOLD})"
                ),
            ));
        };
        Ok(Self {
            kind,
            batch_size,
            samples,
            regression_threshold,
        })
    }
}

/// One measurement: percentiles of its samples, judged against its
/// threshold, and for a TEST compared with the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub samples: u32,
    pub threshold_ms: f64,
    pub result: Outcome,
    pub detail: String,
    /// The transactions one sample wrote (the batch sample), to compare
    /// batches of different sizes per transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub regressed: bool,
}

#[derive(Debug, Clone)]
pub struct PerformanceReport {
    pub kind: Kind,
    pub measurements: Vec<Measurement>,
    pub measured_at: DateTime<Utc>,
    pub audit_transaction_id: Uuid,
    pub baseline_audit_transaction_id: Option<Uuid>,
    pub regression_threshold: f64,
    pub batch_size: i32,
    pub samples: u32,
    pub regressed: bool,
}

/// What a TEST compares with.
#[derive(Debug, Clone, Deserialize)]
struct Baseline {
    #[serde(skip)]
    id: Uuid,
    batch_size: i32,
    samples: u32,
    measurements: Vec<Measurement>,
}

impl Operations {
    pub async fn measure(
        &self,
        access: &Access,
        request: &PerformanceRequest,
    ) -> Result<PerformanceReport> {
        let baseline = match request.kind {
            Kind::Baseline => None,
            Kind::Test => Some(
                self.latest_baseline(access.organization_id)
                    .await?
                    .ok_or_else(|| {
                        Error::FailedPrecondition(
                            "no baseline yet: run MeasurePerformance with kind BASELINE first"
                                .into(),
                        )
                    })?,
            ),
        };
        let batch_size = request
            .batch_size
            .or(baseline.as_ref().map(|b| b.batch_size))
            .unwrap_or(DEFAULT_BATCH_SIZE);
        let samples = request
            .samples
            .or(baseline.as_ref().map(|b| b.samples))
            .unwrap_or(DEFAULT_SAMPLES);
        let measured_at = Utc::now();
        let mut measurements = samples::measure(self, access, batch_size, samples).await?;
        if let Some(baseline) = &baseline {
            for measurement in &mut measurements {
                compare(measurement, baseline, request.regression_threshold);
            }
        }
        let report = PerformanceReport {
            kind: request.kind,
            regressed: measurements.iter().any(|m| m.regressed),
            measurements,
            measured_at,
            audit_transaction_id: Uuid::new_v4(),
            baseline_audit_transaction_id: baseline.map(|b| b.id),
            regression_threshold: request.regression_threshold,
            batch_size,
            samples,
        };
        self.record(access, &report).await?;
        Ok(report)
    }

    async fn latest_baseline(&self, organization_id: Uuid) -> Result<Option<Baseline>> {
        let mut tx = scope::begin_read_only(&self.pool, organization_id).await?;
        let row: Option<(Uuid, Value)> = sqlx::query_as(BASELINE)
            .bind(organization_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.rollback().await?;
        let Some((id, metadata)) = row else {
            return Ok(None);
        };
        let mut baseline: Baseline = serde_json::from_value(metadata).map_err(|error| {
            Error::FailedPrecondition(format!(
                "the latest baseline ({id}) cannot be read ({error}): run MeasurePerformance \
                 with kind BASELINE again"
            ))
        })?;
        baseline.id = id;
        Ok(Some(baseline))
    }

    /// The MIGRATION_PERFORMANCE_BASELINE or _TEST audit row.
    async fn record(&self, access: &Access, report: &PerformanceReport) -> Result<()> {
        let metadata = json!({
            "measured_at": report.measured_at,
            "measured_by": access.user_id,
            "batch_size": report.batch_size,
            "samples": report.samples,
            "measurements": report.measurements,
            "regression_threshold": report.regression_threshold,
            "baseline_audit_transaction_id": report.baseline_audit_transaction_id,
            "regressed": report.regressed,
            "schema_mode": self.schema.mode.as_str(),
        });
        let mut tx = scope::begin(&self.pool, access.organization_id).await?;
        sqlx::query(RECORD)
            .bind(report.audit_transaction_id)
            .bind(access.organization_id)
            .bind(report.kind.as_str())
            .bind(metadata)
            .bind(access.user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A TEST's measurement against its baseline's: the ratio of the p50s (per
/// transaction for batch samples of different sizes), regressed above the
/// threshold.
fn compare(measurement: &mut Measurement, baseline: &Baseline, threshold: f64) {
    let Some(base) = baseline
        .measurements
        .iter()
        .find(|b| b.name == measurement.name)
    else {
        measurement
            .detail
            .push_str("; the baseline has no such measurement");
        return;
    };
    if base.p50_ms <= 0.0 || measurement.p50_ms <= 0.0 {
        measurement
            .detail
            .push_str("; no ratio: the baseline or this test measured nothing");
        return;
    }
    measurement.baseline_ms = Some(base.p50_ms);
    let ratio = match (measurement.transactions, base.transactions) {
        (Some(now), Some(then)) if now != then && now > 0 && then > 0 => {
            measurement.detail.push_str(&format!(
                "; compared per transaction with the baseline's sample of {then}"
            ));
            (measurement.p50_ms / now as f64) / (base.p50_ms / then as f64)
        }
        _ => measurement.p50_ms / base.p50_ms,
    };
    measurement.ratio = Some(ratio);
    measurement.regressed = ratio > threshold;
}

/// The nearest-rank percentile `q` (0 to 1) of sorted samples.
pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// PASS when p95 is within the threshold, WARN when only p50 is, else FAIL.
pub(super) fn judge(p50: f64, p95: f64, threshold: f64) -> Outcome {
    if p95 <= threshold {
        Outcome::Pass
    } else if p50 <= threshold {
        Outcome::Warn
    } else {
        Outcome::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 10.0);
        assert_eq!(percentile(&sorted, 0.95), 19.0);
        assert_eq!(percentile(&sorted, 0.99), 20.0);
        assert_eq!(percentile(&[3.0], 0.5), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn thresholds_judge_p95_then_p50() {
        assert_eq!(judge(1.0, 9.0, 10.0), Outcome::Pass);
        assert_eq!(judge(5.0, 11.0, 10.0), Outcome::Warn);
        assert_eq!(judge(11.0, 12.0, 10.0), Outcome::Fail);
    }

    #[test]
    fn requests_name_their_bad_fields() {
        let field = |r: Result<PerformanceRequest>| match r {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(PerformanceRequest::parse(Kind::Test, 5001, 0, 0.0)),
            "batch_size"
        );
        assert_eq!(
            field(PerformanceRequest::parse(Kind::Test, -1, 0, 0.0)),
            "batch_size"
        );
        assert_eq!(
            field(PerformanceRequest::parse(Kind::Test, 0, 101, 0.0)),
            "samples"
        );
        assert_eq!(
            field(PerformanceRequest::parse(Kind::Test, 0, 0, 0.5)),
            "regression_threshold"
        );
        let fine = PerformanceRequest::parse(Kind::Baseline, 0, 0, 0.0).unwrap();
        assert_eq!(fine.batch_size, None);
        assert_eq!(fine.regression_threshold, DEFAULT_REGRESSION_THRESHOLD);
    }
}
