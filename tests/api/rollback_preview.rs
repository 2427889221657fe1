//! PreviewRollback: what a rollback would do, read-only, and the risks an
//! operator weighs; its counts are what the rollback then does.
use hera_migrate::proto::*;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    as_user,
    fixtures::row_counts,
    reason,
    runs::{self, Client, Seeded, migrate, rollback, rolled_back, seeded},
};

async fn preview(client: &mut Client, s: &Seeded, id: &str) -> PreviewRollbackResponse {
    let request = PreviewRollbackRequest {
        organization_id: s.org.to_string(),
        migration_id: id.to_owned(),
    };
    client
        .preview_rollback(as_user(request, s.staff))
        .await
        .unwrap()
        .into_inner()
}

/// A business posting after the run that names one of its reposts by code.
async fn post_referencing_a_repost(pool: &PgPool, s: &Seeded, id: &str) -> (Uuid, Uuid) {
    let (repost, code): (Uuid, String) = sqlx::query_as(
        "SELECT id, transaction_code FROM universal_transactions
          WHERE metadata ->> 'migration_id' = $1 AND metadata ? 'original_transaction_id'
          ORDER BY id LIMIT 1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    let posting: Uuid = sqlx::query_scalar(
        "INSERT INTO universal_transactions (organization_id, transaction_type, transaction_code,
             transaction_status, smart_code, reference_number, metadata, created_by, updated_by)
         VALUES ($1, 'PAYMENT', 'PAY-' || gen_random_uuid(), 'posted', 'HERA.SALON.POS.TXN.PAYMENT.v2',
                 $2, '{}', $3, $3)
         RETURNING id",
    )
    .bind(s.org)
    .bind(&code)
    .bind(s.owner)
    .fetch_one(pool)
    .await
    .unwrap();
    (posting, repost)
}

async fn in_effect(pool: &PgPool, id: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE metadata ->> 'migration_run_id' = $1
                                   AND NOT metadata ? 'reversal_of' AND transaction_status = 'reversed'),
                count(*) FILTER (WHERE coalesce(transaction_status, '') <> 'voided'
                                   AND ((metadata ->> 'migration_run_id' = $1 AND metadata ? 'reversal_of')
                                        OR (metadata ->> 'migration_id' = $1 AND metadata ? 'original_transaction_id'))),
                count(*) FILTER (WHERE metadata ->> 'alias_migration_id' = $1)
           FROM universal_transactions",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rollback_preview_counts_what_the_rollback_then_does_and_names_a_dependent_posting() {
    let s = seeded(120).await;
    let mut client = s.app.client().await;
    let id = migrate(&s, &mut client, 25).await;
    let applied = client
        .apply_reporting_aliases(as_user(runs::aliases(s.org, &id, "a-1"), s.owner))
        .await
        .unwrap()
        .into_inner();
    assert!(
        applied.total_aliased > 0,
        "the seed closes periods: {applied:?}"
    );
    let (posting, repost) = post_referencing_a_repost(&s.pool, &s, &id).await;

    let before = row_counts(&s.pool).await;
    let plan = preview(&mut client, &s, &id).await;
    assert_eq!(
        row_counts(&s.pool).await,
        before,
        "a preview writes nothing"
    );
    let (originals, copies, aliases) = in_effect(&s.pool, &id).await;
    assert_eq!(
        (
            plan.originals_to_restore,
            plan.copies_to_void,
            plan.aliases_to_remove
        ),
        (originals, copies, aliases)
    );
    assert_eq!((copies, aliases), (2 * originals, applied.total_aliased));
    assert_eq!(plan.state(), MigrationState::Succeeded);
    assert!(plan.estimated_duration_ms > 0, "{}", plan.estimate_basis);
    assert_eq!(
        plan.periods.iter().map(|p| p.transactions).sum::<i64>(),
        originals
    );
    assert_eq!(plan.dependent_posting_count, 1, "{plan:?}");
    let dependent = &plan.dependent_postings[0];
    assert_eq!(
        (
            dependent.transaction_id.as_str(),
            dependent.references_transaction_id.as_str(),
            dependent.reference.as_str()
        ),
        (
            posting.to_string().as_str(),
            repost.to_string().as_str(),
            "reference_number"
        )
    );
    assert!(
        plan.risks.iter().any(|r| r.contains("1 business posting")),
        "{:?}",
        plan.risks
    );

    let events = rolled_back(&mut client, rollback(s.org, &id, "rb-1"), s.owner).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::RolledBack, "{last:?}");
    assert_eq!(last.transactions_migrated, plan.originals_to_restore);
    assert_eq!(in_effect(&s.pool, &id).await, (0, 0, 0));
    let voided: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM universal_transactions
          WHERE transaction_status = 'voided'
            AND (metadata ->> 'migration_run_id' = $1 OR metadata ->> 'migration_id' = $1)",
    )
    .bind(&id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        voided, plan.copies_to_void,
        "what the preview said it would void"
    );

    let after = preview(&mut client, &s, &id).await;
    assert_eq!(
        (
            after.originals_to_restore,
            after.copies_to_void,
            after.aliases_to_remove
        ),
        (0, 0, 0)
    );
    assert!(
        after
            .risks
            .iter()
            .any(|r| r.contains("would change nothing")),
        "{:?}",
        after.risks
    );
    s.app.stop().await;
}

#[tokio::test]
async fn an_unknown_run_is_not_found_and_a_bad_id_names_the_field() {
    let s = seeded(5).await;
    let mut client = s.app.client().await;
    let ask = |migration_id: String| {
        as_user(
            PreviewRollbackRequest {
                organization_id: s.org.to_string(),
                migration_id,
            },
            s.owner,
        )
    };
    let unknown = client
        .preview_rollback(ask(Uuid::new_v4().to_string()))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "MIGRATION_NOT_FOUND");
    let bad = client
        .preview_rollback(ask("not-a-uuid".into()))
        .await
        .expect_err("bad");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("migration_id:"),
        "{}",
        bad.message()
    );
    s.app.stop().await;
}
