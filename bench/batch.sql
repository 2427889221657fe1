-- The batch benchmark: one batch of 1000 three-line transactions against
-- the yardstick, PostgreSQL writing the same rows with plain INSERT ... SELECT
-- (two headers and two sets of lines per original, and the update of the
-- originals). Everything runs in transactions that roll back, so it can be
-- repeated on the same data; run it twice and read the second (warm) round.
--
--   psql -d <bench db> -v org=<organization id> -f bench/batch.sql
--
-- (seed the organization first: hera-migrate seed-demo --organizations 1
-- --transactions 1000000). It creates nothing, temporary or not.
\set ON_ERROR_STOP on
\timing on
SET jit = off;

\echo '--- yardstick: INSERT ... SELECT of the batch''s rows'
BEGIN;
WITH picked AS (
    SELECT id, gen_random_uuid() AS reversal, gen_random_uuid() AS repost
      FROM universal_transactions
     WHERE organization_id = :'org' AND transaction_status = 'posted' AND smart_code LIKE '%.v1'
     ORDER BY organization_id, transaction_date, id
     LIMIT 1000),
headers AS (
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by)
    SELECT copy.id, t.organization_id, t.transaction_type, t.transaction_code || copy.suffix,
           t.transaction_date, t.source_entity_id, t.target_entity_id, t.total_amount, 'posted',
           t.smart_code, t.business_context, t.metadata, t.fiscal_period_entity_id, t.fiscal_year,
           t.fiscal_period, t.posting_period_code, t.transaction_currency_code, t.created_by, t.updated_by
      FROM picked p
      JOIN universal_transactions t ON t.id = p.id
     CROSS JOIN LATERAL (VALUES (p.reversal, '-Y1'), (p.repost, '-Y2')) AS copy (id, suffix)
    RETURNING 1),
lines AS (
    INSERT INTO universal_transaction_lines (
        organization_id, transaction_id, line_number, entity_id, line_type, description,
        quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
        created_by, updated_by)
    SELECT l.organization_id, copy.id, l.line_number, l.entity_id, l.line_type, l.description,
           l.quantity, l.unit_amount, l.line_amount, l.discount_amount, l.tax_amount, l.smart_code,
           l.line_data, l.created_by, l.updated_by
      FROM picked p
      JOIN universal_transaction_lines l ON l.transaction_id = p.id
     CROSS JOIN LATERAL (VALUES (p.reversal), (p.repost)) AS copy (id)
    RETURNING 1)
UPDATE universal_transactions t
   SET transaction_status = 'reversed', metadata = t.metadata || jsonb_build_object('bench', true)
  FROM picked p
 WHERE t.id = p.id;
ROLLBACK;

\echo '--- a run''s first batch (it also records the run''s snapshot: a read of the whole ledger), then its second'
BEGIN;
SELECT hera_migration_create_run_v2(:'org',
           (SELECT created_by FROM core_organizations WHERE id = :'org'),
           '{"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": 1000,
             "closed_period_policy": "POST_TO_OPEN_PERIOD"}') AS run \gset
SELECT hera_migration_execute_batch_v2(:'run') ->> 'migrated' AS first_batch_migrated;
\echo '--- one batch: hera_migration_execute_batch_v2 (1000 transactions)'
SELECT hera_migration_execute_batch_v2(:'run') ->> 'migrated' AS migrated;
ROLLBACK;
