//! From the service layer's types to the API's messages.
use prost_types::Timestamp;

use crate::{migration::preview::Preview, proto};

pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn risk(level: &str) -> i32 {
    proto::RiskLevel::from_str_name(level).unwrap_or(proto::RiskLevel::Unspecified) as i32
}

fn period_state(status: &str) -> i32 {
    proto::FiscalPeriodState::from_str_name(status).unwrap_or(proto::FiscalPeriodState::Unspecified)
        as i32
}

pub fn preview(preview: Preview) -> proto::PreviewCandidatesResponse {
    proto::PreviewCandidatesResponse {
        organization_id: preview.organization_id.to_string(),
        total_candidates: preview.total_candidates,
        smart_code_breakdown: preview
            .smart_code_breakdown
            .into_iter()
            .map(|b| proto::SmartCodeBreakdown {
                source_smart_code: b.source_smart_code,
                target_smart_code: b.target_smart_code,
                transaction_count: b.transaction_count,
                total_amount: b.total_amount,
            })
            .collect(),
        not_migratable: preview
            .not_migratable
            .into_iter()
            .map(|n| proto::NotMigratable {
                source_smart_code: n.source_smart_code,
                transaction_count: n.transaction_count,
                reason: n.reason,
            })
            .collect(),
        fiscal_period_status: preview
            .fiscal_period_status
            .into_iter()
            .map(|p| proto::FiscalPeriodStatus {
                period_code: p.period_code,
                status: period_state(&p.status),
                affected_transactions: p.affected_transactions,
            })
            .collect(),
        unbalanced_transactions: Some(proto::UnbalancedTransactions {
            count: preview.unbalanced_transactions.count,
            transaction_ids: ids(preview.unbalanced_transactions.transaction_ids),
        }),
        estimated_processing_time_ms: preview.estimated_processing_time_ms,
        estimate_basis: preview.estimate_basis,
        risk_assessment: Some(proto::RiskAssessment {
            data_integrity_risk: risk(&preview.risk_assessment.data_integrity_risk),
            performance_impact: risk(&preview.risk_assessment.performance_impact),
            rollback_complexity: risk(&preview.risk_assessment.rollback_complexity),
            reasons: preview.risk_assessment.reasons,
        }),
        plan_fingerprint: preview.plan_fingerprint,
        candidate_ids: ids(preview.candidate_ids),
        generated_at: Some(timestamp(preview.generated_at)),
    }
}

fn ids(ids: Vec<uuid::Uuid>) -> Vec<String> {
    ids.into_iter().map(|id| id.to_string()).collect()
}
