//! The lease on executing an organization's runs: a session advisory lock held
//! on a connection of its own. PostgreSQL releases it when the session ends,
//! so a server that dies (kill -9, or its host gone, once the keepalives below
//! give up) frees its runs for another server, and no clock is involved.
//!
//! A lease says who may execute; it cannot stop a server that lost it
//! without noticing from committing one more batch. That is the fence's job:
//! each executor that takes a run moves the run's lease generation on
//! (`hera_migration_take_lease_v2`), and a batch commits only while the run's
//! row still holds its executor's generation (see executor/batch.rs).
use sqlx::{Connection, PgConnection, PgPool, postgres::PgConnectOptions};
use uuid::Uuid;

use crate::error::Result;

const TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('hera-migrate:executor:' || $1::text, 0))";
/// A session on a vanished host is noticed within about 25 s (the defaults
/// would wait two hours). No effect on a Unix socket, where it is not needed.
const KEEPALIVES: &str = "SELECT set_config('tcp_keepalives_idle', '10', false),
                                 set_config('tcp_keepalives_interval', '5', false),
                                 set_config('tcp_keepalives_count', '3', false)";

pub struct Lease {
    connection: PgConnection,
    options: PgConnectOptions,
    organization_id: Uuid,
}

/// What became of a lease whose session may have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regained {
    /// Its session never ended.
    Kept,
    /// Its session ended and a new one holds the lease again: another
    /// server may have executed batches meanwhile (the fence must move on).
    Retaken,
    /// Another server's session holds it now.
    Lost,
}

impl Lease {
    /// The lease on `organization_id`'s runs, unless a live session holds it.
    pub async fn try_acquire(admin: &PgPool, organization_id: Uuid) -> Result<Option<Self>> {
        let options = admin.connect_options().as_ref().clone();
        let Some(connection) = locked_session(&options, organization_id).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            connection,
            options,
            organization_id,
        }))
    }

    /// Whether the lease still holds: its session is alive. After a database
    /// restart it is not, and another server may already have taken over.
    pub async fn held(&mut self) -> bool {
        self.connection.ping().await.is_ok()
    }

    /// The lease again after its session may have ended (a database restart,
    /// a severed connection); an error while the database does not answer.
    pub async fn regain(&mut self) -> Result<Regained> {
        if self.held().await {
            return Ok(Regained::Kept);
        }
        match locked_session(&self.options, self.organization_id).await? {
            Some(connection) => {
                let dead = std::mem::replace(&mut self.connection, connection);
                let _ = dead.close_hard().await;
                Ok(Regained::Retaken)
            }
            None => Ok(Regained::Lost),
        }
    }

    /// Gives the lease up (ending the session releases the lock).
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}

/// A new session holding the organization's lock, unless another holds it.
async fn locked_session(
    options: &PgConnectOptions,
    organization_id: Uuid,
) -> Result<Option<PgConnection>> {
    let mut connection = PgConnection::connect_with(options).await?;
    sqlx::query(KEEPALIVES).execute(&mut connection).await?;
    let acquired: bool = sqlx::query_scalar(TRY_LOCK)
        .bind(organization_id)
        .fetch_one(&mut connection)
        .await?;
    if acquired {
        Ok(Some(connection))
    } else {
        let _ = connection.close().await;
        Ok(None)
    }
}
