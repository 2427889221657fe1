//! The generated API types (from `proto/hera/migration/v2`).
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("hera.migration.v2");

/// The encoded descriptor set of our protos, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hera_migration_descriptor.bin"));

/// The API's enum values carry their enum's name as a prefix
/// (`MIGRATION_STATE_RUNNING`, as buf's lint and protobuf's C++, Python and
/// Go scoping require); the service's own names do not (`RUNNING`). This
/// translates between the two.
pub trait ShortName: Sized {
    /// The value whose name without the prefix is `name` (`"RUNNING"`).
    fn from_short_name(name: &str) -> Option<Self>;
    /// The value's name without the prefix (`"RUNNING"`).
    fn short_name(&self) -> &'static str;
}

macro_rules! short_names {
    ($($enum:ty => $prefix:literal),+ $(,)?) => {$(
        impl ShortName for $enum {
            fn from_short_name(name: &str) -> Option<Self> {
                Self::from_str_name(&format!("{}{name}", $prefix))
            }
            fn short_name(&self) -> &'static str {
                let full = self.as_str_name();
                full.strip_prefix($prefix).unwrap_or(full)
            }
        }
    )+};
}

short_names! {
    MigrationPhase => "MIGRATION_PHASE_",
    MigrationState => "MIGRATION_STATE_",
    HealthStatus => "HEALTH_STATUS_",
    RiskLevel => "RISK_LEVEL_",
    FiscalPeriodState => "FISCAL_PERIOD_STATE_",
    ClosedPeriodPolicy => "CLOSED_PERIOD_POLICY_",
    CheckResult => "CHECK_RESULT_",
    MeasurementKind => "MEASUREMENT_KIND_",
    MigrationEventKind => "MIGRATION_EVENT_KIND_",
    ThrottleReason => "THROTTLE_REASON_",
    SizingReason => "SIZING_REASON_",
    PaceSignal => "PACE_SIGNAL_",
    SacredSixStatus => "SACRED_SIX_STATUS_",
    RollbackStatus => "ROLLBACK_STATUS_",
    Severity => "SEVERITY_",
    Operation => "OPERATION_",
    SchemaMode => "SCHEMA_MODE_",
}

/// Each RPC answers with a message of its own (buf's lint); those that answer
/// with an event or a run wrap it, and these unwrap it for a client.
macro_rules! wrappers {
    ($unwrap:ident, $field:ident: $inner:ty => $($outer:ty),+ $(,)?) => {$(
        impl From<$inner> for $outer {
            fn from($field: $inner) -> Self {
                Self { $field: Some($field) }
            }
        }
        impl $outer {
            /// The wrapped message (its default if the server sent none).
            pub fn $unwrap(self) -> $inner {
                self.$field.unwrap_or_default()
            }
        }
    )+};
}

wrappers!(into_progress, progress: MigrationProgress =>
    StartMigrationResponse, WatchMigrationResponse, RollbackMigrationResponse);
wrappers!(into_migration, migration: Migration =>
    GetMigrationResponse, PauseMigrationResponse, ResumeMigrationResponse,
    CancelMigrationResponse, UpdateMigrationResponse);
wrappers!(into_report, report: ValidationReport => ValidateMigrationResponse);

/// A message of one of the three event streams (StartMigration,
/// WatchMigration, RollbackMigration), for code that reads any of them.
pub trait ProgressEvent {
    fn into_progress(self) -> MigrationProgress;
}

macro_rules! progress_events {
    ($($outer:ty),+) => {$(
        impl ProgressEvent for $outer {
            fn into_progress(self) -> MigrationProgress {
                <$outer>::into_progress(self)
            }
        }
    )+};
}

progress_events!(
    StartMigrationResponse,
    WatchMigrationResponse,
    RollbackMigrationResponse
);
