//! The one error type of the service layer. It knows nothing of gRPC: the
//! adapter in `server::status` maps each variant to exactly one `tonic::Code`.
use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed or out of range; `field` names it.
    #[error("{field}: {reason}")]
    InvalidArgument {
        field: Cow<'static, str>,
        reason: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A capability declared in the API contract that is not built yet.
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A run's executor lost its lease to another server: its batch did not
    /// commit (see hera_migration_take_lease_v2).
    #[error("{0}")]
    Fenced(String),
    /// No run `id` in the caller's organization (NOT_FOUND, with a
    /// ResourceInfo naming it).
    #[error("migration_id: no migration {id} in organization {organization_id}")]
    RunNotFound {
        organization_id: uuid::Uuid,
        id: uuid::Uuid,
    },
    /// A refusal a client is expected to branch on: its status code and
    /// stable reason come from `kind`; `metadata` names what stood in the
    /// way (the active run, the current plan fingerprint), so that a program
    /// need not parse the message.
    #[error("{message}")]
    Refused {
        kind: Refusal,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    #[error("database error: {}", describe_database(.0))]
    Database(sqlx::Error),
}

/// The refusals with a reason of their own (`ErrorInfo.reason`), beyond the
/// reason every status code has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The organization has another run RUNNING or PAUSED (ABORTED).
    RunAlreadyActive,
    /// The request_id was used before with other fields (ALREADY_EXISTS).
    RequestIdReused,
    /// The plan is no longer the one the caller previewed (FAILED_PRECONDITION).
    PlanChanged,
    /// The caller is no active member of the organization (PERMISSION_DENIED;
    /// the same whether or not the organization exists).
    NotAMember,
    /// The caller's role may not perform the operation (PERMISSION_DENIED).
    RoleNotPermitted,
}

impl Error {
    pub fn refused(kind: Refusal, message: impl Into<String>) -> Self {
        Self::Refused {
            kind,
            message: message.into(),
            metadata: Vec::new(),
        }
    }

    /// A refusal naming `key` = `value` in its ErrorInfo's metadata.
    pub fn naming(mut self, key: &'static str, value: impl ToString) -> Self {
        if let Self::Refused { metadata, .. } = &mut self {
            metadata.push((key, value.to_string()));
        }
        self
    }

    /// A NOT_FOUND of either kind.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::RunNotFound { .. })
    }
}

/// The SQLSTATEs our SQL functions raise for what a caller asked (their
/// messages start with the field they are about: "batch_size: must be ..."),
/// mapped once, so that a check lives in SQL alone and the caller still gets
/// the right status: invalid_parameter_value, no_data_found,
/// object_not_in_prerequisite_state.
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        let Some(db) = error.as_database_error() else {
            return Self::Database(error);
        };
        let message = db.message().to_owned();
        match db.code().as_deref() {
            Some("22023") => match message.split_once(": ") {
                Some((field, reason)) if is_field_path(field) => {
                    Self::invalid(field.to_owned(), reason.to_owned())
                }
                _ => Self::invalid("request", message),
            },
            Some("P0002") => Self::NotFound(message),
            Some("55000") => Self::FailedPrecondition(message),
            _ => Self::Database(error),
        }
    }
}

/// "smart_code_mappings[1].target_smart_code", "batch_size": a request field.
fn is_field_path(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c))
}

/// A database error in the database's own words: its message, SQLSTATE, and
/// the constraint, table and detail it named.
fn describe_database(error: &sqlx::Error) -> String {
    let Some(db) = error.as_database_error() else {
        return error.to_string();
    };
    let mut text = db.message().to_owned();
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    let mut named = Vec::new();
    if let Some(code) = db.code() {
        named.push(format!("SQLSTATE {code}"));
    }
    if let Some(constraint) = db.constraint() {
        named.push(format!("constraint {constraint}"));
    }
    if let Some(table) = db.table() {
        named.push(format!("table {table}"));
    }
    if !named.is_empty() {
        text.push_str(&format!(" ({})", named.join(", ")));
    }
    if let Some(detail) = pg.and_then(|pg| pg.detail()) {
        text.push_str(&format!(": {detail}"));
    }
    text
}

/// SQLSTATEs of a database that went away under a session: the class
/// connection_exception (08), admin_shutdown, crash_shutdown,
/// cannot_connect_now (a restart in progress) and too_many_connections.
const UNAVAILABLE_STATES: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// Whether `error` says the database could not be reached (or dropped the
/// session), rather than that it refused what was asked: worth waiting out.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || UNAVAILABLE_STATES.contains(&code.as_ref())
        }),
        _ => false,
    }
}

impl Error {
    /// The database could not be reached: a restart, a failover, a severed
    /// connection. What was asked may succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(error) => database_unavailable(error),
            _ => false,
        }
    }

    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
