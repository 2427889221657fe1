//! The one place a request is decoded: each proto message becomes the
//! organization it acts on and checked domain values, or INVALID_ARGUMENT
//! naming the first bad field, before the caller's rights are looked at.
use uuid::Uuid;

use crate::{
    auth::Operation,
    error::{Error, Result},
    incidents::{self, IncidentFields, IncidentRequest},
    migration::{
        engine::{self, AliasRequest, Control, RollbackRequest, StartRequest, UpdateRequest},
        input,
        preview::PreviewQuery,
        run::{RunState, store},
        signals::{Action, Setting, Signal},
    },
    operations::{Kind, PerformanceRequest},
    proto::{self, ClosedPeriodPolicy, MeasurementKind, MigrationState, ShortName},
    service::ListQuery,
};

/// A request decoded: the organization it acts on and what it asks.
pub struct Decoded<T> {
    pub organization_id: Uuid,
    pub request: T,
}

fn org(value: &str) -> Result<Uuid> {
    input::id("organization_id", value)
}

/// A request naming a run: its organization and the run.
pub fn run(organization_id: &str, migration_id: &str) -> Result<(Uuid, Uuid)> {
    Ok((
        org(organization_id)?,
        input::id("migration_id", migration_id)?,
    ))
}

/// Whether the closed-period policy is POST_TO_OPEN_PERIOD; a number that is
/// no ClosedPeriodPolicy is refused naming the field (prost would read it
/// as the default, SKIP).
fn post_to_open_period(value: i32) -> Result<bool> {
    match ClosedPeriodPolicy::try_from(value) {
        Ok(policy) => Ok(policy == ClosedPeriodPolicy::PostToOpenPeriod),
        Err(_) => Err(Error::invalid(
            "closed_period_policy",
            format!(
                "{value} is not a ClosedPeriodPolicy (CLOSED_PERIOD_POLICY_SKIP or CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD)"
            ),
        )),
    }
}

/// The states asked for, UNSPECIFIED left out; a number that is no
/// MigrationState is refused naming its entry (prost would drop it, and a
/// listing of only such states would list every run).
fn states(values: &[i32]) -> Result<Vec<MigrationState>> {
    let mut asked = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match MigrationState::try_from(*value) {
            Ok(MigrationState::Unspecified) => {}
            Ok(state) => asked.push(state),
            Err(_) => {
                return Err(Error::invalid(
                    format!("states[{index}]"),
                    format!("{value} is not a MigrationState"),
                ));
            }
        }
    }
    Ok(asked)
}

/// Signal settings as the engine checks them; an unknown enum number is
/// refused here, naming its field.
fn signals(settings: &[proto::SignalSetting]) -> Result<Vec<(Option<Signal>, Setting)>> {
    settings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let signal = match proto::PaceSignal::try_from(s.signal) {
                Ok(proto::PaceSignal::Unspecified) => None,
                Ok(signal) => Signal::parse(signal.short_name()),
                Err(_) => {
                    return Err(Error::invalid(
                        format!("signals[{i}].signal"),
                        format!("{} is not a PaceSignal", s.signal),
                    ));
                }
            };
            let action = match proto::SignalAction::try_from(s.action) {
                Ok(proto::SignalAction::Unspecified) => None,
                Ok(proto::SignalAction::SlowDown) => Some(Action::SlowDown),
                Ok(proto::SignalAction::Hold) => Some(Action::Hold),
                Err(_) => {
                    return Err(Error::invalid(
                        format!("signals[{i}].action"),
                        format!("{} is not a SignalAction", s.action),
                    ));
                }
            };
            // Listing a signal enables it unless it says disabled.
            let setting = Setting {
                enabled: Some(!s.disabled),
                threshold: s.threshold,
                action,
                hold_ms: s.hold_ms,
            };
            Ok((signal, setting))
        })
        .collect()
}

fn mappings(mappings: &[proto::SmartCodeMapping]) -> impl Iterator<Item = (String, String)> + '_ {
    mappings
        .iter()
        .map(|m| (m.source_smart_code.clone(), m.target_smart_code.clone()))
}

pub fn preview(message: &proto::PreviewCandidatesRequest) -> Result<Decoded<PreviewQuery>> {
    let organization_id = org(&message.organization_id)?;
    let post_to_open_period = post_to_open_period(message.closed_period_policy)?;
    Ok(Decoded {
        organization_id,
        request: PreviewQuery::parse(
            &message.from_date,
            &message.to_date,
            message.batch_limit,
            mappings(&message.smart_code_mappings),
            &message.candidate_statuses,
            post_to_open_period,
        )?,
    })
}

pub fn start(message: &proto::StartMigrationRequest) -> Result<Decoded<StartRequest>> {
    let organization_id = org(&message.organization_id)?;
    Ok(Decoded {
        organization_id,
        request: migration(message)?,
    })
}

/// A StartMigrationRequest's migration, its organization aside.
pub fn migration(message: &proto::StartMigrationRequest) -> Result<StartRequest> {
    let post_to_open_period = post_to_open_period(message.closed_period_policy)?;
    engine::start_request(engine::StartFields {
        from_date: &message.from_date,
        to_date: &message.to_date,
        batch_size: message.batch_size,
        mappings: mappings(&message.smart_code_mappings).collect(),
        candidate_statuses: &message.candidate_statuses,
        request_id: &message.request_id,
        expected_plan_fingerprint: &message.expected_plan_fingerprint,
        post_to_open_period,
        max_transactions_per_second: message.max_transactions_per_second,
        dry_run: message.dry_run,
        target_batch_ms: message.target_batch_ms,
        min_batch_size: message.min_batch_size,
        max_batch_size: message.max_batch_size,
        signals: signals(&message.signals)?,
    })
}

