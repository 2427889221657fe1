//! The lease on executing an organization's runs: a session advisory lock held
//! on a connection of its own. PostgreSQL releases it when the session ends,
//! so a server that dies (kill -9, or its host gone, once the keepalives below
//! give up) frees its runs for another server, and no clock is involved.
use sqlx::{Connection, PgConnection, PgPool};
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
}

impl Lease {
    /// The lease on `organization_id`'s runs, unless a live session holds it.
    pub async fn try_acquire(admin: &PgPool, organization_id: Uuid) -> Result<Option<Self>> {
        let mut connection = PgConnection::connect_with(&admin.connect_options()).await?;
        sqlx::query(KEEPALIVES).execute(&mut connection).await?;
        let acquired: bool = sqlx::query_scalar(TRY_LOCK)
            .bind(organization_id)
            .fetch_one(&mut connection)
            .await?;
        if acquired {
            Ok(Some(Self { connection }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    /// Whether the lease still holds: its session is alive. After a database
    /// restart it is not, and another server may already have taken over.
    pub async fn held(&mut self) -> bool {
        self.connection.ping().await.is_ok()
    }

    /// Gives the lease up (ending the session releases the lock).
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}
