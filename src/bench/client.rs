//! The bench as a client of its server: the generated gRPC client, each
//! request carrying the bearer token of the organization's owner.
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tonic::{Request, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use uuid::Uuid;

use crate::{
    auth::token,
    proto::migration_service_client::MigrationServiceClient,
    seed::{SeedReport, SeededOrganization},
};

pub type Client = MigrationServiceClient<Channel>;

/// Tokens outlive the longest full run (about half an hour) with room to spare.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// How long a fresh server may take to report SERVING.
const SERVING_WITHIN: Duration = Duration::from_secs(30);

/// An organization the bench acts on, as its owner.
#[derive(Clone)]
pub struct Owner {
    pub org: Uuid,
    pub token: String,
}

impl Owner {
    pub fn of(organization: &SeededOrganization, secret: &str) -> anyhow::Result<Self> {
        let owner = organization
            .users
            .iter()
            .find(|user| user.role == "ORG_OWNER")
            .context("a seeded organization has an owner")?;
        Ok(Self {
            org: organization.id,
            token: token::mint(secret.as_bytes(), owner.id, TOKEN_TTL)?,
        })
    }

    /// Every organization of a seed, in order.
    pub fn all(report: &SeedReport, secret: &str) -> anyhow::Result<Vec<Self>> {
        report
            .organizations
            .iter()
            .map(|organization| Self::of(organization, secret))
            .collect()
    }

    /// `message` with this owner's `authorization: Bearer`.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let value = MetadataValue::try_from(format!("Bearer {}", self.token))
            .expect("a token is a valid header value");
        request.metadata_mut().insert("authorization", value);
        request
    }
}

/// A client of the server at `endpoint`, once its health says SERVING.
pub async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(endpoint.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let deadline = Instant::now() + SERVING_WITHIN;
    let mut health = HealthClient::new(channel.clone());
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|answer| answer.into_inner().status());
        if matches!(status, Ok(ServingStatus::Serving)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server at {endpoint} is not SERVING within {SERVING_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(MigrationServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}
