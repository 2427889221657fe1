//! The audit chain: every audit row and run event the service writes for an
//! organization links to the one before it, so VerifyAuditChain recomputes
//! the chain and names the first entry edited, re-linked or deleted since;
//! validation reports and incidents carry the anchor an auditor keeps.
use hera_migrate::proto::*;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{
    as_user,
    runs::{Client, Seeded, collect, seeded, start, validate},
};

async fn verify(client: &mut Client, s: &Seeded) -> VerifyAuditChainResponse {
    client
        .verify_audit_chain(as_user(
            VerifyAuditChainRequest {
                organization_id: s.org.to_string(),
            },
            s.staff,
        ))
        .await
        .expect("verified")
        .into_inner()
}

/// The entries of the organization's chain as the tables hold them.
async fn chained(pool: &PgPool, org: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM universal_transactions
                  WHERE organization_id = $1 AND metadata ? 'audit_chain')
              + (SELECT count(*) FROM universal_transaction_lines
                  WHERE organization_id = $1 AND line_data ? 'audit_chain')",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn migrated(client: &mut Client, s: &Seeded) -> String {
    let stream = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .unwrap()
        .into_inner();
    let events = collect(stream).await;
    assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
    events[0].migration_id.clone()
}

#[tokio::test]
async fn a_run_its_validation_and_an_incident_form_one_chain_an_edit_breaks_at_that_row() {
    let s = seeded(200).await;
    let mut client = s.app.client().await;
    let id = migrated(&mut client, &s).await;
    let report = validate(&mut client, s.org, s.owner, &id).await;
    let anchor = report.audit_anchor.clone().expect("the report's anchor");
    let incident = client
        .document_incident(as_user(
            DocumentIncidentRequest {
                organization_id: s.org.to_string(),
                migration_id: id.clone(),
                request_id: "chain-incident".into(),
                title: "An audit drill".into(),
                severity: Severity::Sev3.into(),
                ..Default::default()
            },
            s.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    // The validation's row came after its anchor, the incident after both.
    assert!(incident.audit_anchor.clone().unwrap().seq > anchor.seq);

    let whole = verify(&mut client, &s).await;
    assert!(whole.verified, "{whole:?}");
    assert_eq!(whole.entries, chained(&s.pool, s.org).await);
    assert_eq!(whole.checked, whole.entries);
    // The anchor is a point the chain still passes through.
    let at_anchor: String = sqlx::query_scalar(
        "SELECT chain ->> 'hash'
           FROM (SELECT metadata -> 'audit_chain' AS chain FROM universal_transactions
                  WHERE organization_id = $1
                 UNION ALL
                 SELECT line_data -> 'audit_chain' FROM universal_transaction_lines
                  WHERE organization_id = $1) entries
          WHERE (chain ->> 'seq')::bigint = $2",
    )
    .bind(s.org)
    .bind(anchor.seq)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(at_anchor, anchor.hash);

    // Someone edits a batch's audit row by hand: that row, and no other, is named.
    let (row, seq): (Uuid, i64) = sqlx::query_as(
        "SELECT id, (metadata #>> '{audit_chain,seq}')::bigint FROM universal_transactions
          WHERE transaction_type = 'MIGRATION_OPERATION' AND metadata ->> 'migration_id' = $1
            AND (metadata ->> 'batch_number')::int = 2",
    )
    .bind(&id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    let edit = "UPDATE universal_transactions SET metadata = metadata || $2 WHERE id = $1";
    sqlx::query(edit)
        .bind(row)
        .bind(serde_json::json!({"migrated_ids": []}))
        .execute(&s.pool)
        .await
        .unwrap();
    let broken = verify(&mut client, &s).await;
    assert!(!broken.verified);
    let link = broken.first_broken.expect("the broken link");
    assert_eq!(
        (link.entry_id.as_str(), link.seq, link.kind.as_str()),
        (row.to_string().as_str(), seq, "row"),
        "{link:?}"
    );
    assert_eq!(link.transaction_type, "MIGRATION_OPERATION");
    assert!(link.reason.contains("edited"), "{}", link.reason);

    // An earlier edit of an event's line is the first broken link now.
    let (line, line_seq): (Uuid, i64) = sqlx::query_as(
        "SELECT id, (line_data #>> '{audit_chain,seq}')::bigint FROM universal_transaction_lines
          WHERE transaction_id = $1::uuid AND line_number = 1",
    )
    .bind(&id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE universal_transaction_lines
            SET line_data = jsonb_set(line_data, '{message}', '\"started by nobody\"') WHERE id = $1",
    )
    .bind(line)
    .execute(&s.pool)
    .await
    .unwrap();
    let link = verify(&mut client, &s).await.first_broken.expect("broken");
    assert_eq!(
        (
            link.entry_id,
            link.seq,
            link.kind.as_str(),
            link.transaction_type.as_str()
        ),
        (line.to_string(), line_seq, "event", "MIGRATION_EVENT")
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_deleted_entry_is_named_and_an_untouched_chain_of_concurrent_appends_verifies() {
    let s = seeded(120).await;
    let mut client = s.app.client().await;
    // Audit rows from many connections at once while a run appends its own.
    let run = client
        .start_migration(as_user(start(s.org), s.owner))
        .await
        .unwrap()
        .into_inner();
    let checks = (0..16).map(|_| {
        let mut client = client.clone();
        let org = s.org.to_string();
        let owner = s.owner;
        tokio::spawn(async move {
            client
                .check_security(as_user(
                    CheckSecurityRequest {
                        organization_id: org,
                        ..Default::default()
                    },
                    owner,
                ))
                .await
                .unwrap();
        })
    });
    for check in checks.collect::<Vec<_>>() {
        check.await.unwrap();
    }
    let events = collect(run).await;
    assert_eq!(events.last().unwrap().state(), MigrationState::Succeeded);
    let whole = verify(&mut client, &s).await;
    assert!(whole.verified, "{whole:?}");
    assert_eq!(whole.entries, chained(&s.pool, s.org).await);

    let (gone, seq): (Uuid, i64) = sqlx::query_as(
        "SELECT id, (metadata #>> '{audit_chain,seq}')::bigint FROM universal_transactions
          WHERE organization_id = $1 AND transaction_type = 'SECURITY_VALIDATION'
          ORDER BY 2 DESC LIMIT 1",
    )
    .bind(s.org)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM universal_transactions WHERE id = $1")
        .bind(gone)
        .execute(&s.pool)
        .await
        .unwrap();
    let link = verify(&mut client, &s).await.first_broken.expect("broken");
    assert_eq!((link.entry_id, link.seq), (gone.to_string(), seq));
    assert!(link.reason.contains("deleted"), "{}", link.reason);
    s.app.stop().await;
}
