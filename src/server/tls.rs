//! Optional TLS, and mutual TLS when a client CA is configured.
use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: cannot read {path} ({source})")]
pub struct TlsError {
    variable: &'static str,
    path: String,
    source: std::io::Error,
}

fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        variable,
        path: path.display().to_string(),
        source,
    })
}

/// `None` when TLS is not configured (clap guarantees cert and key come together).
pub fn server_config(settings: &TlsSettings) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read("HERA_TLS_CERT", cert)?, read("HERA_TLS_KEY", key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &settings.tls_client_ca {
        // With a client CA, a client certificate it signed is required.
        config = config.client_ca_root(Certificate::from_pem(read("HERA_TLS_CLIENT_CA", ca)?));
    }
    Ok(Some(config))
}
