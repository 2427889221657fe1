//! From the service layer's types to the API's messages.
use crate::proto::ShortName;
use prost_types::Timestamp;

use super::convert_pacing;
use crate::{
    migration::{engine::sizing, preview::Preview},
    proto,
};

pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn risk(level: &str) -> i32 {
    proto::RiskLevel::from_short_name(level).unwrap_or(proto::RiskLevel::Unspecified) as i32
}

fn period_state(status: &str) -> i32 {
    proto::FiscalPeriodState::from_short_name(status)
        .unwrap_or(proto::FiscalPeriodState::Unspecified) as i32
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
        non_candidates: preview
            .non_candidates
            .into_iter()
            .map(|n| proto::StatusCount {
                status: n.status,
                transaction_count: n.transaction_count,
            })
            .collect(),
        prediction: Some(prediction(preview.prediction)),
        candidate_statuses: preview.candidate_statuses,
    }
}

fn prediction(p: crate::migration::preview::Prediction) -> proto::MigrationPrediction {
    proto::MigrationPrediction {
        migrated: p.migrated,
        skipped_closed: p.skipped_closed,
        skipped_unmapped: p.skipped_unmapped,
        quarantined: p.quarantined,
        quarantine: p
            .quarantine
            .into_iter()
            .map(|q| proto::QuarantinePrediction {
                rule: q.rule,
                transaction_count: q.transaction_count,
                reason: q.reason,
                transaction_ids: ids(q.transaction_ids),
            })
            .collect(),
    }
}

pub(super) fn set_aside(
    list: &[crate::migration::run::SetAside],
) -> Vec<proto::SetAsideTransaction> {
    list.iter()
        .map(|s| proto::SetAsideTransaction {
            transaction_id: s
                .transaction_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            rule: s.rule.clone(),
            reason: s.reason.clone(),
        })
        .collect()
}

fn ids(ids: Vec<uuid::Uuid>) -> Vec<String> {
    ids.into_iter().map(|id| id.to_string()).collect()
}

pub(super) fn enum_value<E: Copy + Into<i32>>(parsed: Option<E>, unspecified: E) -> i32 {
    parsed.unwrap_or(unspecified).into()
}

