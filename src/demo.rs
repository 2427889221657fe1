//! The embedded default's demo: on its first start it seeds a small demo
//! organization, and every start prints a ready token for the demo owner, so
//! that the README's grpcurl examples work as printed.
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    auth::token,
    config::Secret,
    error::Result,
    seed::{self, SeedParams},
};

const DEMO_OWNER: &str = include_str!("../sql/queries/demo_owner.sql");
/// How long the printed token stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct DemoOwner {
    pub organization_id: Uuid,
    pub user_id: Uuid,
}

/// Seeds the demo into an empty database, then finds its owner.
pub async fn ensure(admin: &PgPool) -> Result<Option<DemoOwner>> {
    let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM core_organizations)")
        .fetch_one(admin)
        .await?;
    if empty {
        tracing::info!("empty embedded database: seeding a demo organization");
        seed::seed_demo(admin, &demo_params()).await?;
    }
    let owner: Option<(Uuid, Uuid)> = sqlx::query_as(DEMO_OWNER).fetch_optional(admin).await?;
    Ok(owner.map(|(organization_id, user_id)| DemoOwner {
        organization_id,
        user_id,
    }))
}

fn demo_params() -> SeedParams {
    SeedParams {
        organizations: 1,
        transactions: 1000,
        lines: 3,
        from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
        to: chrono::NaiveDate::from_ymd_opt(2024, 12, 31).expect("a date"),
        seed: 42,
    }
}

/// Prints the shell lines the README's examples expect.
pub fn announce(owner: DemoOwner, secret: &Secret) {
    match token::mint(secret.expose().as_bytes(), owner.user_id, TOKEN_TTL) {
        Ok(token) => println!(
            "# hera-migrate demo owner {user} of organization {org} (token valid 24h):\n\
             export HERA_ORG={org}\nexport HERA_TOKEN={token}",
            user = owner.user_id,
            org = owner.organization_id,
        ),
        Err(error) => tracing::warn!(%error, "cannot mint the demo owner's token"),
    }
}
