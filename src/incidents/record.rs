//! DocumentIncident: the request checked (each error naming its field), and
//! the incident recorded once per request id as a MIGRATION_INCIDENT audit
//! row (`hera_migration_record_incident_v2`). The same request id answers
//! the incident it recorded, report and all; with other content it is
//! ALREADY_EXISTS.
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{assessment::Assessment, report};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Refusal, Result},
    migration::input,
};

pub const MAX_REQUEST_ID: usize = 200;
pub const MAX_TITLE: usize = 200;
pub const MAX_DESCRIPTION: usize = 10_000;

const FIND: &str = "SELECT id, created_at, metadata FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_INCIDENT'
      AND metadata ->> 'request_id' = $2
    ORDER BY created_at LIMIT 1";
const RECORD: &str = "SELECT hera_migration_record_incident_v2($1, $2, $3, $4, $5, $6)";

/// How bad an incident is: SEV1 the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Sev1, Self::Sev2, Self::Sev3, Self::Sev4];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sev1 => "SEV1",
            Self::Sev2 => "SEV2",
            Self::Sev3 => "SEV3",
            Self::Sev4 => "SEV4",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Self::Sev1 => "critical: the ledger is wrong or the business cannot post",
            Self::Sev2 => "major: a run failed or must be rolled back",
            Self::Sev3 => "minor: a run needs a person (quarantines, lock waits, skips)",
            Self::Sev4 => "low: no impact, recorded for the record",
        }
    }

    /// "SEV1" .. "SEV4", case-insensitive.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// A checked DocumentIncident request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRequest {
    pub migration_id: Uuid,
    pub request_id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
}

/// The fields of a DocumentIncident request, as the caller sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct IncidentFields<'a> {
    pub migration_id: &'a str,
    pub request_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub severity: &'a str,
}

fn text(field: &'static str, value: &str, max: usize, required: bool) -> Result<String> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Checks a DocumentIncident's fields, naming the first bad one.
pub fn incident_request(fields: IncidentFields<'_>) -> Result<IncidentRequest> {
    let migration_id = input::id("migration_id", fields.migration_id)?;
    if fields.request_id.trim().is_empty() {
        return Err(Error::invalid(
            "request_id",
            "is required: the same request_id answers the incident it recorded",
        ));
    }
    let request_id = text("request_id", fields.request_id, MAX_REQUEST_ID, false)?;
    let title = text("title", fields.title, MAX_TITLE, true)?;
    let severity = Severity::parse(fields.severity).ok_or_else(|| {
        Error::invalid(
            "severity",
            format!(
                "{:?} is not a severity: SEV1 (critical), SEV2 (major), SEV3 (minor) or SEV4 (low)",
                fields.severity
            ),
        )
    })?;
    let description = text("description", fields.description, MAX_DESCRIPTION, false)?;
    Ok(IncidentRequest {
        migration_id,
        request_id,
        title,
        description,
        severity,
    })
}

/// An incident as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub migration_id: Option<Uuid>,
    pub title: String,
    pub severity: String,
    pub description: String,
    pub report_markdown: String,
    /// The request id had recorded it before: nothing was written now.
    pub already_recorded: bool,
    /// The audit chain as it stood before the incident's row (None: an
    /// incident recorded before the chain existed).
    pub audit_anchor: Option<crate::audit::Anchor>,
}

/// What an incident row's metadata holds.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Recorded {
    migration_id: Option<Uuid>,
    title: String,
    severity: String,
    description: String,
    report_markdown: String,
    audit_anchor: Option<crate::audit::Anchor>,
}

impl Incident {
    fn from_row(id: Uuid, recorded_at: DateTime<Utc>, metadata: serde_json::Value) -> Self {
        let recorded: Recorded = serde_json::from_value(metadata).unwrap_or_default();
        Self {
            id,
            recorded_at,
            migration_id: recorded.migration_id,
            title: recorded.title,
            severity: recorded.severity,
            description: recorded.description,
            report_markdown: recorded.report_markdown,
            already_recorded: true,
            audit_anchor: recorded.audit_anchor,
        }
    }

