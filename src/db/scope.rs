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

/// A read-only transaction that sees the database as of its first statement
/// (REPEATABLE READ) for as long as it lasts: none of the writes committed
/// after it began, however long its reads take.
pub async fn begin_snapshot(
    pool: &PgPool,
    organization_id: Uuid,
) -> Result<OrgTransaction, sqlx::Error> {
    let tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    // Its first statement (setting the scope) takes the snapshot.
    scoped(tx, organization_id).await
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