pub fn list(message: &proto::ListMigrationsRequest) -> Result<Decoded<ListQuery>> {
    let organization_id = org(&message.organization_id)?;
    let asked = states(&message.states)?;
    let states: Vec<RunState> = asked
        .iter()
        .filter_map(|state| RunState::parse(state.short_name()))
        .collect();
    Ok(Decoded {
        organization_id,
        request: ListQuery {
            nothing: !asked.is_empty() && states.is_empty(),
            states,
            page_size: store::page_size(message.page_size)?,
            after: store::PageToken::decode(&message.page_token)?,
        },
    })
}

/// Pause, resume or cancel.
pub fn control(
    organization_id: &str,
    migration_id: &str,
    control: Control,
) -> Result<Decoded<(Uuid, Control)>> {
    let (organization_id, id) = run(organization_id, migration_id)?;
    Ok(Decoded {
        organization_id,
        request: (id, control),
    })
}

pub fn update(message: &proto::UpdateMigrationRequest) -> Result<Decoded<(Uuid, UpdateRequest)>> {
    let (organization_id, id) = run(&message.organization_id, &message.migration_id)?;
    Ok(Decoded {
        organization_id,
        request: (
            id,
            engine::update_request(engine::UpdateFields {
                batch_size: message.batch_size,
                max_transactions_per_second: message.max_transactions_per_second,
                batch_delay_ms: message.batch_delay_ms,
                target_batch_ms: message.target_batch_ms,
                min_batch_size: message.min_batch_size,
                max_batch_size: message.max_batch_size,
                signals: signals(&message.signals)?,
            })?,
        ),
    })
}

pub fn aliases(message: &proto::ApplyReportingAliasesRequest) -> Result<Decoded<AliasRequest>> {
    Ok(Decoded {
        organization_id: org(&message.organization_id)?,
        request: engine::alias_request(
            &message.migration_id,
            mappings(&message.smart_code_mappings),
            &message.request_id,
            message.batch_size,
            message.max_transactions_per_second,
        )?,
    })
}

pub fn rollback(
    message: &proto::RollbackMigrationRequest,
) -> Result<Decoded<(Uuid, RollbackRequest)>> {
    let (organization_id, id) = run(&message.organization_id, &message.migration_id)?;
    Ok(Decoded {
        organization_id,
        request: (
            id,
            engine::rollback_request(engine::RollbackFields {
                reason: &message.reason,
                request_id: &message.request_id,
                force: message.force,
                max_transactions_per_second: message.max_transactions_per_second,
                batch_delay_ms: message.batch_delay_ms,
            })?,
        ),
    })
}

/// CheckSecurity: the RPC whose right is asked about (StartMigration when empty).
pub fn check_security(message: &proto::CheckSecurityRequest) -> Result<Decoded<Operation>> {
    let asked = match proto::Operation::try_from(message.operation) {
        Ok(proto::Operation::Unspecified) => Operation::StartMigration,
        Ok(asked) => Operation::from_name(&camel_case(asked.short_name()))
            .expect("every proto Operation names an RPC"),
        Err(_) => {
            return Err(Error::invalid(
                "operation",
                format!("{} is not an Operation", message.operation),
            ));
        }
    };
    Ok(Decoded {
        organization_id: org(&message.organization_id)?,
        request: asked,
    })
}

/// "START_MIGRATION" -> "StartMigration": an RPC's name from its enum value.
fn camel_case(screaming: &str) -> String {
    screaming
        .split('_')
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .into_iter()
                .chain(chars.flat_map(char::to_lowercase))
        })
        .collect()
}

/// MeasurePerformance: the kind (UNSPECIFIED is BASELINE), the sample
/// batch's size, the samples, the regression threshold.
pub fn performance(
    message: &proto::MeasurePerformanceRequest,
) -> Result<Decoded<PerformanceRequest>> {
    let organization_id = org(&message.organization_id)?;
    let kind = match MeasurementKind::try_from(message.kind) {
        Ok(MeasurementKind::Test) => Kind::Test,
        Ok(MeasurementKind::Baseline | MeasurementKind::Unspecified) => Kind::Baseline,
        Err(_) => {
            return Err(Error::invalid(
                "kind",
                format!(
                    "{} is not a MeasurementKind (MEASUREMENT_KIND_BASELINE or MEASUREMENT_KIND_TEST)",
                    message.kind
                ),
            ));
        }
    };
    Ok(Decoded {
        organization_id,
        request: PerformanceRequest::parse(
            kind,
            message.batch_size,
            message.samples,
            message.regression_threshold,
        )?,
    })
}

pub fn incident(message: &proto::DocumentIncidentRequest) -> Result<Decoded<IncidentRequest>> {
    Ok(Decoded {
        organization_id: org(&message.organization_id)?,
        request: incidents::incident_request(IncidentFields {
            migration_id: &message.migration_id,
            request_id: &message.request_id,
            title: &message.title,
            description: &message.description,
            severity: severity(message.severity)?,
        })?,
    })
}

/// The severity as the incidents module reads it ("SEV2"; "" when unspecified,
/// which it refuses as missing).
fn severity(value: i32) -> Result<&'static str> {
    match proto::Severity::try_from(value) {
        Ok(proto::Severity::Unspecified) => Ok(""),
        Ok(severity) => Ok(severity.short_name()),
        Err(_) => Err(Error::invalid(
            "severity",
            format!("{value} is not a Severity (SEVERITY_SEV1 to SEVERITY_SEV4)"),
        )),
    }
}

/// The organization of a request that names nothing else.
pub fn organization(organization_id: &str) -> Result<Uuid> {
    org(organization_id)
}
