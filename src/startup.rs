//! Wiring: `Application::build` binds the port and opens the database;
//! `run_until_stopped` serves until the shutdown future resolves, then drains
//! in-flight calls (bounded by the grace period) and closes the database.
use std::{future::Future, net::SocketAddr, sync::Arc};

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::{
    auth::{
        Guard, TokenVerifier,
        keys::{self, KeySetupError},
    },
    config::ServeSettings,
    db::{Database, DbError, embedded::EmbeddedPostgres},
    demo,
    metrics::{Metrics, MetricsError, rpc::RpcMetricsLayer},
    migration::{engine::Engine, rollout::Rollouts},
    operations::Operations,
    proto::{
        FILE_DESCRIPTOR_SET, migration_service_server::MigrationServiceServer,
        rollout_service_server::RolloutServiceServer,
    },
    rollout_service::RolloutService,
    server::{
        GrpcMigrationService, GrpcRolloutService,
        authn::Authenticate,
        health,
        tls::{self, TlsError},
    },
    service::MigrationService,
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
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeySetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("seeding the embedded default's demo failed: {0}")]
    Demo(#[from] crate::error::Error),
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
    verifier: Arc<TokenVerifier>,
    tls: Option<ServerTlsConfig>,
    engine: Engine,
    service: MigrationService,
    rollouts: RolloutService,
    metrics: Metrics,
    /// Cancelled at shutdown: the health probe and the executors stop.
    background: CancellationToken,
}

impl Application {
    /// Binds first (a busy port, the gRPC one or the metrics one, fails
    /// fast), reads keys and certificates, then opens the database (the
    /// embedded default also gets its demo), and builds the engine and the
    /// service over it. Nothing runs yet.
    pub async fn build(settings: ServeSettings) -> Result<Self, StartupError> {
        let addr = settings.listen_addr;
        let bind_error = |source| StartupError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let mut metrics = Metrics::build(settings.metrics_addr).await?;
        let tls = tls::server_config(&settings.tls)?;
        let embedded_dir = settings.database.database_url.is_none().then(|| {
            settings
                .database
                .data_dir
                .clone()
                .unwrap_or_else(EmbeddedPostgres::default_data_dir)
        });
        let keys = keys::resolve(&settings.auth, embedded_dir.as_deref())?;
        let database = Database::open(&settings.database).await?;
        if embedded_dir.is_some() {
            announce_demo(&database, keys.signing_secret.as_ref()).await?;
        }
        let background = CancellationToken::new();
        let pool = database.pool().clone();
        metrics.observe_pools(&[
            ("service", pool.clone()),
            ("admin", database.admin_pool().clone()),
        ]);
        let engine = Engine::new(
            pool.clone(),
            database.admin_pool().clone(),
            settings.engine.clone(),
            background.clone(),
            metrics.recorder().clone(),
        );
        let guard = Arc::new(Guard::new(
            pool.clone(),
            database.admin_pool().clone(),
            &settings.auth.steering_roles,
            &settings.auth.platform_roles,
        ));
        let rollouts = RolloutService::new(
            guard.clone(),
            Rollouts::new(
                pool.clone(),
                database.admin_pool().clone(),
                engine.clone(),
                background.clone(),
            ),
        );
        let operations = Operations::new(
            pool.clone(),
            database.admin_pool().clone(),
            database.schema().clone(),
            settings.engine.batch_lock_timeout_ms,
        );
        let service = MigrationService::new(pool, guard, engine.clone(), operations);
        Ok(Self {
            listener,
            local_addr,
            database,
            settings,
            verifier: Arc::new(keys.verifier),
            tls,
            engine,
            service,
            rollouts,
            metrics,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where Prometheus scrapes `/metrics` (HERA_METRICS_ADDR, its port 0
    /// resolved); None when unset.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.addr()
    }

    pub fn pool(&self) -> &PgPool {
        self.database.pool()
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The service the gRPC adapter calls, for a front end without a port
    /// (the CLI, tests).
    pub fn service(&self) -> &MigrationService {
        &self.service
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
            verifier,
            tls,
            engine,
            service,
            rollouts,
            mut metrics,
            background,
        } = self;
        let pool = database.pool().clone();

        let (reporter, health_service) = tonic_health::server::health_reporter();
        health::publish(&reporter, ServingStatus::NotServing).await;
        let probe = tokio::spawn(health::probe_database(
            pool.clone(),
            reporter,
            settings.health_probe_interval(),
            background.clone(),
            metrics.recorder().clone(),
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

        resume_interrupted_runs(&engine).await;
        let rollout_driver = rollouts.rollouts().clone();
        rollout_driver.adopt_orphans_periodically(engine.lease_check_interval());
        let migration_service = MigrationServiceServer::with_interceptor(
            GrpcMigrationService::new(service),
            Authenticate::new(verifier.clone()),
        );
        let rollout_service = RolloutServiceServer::with_interceptor(
            GrpcRolloutService::new(rollouts),
            Authenticate::new(verifier),
        );
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let stop_serving = CancellationToken::new();
        let scraping = metrics.serve(stop_serving.clone());
        let server = builder
            .trace_fn(telemetry::request_span)
            // Around every service, so that health and reflection calls and
            // refused (unauthenticated) calls are counted too.
            .layer(RpcMetricsLayer::new(
                metrics.meter(),
                &served_descriptor_sets(),
            ))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(migration_service)
            .add_service(rollout_service)
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
        // Executors finish the batch in flight; their runs stay RUNNING and the
        // next server resumes them.
        let drained = async {
            rollout_driver.stopped().await;
            engine.stopped().await;
        };
        if tokio::time::timeout(settings.shutdown_grace(), drained)
            .await
            .is_err()
        {
            tracing::warn!("a batch outlived the grace period; it rolls back when the pool closes");
        }
        let _ = probe.await;
        if let Some(scraping) = scraping {
            let _ = scraping.await;
        }
        metrics.shutdown().await;
        database.close().await;
        tracing::info!("stopped");
        match served {
            Ok(result) => result.map_err(StartupError::from),
            Err(join_error) => panic!("the gRPC server task panicked: {join_error}"),
        }
    }
}

/// Takes over the runs whose server is gone, now and then every lease check
/// interval: a run outlives the server that executed it.
async fn resume_interrupted_runs(engine: &Engine) {
    match engine.adopt_orphans().await {
        Ok(0) => {}
        Ok(adopted) => tracing::info!(adopted, "took over interrupted migration runs"),
        Err(error) => tracing::error!(%error, "looking for interrupted runs failed"),
    }
    engine.adopt_orphans_periodically();
}

/// The embedded default: seed its demo once, print its owner's token.
async fn announce_demo(
    database: &Database,
    secret: Option<&crate::config::Secret>,
) -> Result<(), StartupError> {
    let owner = demo::ensure(database.admin_pool()).await?;
    match (owner, secret) {
        (Some(owner), Some(secret)) => demo::announce(owner, secret),
        (None, _) => tracing::info!("no organization owner found: no demo token to print"),
        (Some(_), None) => {
            tracing::info!("tokens are RS256 here: mint the demo owner's token yourself")
        }
    }
    Ok(())
}

/// The services served, whose methods the RPC metrics name (any other path
/// is counted as unknown).
fn served_descriptor_sets() -> [&'static [u8]; 4] {
    [
        FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc's Status and error details, so that grpcurl and other
        // reflection clients print an error's BadRequest, ErrorInfo, ... in clear.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}
