//! From the incidents' types to the API's messages: AssessFailure's
//! assessment and DocumentIncident's incident.
use super::convert::{self, check, check_result, enum_value, set_aside, timestamp};
use crate::proto::ShortName;
use crate::{
    incidents::{Assessment, Incident},
    migration::progress::EventKind,
    proto,
};

/// A run's assessment.
pub fn assessment(a: Assessment) -> proto::AssessFailureResponse {
    let counters = a.counters();
    let actions: Vec<proto::RecommendedAction> = a
        .advice
        .actions
        .iter()
        .map(|action| proto::RecommendedAction {
            action: action.action.clone(),
            reason: action.reason.clone(),
            command: action.command.clone(),
        })
        .collect();
    proto::AssessFailureResponse {
        migration_id: a.id().to_string(),
        organization_id: a.organization_id().to_string(),
        state: enum_value(
            proto::MigrationState::from_short_name(a.state().as_str()),
            proto::MigrationState::Unspecified,
        ),
        phase: enum_value(
            proto::MigrationPhase::from_short_name(a.phase().as_str()),
            proto::MigrationPhase::Unspecified,
        ),
        dry_run: a.dry_run(),
        last_batch_number: a.last_batch_number(),
        last_error: a.last_error().to_owned(),
        failed_batch_number: a.failure.as_ref().map_or(0, |f| f.batch_number),
        failed_at: a.failure.as_ref().map(|f| timestamp(f.at)),
        quarantined_transaction_ids: a
            .quarantined()
            .iter()
            .filter_map(|q| q.transaction_id.map(|id| id.to_string()))
            .collect(),
        quarantined: set_aside(a.quarantined()),
        rollback_refused: set_aside(a.rollback_refused()),
        ledger_balanced: a.ledger_balanced(),
        ledger_summary: a.ledger_summary(),
        rollback_recommended: a.advice.rollback_recommended,
        recommended_actions: actions
            .iter()
            .map(|action| format!("{}: {}", action.action, action.reason))
            .collect(),
        actions,
        summary: a.advice.summary.clone(),
        transactions_processed: counters.processed,
        transactions_migrated: counters.migrated,
        transactions_skipped_closed_period: counters.skipped_closed,
        transactions_skipped_unmapped: counters.skipped_unmapped,
        transactions_pending: a.pending,
        batches_committed: a.committed.batches,
        transactions_committed: a.committed.migrated,
        rollback_batches_committed: a.committed.rollback_batches,
        transactions_restored: a.committed.restored,
        lock_backoffs: a.count(EventKind::LockBackoff),
        takeovers: a.count(EventKind::TakenOver),
        interruptions: a.count(EventKind::Interrupted),
        validation_overall: a
            .checks
            .as_ref()
            .map_or(0, |report| check_result(&report.overall)),
        started_by: a
            .run
            .record
            .started_by
            .map(|id| id.to_string())
            .unwrap_or_default(),
        assessed_at: Some(timestamp(a.assessed_at)),
        events: a.events.len() as u64,
        checks: a
            .checks
            .map(|report| report.checks.into_iter().map(check).collect())
            .unwrap_or_default(),
    }
}

/// An incident as recorded.
pub fn incident(incident: Incident) -> proto::DocumentIncidentResponse {
    proto::DocumentIncidentResponse {
        incident_id: incident.id.to_string(),
        recorded_at: Some(timestamp(incident.recorded_at)),
        report_markdown: incident.report_markdown,
        title: incident.title,
        severity: enum_value(
            proto::Severity::from_short_name(&incident.severity),
            proto::Severity::Unspecified,
        ),
        already_recorded: incident.already_recorded,
        migration_id: incident
            .migration_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        description: incident.description,
        audit_anchor: incident.audit_anchor.map(convert::anchor),
    }
}
