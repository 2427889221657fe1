//! Every query the service runs is scoped to one organization: it runs in a
//! transaction that sets `app.current_org`, which the row-level security of an
//! owned schema enforces (so even a query that forgets its filter cannot
//! cross organizations).
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

pub type OrgTransaction = Transaction<'static, Postgres>;

pub async fn begin(pool: &PgPool, organization_id: Uuid) -> Result<OrgTransaction, sqlx::Error> {
    scoped(pool.begin().await?, organization_id).await
}

/// A read-only transaction: PostgreSQL itself refuses any write in it.
pub async fn begin_read_only(
    pool: &PgPool,
    organization_id: Uuid,
) -> Result<OrgTransaction, sqlx::Error> {
    scoped(pool.begin_with("BEGIN READ ONLY").await?, organization_id).await
}

async fn scoped(
    mut tx: OrgTransaction,
    organization_id: Uuid,
) -> Result<OrgTransaction, sqlx::Error> {
    sqlx::query("SELECT set_config('app.current_org', $1, true)")
        .bind(organization_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
