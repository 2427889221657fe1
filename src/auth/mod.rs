//! Identity and rights. A caller proves who they are with a JWT (`token`);
//! what they may do in an organization comes from the database
//! (`membership`), never from the token; `access` decides and records.
pub mod access;
pub mod keys;
pub mod membership;
pub mod operation;
pub mod platform;
pub mod token;

pub use access::{Access, Guard};
pub use operation::{Operation, Right};
pub use platform::PlatformAccess;
pub use token::{Caller, TokenVerifier};
