//! Every query the service runs is scoped to one organization: it runs in a
//! transaction that sets `app.current_org`, which the row-level security of an
//! owned schema enforces (so even a query that forgets its filter cannot
//! cross organizations).
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

pub type OrgTransaction = Transaction<'static, Postgres>;

pub async fn begin(pool: &PgPool, organization_id: Uuid) -> Result<OrgTransaction, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('app.current_org', $1, true)")
        .bind(organization_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
