//! Wiring: `Application::build` binds the port and opens the database;
//! `run_until_stopped` serves until the shutdown future resolves, then drains
//! in-flight calls (bounded by the grace period) and closes the database.
use std::{future::Future, net::SocketAddr};

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::{
    config::ServeSettings,
    db::{Database, DbError},
    proto::{FILE_DESCRIPTOR_SET, migration_service_server::MigrationServiceServer},
    server::{GrpcMigrationService, health},
    telemetry,
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("HERA_LISTEN_ADDR: cannot listen on {addr} ({source})")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    database: Database,
    settings: ServeSettings,
}

impl Application {
    /// Binds first (a busy port fails fast), then opens the database.
    pub async fn build(settings: ServeSettings) -> Result<Self, StartupError> {
        let addr = settings.listen_addr;
        let bind_error = |source| StartupError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let database = Database::open(&settings.database).await?;
        Ok(Self {
            listener,
            local_addr,
            database,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn pool(&self) -> &PgPool {
        self.database.pool()
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartupError> {
        let Self {
            listener,
            local_addr,
            database,
            settings,
        } = self;
        let pool = database.pool().clone();

        let (reporter, health_service) = tonic_health::server::health_reporter();
        health::publish(&reporter, ServingStatus::NotServing).await;
        let background = CancellationToken::new();
        let probe = tokio::spawn(health::probe_database(
            pool.clone(),
            reporter,
            settings.health_probe_interval(),
            background.clone(),
        ));

        // grpcurl 1.8 speaks only v1alpha; newer clients use v1. Each lists
        // the other too, so every client sees the whole server.
        use tonic_reflection::pb::{v1, v1alpha};
        let reflection_v1 = reflection()
            .register_encoded_file_descriptor_set(v1alpha::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = reflection()
            .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let stop_serving = CancellationToken::new();
        let server = Server::builder()
            .trace_fn(telemetry::request_span)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(MigrationServiceServer::new(GrpcMigrationService::new(pool)))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stop_serving.clone().cancelled_owned(),
            );
        let mut server = tokio::spawn(server);
        tracing::info!(%local_addr, "hera-migrate listening");

        let served = tokio::select! {
            result = &mut server => Some(result),
            () = shutdown => None,
        };
        tracing::info!("shutting down");
        stop_serving.cancel();
        background.cancel();
        let served = match served {
            Some(result) => result,
            None => match tokio::time::timeout(settings.shutdown_grace(), &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("in-flight calls outlived the grace period; cutting them");
                    server.abort();
                    Ok(Ok(()))
                }
            },
        };
        let _ = probe.await;
        database.close().await;
        tracing::info!("stopped");
        match served {
            Ok(result) => result.map_err(StartupError::from),
            Err(join_error) => panic!("the gRPC server task panicked: {join_error}"),
        }
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
