//! Incidents: what went wrong with a run and what to do about it.
//!
//! `assessment` gathers a run's diagnosis read-only (its record, its whole
//! event history, the MIGRATION_OPERATION rows of what committed, the
//! validation suite run read-only, the latest recorded validation); `advice`
//! decides the recommended actions from it (a pure function); `history`
//! reads the events (batches, actors, errors); `report` renders an incident
//! as Markdown; `record` checks a DocumentIncident request and records the
//! incident as a MIGRATION_INCIDENT audit row (`sql/functions/incidents.sql`),
//! idempotent by request id.
pub mod advice;
pub mod assessment;
mod commands;
pub mod history;
pub mod record;
pub mod report;

pub use advice::{Action, Advice};
pub use assessment::{Assessment, LockSettings, assess};
pub use record::{Incident, IncidentFields, IncidentRequest, Severity, incident_request};
