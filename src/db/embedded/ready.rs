//! Waiting until the server accepts connections, and the database `hera`.
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::time::Instant;

use super::layout::Layout;
use super::{DATABASE, EmbeddedError, POLL_INTERVAL};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A single attempt may hang while the server starts; it must not use up the
/// whole wait.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls a connection with `options` until the server accepts one. Before each
/// attempt `gone` says whether the server has died, with the error to report.
pub(super) async fn wait_ready(
    layout: &Layout,
    options: &PgConnectOptions,
    mut gone: impl FnMut() -> Option<EmbeddedError>,
) -> Result<PgConnection, EmbeddedError> {
    let started = Instant::now();
    let deadline = started + READY_TIMEOUT;
    loop {
        if let Some(error) = gone() {
            return Err(error);
        }
        let attempt =
            CONNECT_ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let last_error =
            match tokio::time::timeout(attempt, PgConnection::connect_with(options)).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => e.to_string(),
                Err(_) => String::from("connection attempt timed out"),
            };
        if Instant::now() >= deadline {
            return Err(EmbeddedError::NotReady {
                socket_dir: layout.socket_dir.clone(),
                waited: started.elapsed(),
                last_error,
                log: layout.log_file.clone(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Creates the database `hera` unless it exists (tolerating a concurrent create).
pub(super) async fn ensure_database(mut conn: PgConnection) -> Result<(), EmbeddedError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
    if !exists {
        match sqlx::query("CREATE DATABASE hera").execute(&mut conn).await {
            Ok(_) => tracing::info!(database = DATABASE, "created database"),
            // duplicate_database, or the unique index when racing another create.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(EmbeddedError::CreateDatabase(e)),
        }
    }
    let _ = conn.close().await;
    Ok(())
}