/// A run as the API shows it, its latest state as a progress event.
pub fn migration(run: crate::migration::run::Run) -> proto::Migration {
    let progress = progress(&run.latest);
    let record = &run.record;
    let (state, phase) = (progress.state, progress.phase);
    let parameters = &record.parameters;
    proto::Migration {
        migration_id: run.id.to_string(),
        organization_id: run.organization_id.to_string(),
        phase,
        state,
        parameters: Some(proto::MigrationParameters {
            from_date: date(parameters.from_date),
            to_date: date(parameters.to_date),
            batch_size: parameters.batch_size,
            smart_code_mappings: parameters
                .smart_code_mappings
                .iter()
                .map(|m| proto::SmartCodeMapping {
                    source_smart_code: m.source_smart_code.clone(),
                    target_smart_code: m.target_smart_code.clone(),
                })
                .collect(),
            dry_run: parameters.dry_run,
            closed_period_policy: enum_value(
                proto::ClosedPeriodPolicy::from_short_name(
                    parameters.closed_period_policy.as_str(),
                ),
                proto::ClosedPeriodPolicy::Skip,
            ),
            max_transactions_per_second: parameters.max_transactions_per_second,
            batch_delay_ms: parameters.batch_delay_ms,
            plan_fingerprint: parameters.plan_fingerprint.clone(),
            candidate_statuses: parameters.candidate_statuses.clone(),
            target_batch_ms: parameters.target_batch_ms.unwrap_or(0),
            min_batch_size: parameters.min_batch_size.unwrap_or(sizing::DEFAULT_MIN),
            max_batch_size: parameters.max_batch_size.unwrap_or(sizing::DEFAULT_MAX),
            signals: convert_pacing::settings(&parameters.signals),
        }),
        progress: Some(progress),
        started_by: record.started_by.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(run.created_at)),
        updated_at: Some(timestamp(run.updated_at)),
        finished_at: record.finished_at.map(timestamp),
        quarantined_transaction_ids: ids(record.quarantined_ids.clone()),
        request_id: record.request_id.clone().unwrap_or_default(),
        quarantined: set_aside(&record.quarantined),
        rollback_refused: record
            .rollback
            .as_ref()
            .map(|r| set_aside(&r.refused))
            .unwrap_or_default(),
        aliased_migration_id: record
            .aliasing
            .as_ref()
            .and_then(|a| a.migration_id)
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// A run's date; empty for an unbounded end (an organization-wide
/// application of aliases has no range).
fn date(date: chrono::NaiveDate) -> String {
    if date == chrono::NaiveDate::MIN || date == chrono::NaiveDate::MAX {
        String::new()
    } else {
        date.to_string()
    }
}

/// An event of a run as the API streams it.
pub fn progress(p: &crate::migration::progress::Progress) -> proto::MigrationProgress {
    use crate::migration::progress::Health;
    let health = match p.health {
        Health::Healthy => proto::HealthStatus::Healthy,
        Health::Warning => proto::HealthStatus::Warning,
        Health::Critical => proto::HealthStatus::Critical,
    };
    proto::MigrationProgress {
        migration_id: p.migration_id.to_string(),
        organization_id: p.organization_id.to_string(),
        sequence: p.sequence,
        kind: enum_value(
            proto::MigrationEventKind::from_short_name(p.kind.as_str()),
            proto::MigrationEventKind::Unspecified,
        ),
        phase: enum_value(
            proto::MigrationPhase::from_short_name(p.phase.as_str()),
            proto::MigrationPhase::Unspecified,
        ),
        state: enum_value(
            proto::MigrationState::from_short_name(p.state.as_str()),
            proto::MigrationState::Unspecified,
        ),
        progress_percentage: p.percentage(),
        transactions_processed: p.processed,
        transactions_remaining: p.remaining,
        transactions_migrated: p.migrated,
        transactions_skipped: p.skipped(),
        transactions_skipped_closed_period: p.skipped_closed,
        transactions_skipped_unmapped: p.skipped_unmapped,
        transactions_quarantined: p.quarantined,
        transactions_refused: p.refused,
        estimated_completion: p.estimated_completion.map(timestamp),
        performance_metrics: Some(proto::PerformanceMetrics {
            current_batch_time_ms: p.current_batch_ms,
            average_batch_time_ms: p.average_batch_ms,
            transactions_per_second: p.transactions_per_second,
        }),
        health_status: health.into(),
        error_count: p.errors,
        warning_count: p.warnings,
        batch_number: p.batch_number,
        batch_transactions: p.batch_transactions,
        message: p.message.clone(),
        dry_run: p.dry_run,
        emitted_at: Some(timestamp(p.emitted_at)),
        pacing: Some(convert_pacing::pacing(&p.pacing)),
        actor_id: p.actor.map(|id| id.to_string()).unwrap_or_default(),
    }
}

pub fn anchor(a: crate::audit::Anchor) -> proto::AuditAnchor {
    proto::AuditAnchor {
        seq: a.seq,
        hash: a.hash,
    }
}

/// What VerifyAuditChain found.
pub fn audit_chain(v: crate::audit::ChainVerdict) -> proto::VerifyAuditChainResponse {
    proto::VerifyAuditChainResponse {
        verified: v.verified,
        entries: v.entries,
        checked: v.checked,
        head: Some(anchor(v.head)),
        first_broken: v.first_broken.map(|b| proto::BrokenLink {
            seq: b.seq,
            entry_id: b.entry_id.to_string(),
            kind: b.kind,
            transaction_type: b.transaction_type.unwrap_or_default(),
            reason: b.reason,
        }),
    }
}

/// What CheckSecurity found.
pub fn security(access: crate::auth::Access) -> proto::CheckSecurityResponse {
    proto::CheckSecurityResponse {
        user_id: access.user_id.to_string(),
        organization_id: access.organization_id.to_string(),
        role: access.role.unwrap_or_default(),
        migration_allowed: access.migration_allowed,
        reasons: access.reasons,
        audit_transaction_id: access
            .audit_transaction_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// What ApplyReportingAliases did.
pub fn aliases(
    organization_id: uuid::Uuid,
    applied: crate::migration::engine::Applied,
) -> proto::ApplyReportingAliasesResponse {
    proto::ApplyReportingAliasesResponse {
        organization_id: organization_id.to_string(),
        alias_batch_id: applied.alias_batch_id.to_string(),
        counts: applied
            .mappings
            .into_iter()
            .map(|count| proto::AliasCount {
                source_smart_code: count.source_smart_code,
                target_smart_code: count.target_smart_code,
                transactions_aliased: count.transactions_aliased,
                already_aliased: count.already_aliased,
            })
            .collect(),
        total_aliased: applied.transactions_aliased,
        refused: set_aside(&applied.refused),
        aliasing_run_id: applied.aliasing_run_id.to_string(),
    }
}

pub(super) fn check_result(result: &str) -> i32 {
    enum_value(
        proto::CheckResult::from_short_name(result),
        proto::CheckResult::Unspecified,
    )
}

/// A check of the validation suite.
pub(super) fn check(check: crate::migration::validation::Check) -> proto::ValidationCheck {
    proto::ValidationCheck {
        result: check_result(&check.result),
        name: check.name,
        summary: check.summary,
        details: check
            .details
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => (key, text),
                other => (key, other.to_string()),
            })
            .collect(),
    }
}

/// A validation report.
pub fn validation(
    organization_id: uuid::Uuid,
    migration_id: uuid::Uuid,
    report: crate::migration::validation::Report,
) -> proto::ValidationReport {
    proto::ValidationReport {
        organization_id: organization_id.to_string(),
        migration_id: migration_id.to_string(),
        overall: check_result(&report.overall),
        checks: report.checks.into_iter().map(check).collect(),
        sacred_six_status: enum_value(
            report
                .sacred_six_status
                .as_deref()
                .and_then(proto::SacredSixStatus::from_short_name),
            proto::SacredSixStatus::Unspecified,
        ),
        // The suite says ROLLBACK_COMPLETE / ROLLBACK_INCOMPLETE.
        rollback_status: enum_value(
            report
                .rollback_status
                .as_deref()
                .and_then(|s| s.strip_prefix("ROLLBACK_"))
                .and_then(proto::RollbackStatus::from_short_name),
            proto::RollbackStatus::Unspecified,
        ),
        validated_at: Some(timestamp(report.validated_at)),
        audit_transaction_id: report.audit_transaction_id.to_string(),
        audit_anchor: Some(anchor(report.audit_anchor)),
        allow_partial: report.allow_partial,
    }
}