    /// This incident as the answer to `request`, whose request id recorded
    /// it: ALREADY_EXISTS when that was with other content.
    pub fn answering(self, request: &IncidentRequest) -> Result<Self> {
        let same = self.migration_id == Some(request.migration_id)
            && self.title == request.title
            && self.description == request.description
            && self.severity == request.severity.as_str();
        if same {
            Ok(self)
        } else {
            Err(Error::refused(
                Refusal::RequestIdReused,
                format!(
                    "request_id: {} already recorded incident {} with another migration_id, \
                     title, description or severity",
                    request.request_id, self.id
                ),
            )
            .naming("incident_id", self.id))
        }
    }
}

/// The incident the organization recorded under `request_id`, if any.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    request_id: &str,
) -> Result<Option<Incident>> {
    let mut tx = scope::begin_read_only(pool, organization_id).await?;
    let row: Option<(Uuid, DateTime<Utc>, serde_json::Value)> = sqlx::query_as(FIND)
        .bind(organization_id)
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(row.map(|(id, at, metadata)| Incident::from_row(id, at, metadata)))
}

#[derive(Deserialize)]
struct Written {
    incident_id: Uuid,
    recorded_at: DateTime<Utc>,
    already_recorded: bool,
    incident: serde_json::Value,
}

/// Renders the incident report of `assessment` and records it, unless its
/// request id recorded one meanwhile (then that one answers).
pub async fn record(
    pool: &PgPool,
    access: &Access,
    request: &IncidentRequest,
    assessment: &Assessment,
) -> Result<Incident> {
    let id = Uuid::new_v4();
    let header = report::Header {
        incident_id: id,
        title: &request.title,
        severity: request.severity,
        description: &request.description,
        request_id: &request.request_id,
        recorded_by: access.user_id,
    };
    let markdown = report::render(&header, assessment);
    let incident = json!({
        "title": request.title,
        "severity": request.severity.as_str(),
        "description": request.description,
        "report_markdown": markdown,
        "state": assessment.state().as_str(),
        "phase": assessment.phase().as_str(),
        "ledger_balanced": assessment.ledger_balanced(),
        "rollback_recommended": assessment.advice.rollback_recommended,
        "summary": assessment.advice.summary,
    });
    let mut tx = scope::begin(pool, access.organization_id).await?;
    let Json(written): Json<Written> = sqlx::query_scalar(RECORD)
        .bind(id)
        .bind(access.organization_id)
        .bind(request.migration_id)
        .bind(&request.request_id)
        .bind(&incident)
        .bind(access.user_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut recorded =
        Incident::from_row(written.incident_id, written.recorded_at, written.incident);
    recorded.already_recorded = written.already_recorded;
    if !written.already_recorded {
        tracing::info!(
            incident_id = %recorded.id,
            migration_id = %request.migration_id,
            organization_id = %access.organization_id,
            severity = request.severity.as_str(),
            "incident documented"
        );
    }
    recorded.answering(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> IncidentFields<'static> {
        IncidentFields {
            migration_id: "6f1c9e57-2a8e-4c53-9d38-8f0f2b0b5a11",
            request_id: "incident-1",
            title: "Batches waited on locks",
            description: "",
            severity: "sev2",
        }
    }

    #[test]
    fn a_request_is_checked_field_by_field() {
        let request = incident_request(fields()).unwrap();
        assert_eq!(request.severity, Severity::Sev2);
        for (bad, field) in [
            (
                IncidentFields {
                    request_id: " ",
                    ..fields()
                },
                "request_id",
            ),
            (
                IncidentFields {
                    title: "",
                    ..fields()
                },
                "title",
            ),
            (
                IncidentFields {
                    severity: "HIGH",
                    ..fields()
                },
                "severity",
            ),
            (
                IncidentFields {
                    severity: "",
                    ..fields()
                },
                "severity",
            ),
            (
                IncidentFields {
                    migration_id: "x",
                    ..fields()
                },
                "migration_id",
            ),
        ] {
            match incident_request(bad) {
                Err(Error::InvalidArgument { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
