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
    PermissionDenied(String),
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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
