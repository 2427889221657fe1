//! The real server, on 127.0.0.1:0, over a test database, with clients.
use std::{net::SocketAddr, time::Duration};

use hera_migrate::{
    auth::token,
    config::{AuthSettings, DatabaseSettings, EngineSettings, ServeSettings, TlsSettings},
    proto::migration_service_client::MigrationServiceClient,
    startup::{Application, StartupError},
};
use sqlx::{PgPool, postgres::PgConnectOptions};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Request, metadata::MetadataValue, transport::Channel};
use uuid::Uuid;

/// The HS256 secret every test server verifies tokens with.
pub const TEST_SECRET: &str = "hera-migrate-test-secret";

/// A valid token for `user`.
pub fn token_for(user: Uuid) -> String {
    token::mint(TEST_SECRET.as_bytes(), user, Duration::from_secs(600)).unwrap()
}

/// `message` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// `message` on behalf of `user`, with a freshly minted token.
pub fn as_user<T>(message: T, user: Uuid) -> Request<T> {
    authorized(message, &token_for(user))
}
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

pub struct TestApp {
    pub addr: SocketAddr,
    /// The Prometheus endpoint, when the settings asked for one.
    pub metrics_addr: Option<SocketAddr>,
    /// The server's own pool (its role and row-level security included).
    pub service_pool: PgPool,
    stop: Option<oneshot::Sender<()>>,
    running: Option<JoinHandle<Result<(), StartupError>>>,
}

/// Settings as a test wants them: any free port, a fast health probe.
pub fn test_settings(database: PgConnectOptions) -> ServeSettings {
    ServeSettings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: None,
        database: DatabaseSettings {
            database_url: Some(database),
            data_dir: None,
            pool_size: 4,
        },
        health_probe_interval_ms: 100,
        shutdown_grace_secs: 2,
        auth: AuthSettings {
            jwt_secret: Some(TEST_SECRET.parse().unwrap()),
            jwt_public_key_file: None,
            steering_roles: vec!["ORG_OWNER".into(), "ORG_ADMIN".into()],
            platform_roles: vec!["PLATFORM_ADMIN".into(), "PLATFORM_OPERATOR".into()],
        },
        tls: TlsSettings::default(),
        engine: EngineSettings {
            lease_check_interval_ms: 200,
            ..EngineSettings::default()
        },
    }
}

impl TestApp {
    pub async fn spawn(database: PgConnectOptions) -> Self {
        Self::spawn_with(test_settings(database)).await
    }

    pub async fn spawn_with(settings: ServeSettings) -> Self {
        let app = Application::build(settings)
            .await
            .expect("the server starts");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let service_pool = app.pool().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            service_pool,
            stop: Some(stop),
            running: Some(running),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the server")
    }

    pub async fn client(&self) -> MigrationServiceClient<Channel> {
        MigrationServiceClient::new(self.channel().await)
    }

    pub async fn health(&self, service: &str) -> ServingStatus {
        let mut client = HealthClient::new(self.channel().await);
        let response = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check answers");
        response.into_inner().status()
    }

    /// Shuts the server down as SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        self.stop.take().map(|stop| stop.send(()));
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("the server task ends")
                .expect("the server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.take().map(|stop| stop.send(()));
    }
}
