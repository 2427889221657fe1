//! Where the token keys come from: `HERA_JWT_SECRET`, `HERA_JWT_PUBLIC_KEY_FILE`,
//! or, for the embedded default only, a secret generated once and kept in its
//! data directory (so tokens stay valid across restarts).
use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::token::{KeyError, TokenVerifier};
use crate::config::{AuthSettings, Secret};

const SECRET_FILE: &str = "jwt-secret";

#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "HERA_JWT_SECRET: a server given DATABASE_URL needs HERA_JWT_SECRET or HERA_JWT_PUBLIC_KEY_FILE to verify callers"
    )]
    Missing,
    #[error("HERA_JWT_PUBLIC_KEY_FILE: cannot read {path} ({source})")]
    PublicKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HERA_DATA_DIR: cannot keep the generated token secret in {path} ({source})")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The token verifier, and the HS256 secret when there is one (to mint tokens).
pub struct Keys {
    pub verifier: TokenVerifier,
    pub signing_secret: Option<Secret>,
}

/// `embedded_data_dir` is the embedded default's directory, or `None` when a
/// DATABASE_URL was given (then a secret or key must be configured).
pub fn resolve(
    auth: &AuthSettings,
    embedded_data_dir: Option<&Path>,
) -> Result<Keys, KeySetupError> {
    let public_key = auth
        .jwt_public_key_file
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| KeySetupError::PublicKeyFile {
                path: path.clone(),
                source,
            })
        })
        .transpose()?;
    let secret = match (&auth.jwt_secret, embedded_data_dir) {
        (Some(secret), _) => Some(secret.clone()),
        (None, Some(dir)) if public_key.is_none() => Some(embedded_secret(dir)?),
        (None, _) => None,
    };
    if secret.is_none() && public_key.is_none() {
        return Err(KeySetupError::Missing);
    }
    let verifier = TokenVerifier::new(
        secret.as_ref().map(|s| s.expose().as_bytes()),
        public_key.as_deref(),
    )?;
    Ok(Keys {
        verifier,
        signing_secret: secret,
    })
}

/// The embedded default's secret, generated on first use.
pub fn embedded_secret(data_dir: &Path) -> Result<Secret, KeySetupError> {
    let path = data_dir.join(SECRET_FILE);
    let file_error = |source| KeySetupError::SecretFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok(text.trim().parse().expect("a non-empty secret"));
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(file_error(error)),
    }
    std::fs::create_dir_all(data_dir).map_err(file_error)?;
    // Two v4 UUIDs: 244 bits from the operating system's random source.
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(file_error)?;
    file.write_all(secret.as_bytes()).map_err(file_error)?;
    Ok(secret.parse().expect("a non-empty secret"))
}

/// The embedded default's secret if one was generated already.
pub fn existing_embedded_secret(data_dir: &Path) -> Option<Secret> {
    let text = std::fs::read_to_string(data_dir.join(SECRET_FILE)).ok()?;
    text.trim().parse().ok()
}
