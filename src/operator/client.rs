//! A client of a running server: the operator commands never touch the
//! database themselves, so they work wherever the API is reachable and are
//! held to the same rights as any caller.
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{Failure, args::Connection};
use crate::proto::{
    migration_service_client::MigrationServiceClient, rollout_service_client::RolloutServiceClient,
};

/// Adds the caller's bearer token to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

pub type Client = MigrationServiceClient<InterceptedService<Channel, Bearer>>;

/// Connects to `--server` (TLS with `--tls-ca` for https); UNAVAILABLE
/// (exit 3) when it does not answer.
pub async fn connect(connection: &Connection) -> Result<Client, Failure> {
    let (channel, bearer) = channel(connection).await?;
    Ok(MigrationServiceClient::with_interceptor(channel, bearer))
}

pub type RolloutClient = RolloutServiceClient<InterceptedService<Channel, Bearer>>;

/// A RolloutService client, reached as `connect` reaches the server.
pub async fn connect_rollouts(connection: &Connection) -> Result<RolloutClient, Failure> {
    let (channel, bearer) = channel(connection).await?;
    Ok(RolloutServiceClient::with_interceptor(channel, bearer))
}

async fn channel(connection: &Connection) -> Result<(Channel, Bearer), Failure> {
    let mut endpoint = Endpoint::from_shared(connection.server.clone())
        .map_err(|e| Failure::usage(format!("--server {}: {e}", connection.server)))?
        .connect_timeout(std::time::Duration::from_secs(5));
    if connection.server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(path) = &connection.tls_ca {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("--tls-ca {}: {e}", path.display())))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure::usage(format!("--tls-ca: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Failure::unavailable(format!(
            "the server at {} does not answer: {e}",
            connection.server
        ))
    })?;
    let token = match &connection.token {
        Some(token) => Some(
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| Failure::usage("--token: not a valid header value".to_owned()))?,
        ),
        None => None,
    };
    Ok((channel, Bearer(token)))
}
