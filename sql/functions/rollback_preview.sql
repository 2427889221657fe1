-- Rollback preview: what RollbackMigration would do to run p_run_id, read
-- only (PreviewRollback). The same sets the rollback works on and
-- validation's rollback check counts (hera_migration_in_effect_v2):
--   originals  the run's migrated originals (status 'reversed'): restored;
--   copies     their reversals and v2 reposts still in effect: voided;
--   aliases    the reporting aliases the run applied: removed.
-- Beside them, what an operator weighs before an emergency rollback:
--   periods    the originals' fiscal periods and their status now (one closed
--              since the migration takes the restore all the same: a risk);
--   dependent  business postings made since the run began that name an
--              original or a copy, by id or transaction code, in a metadata
--              value or their reference_number (they would point at a voided
--              copy or a restored original): at most 100 listed;
--   estimate   the restore time from the run's own batches (its
--              MIGRATION_OPERATION rows), as a rollback batch does the same
--              work per transaction.
-- Returns {state, originals, copies, aliases, estimated_ms, estimate_basis,
-- periods: [{period_code, status, transactions}], dependent_count,
-- dependent: [{transaction_id, transaction_code, smart_code,
-- references_transaction_id, reference, created_at}]}; no_data_found when
-- the organization has no such run.
CREATE OR REPLACE FUNCTION hera_migration_preview_rollback_v2(p_organization_id uuid, p_run_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_run      record;
    v_result   jsonb;
BEGIN
    SELECT t.metadata, t.created_at INTO v_run
      FROM universal_transactions t
     WHERE t.id = p_run_id AND t.organization_id = p_organization_id
       AND t.transaction_type = 'MIGRATION_RUN';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration % in organization %', p_run_id, p_organization_id
            USING ERRCODE = 'no_data_found';
    END IF;

    WITH touched AS (
        SELECT e.*, CASE e.role WHEN 'reversal' THEN 'copy' WHEN 'repost' THEN 'copy'
                                WHEN 'alias' THEN 'aliased' ELSE e.role END AS kind
          FROM hera_migration_in_effect_v2(p_organization_id, p_run_id) e),
    periods AS (
        SELECT coalesce(p.period_code, '') AS period_code, coalesce(p.status, 'UNASSIGNED') AS status,
               count(*) AS transactions
          FROM touched o
          LEFT JOIN LATERAL (
                SELECT f.period_code, f.status
                  FROM hera_migration_fiscal_periods_v2(p_organization_id) f
                 WHERE f.id = o.fiscal_period_entity_id
                    OR o.transaction_date::date BETWEEN f.start_date AND f.end_date
                 ORDER BY (f.id = o.fiscal_period_entity_id) DESC NULLS LAST, f.start_date
                 LIMIT 1) p ON true
         WHERE o.kind = 'original'
         GROUP BY 1, 2),
    names AS (
        SELECT o.id, o.id::text AS name FROM touched o WHERE o.kind <> 'aliased'
        UNION ALL
        SELECT o.id, o.transaction_code FROM touched o
         WHERE o.kind <> 'aliased' AND o.transaction_code IS NOT NULL),
    -- Every name a business row since the run began gives (its metadata
    -- values, its reference_number), hash-joined with the touched rows' names.
    recent AS (
        SELECT b.* FROM universal_transactions b
         WHERE b.organization_id = p_organization_id
           AND b.created_at >= v_run.created_at
           AND coalesce(b.transaction_status, '') <> 'voided'
           AND b.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION')
           AND NOT EXISTS (SELECT 1 FROM touched o WHERE o.id = b.id)),
    refs AS (
        SELECT b.id, 'metadata.' || m.key AS reference, m.value AS name
          FROM recent b CROSS JOIN LATERAL jsonb_each_text(b.metadata) m
        UNION ALL
        SELECT b.id, 'reference_number', b.reference_number FROM recent b
         WHERE b.reference_number IS NOT NULL),
    dependent AS (
        SELECT DISTINCT ON (r.id) r.id, b.transaction_code, b.smart_code, b.created_at,
               n.id AS references_id, r.reference
          FROM refs r
          JOIN names n ON n.name = r.name
          JOIN recent b ON b.id = r.id
         ORDER BY r.id, n.id),
    measured AS (
        SELECT sum((op.metadata ->> 'duration_ms')::numeric) AS ms,
               sum((op.metadata ->> 'transactions')::numeric) AS transactions
          FROM universal_transactions op
         WHERE op.organization_id = p_organization_id
           AND op.transaction_type = 'MIGRATION_OPERATION'
           AND op.metadata ->> 'migration_id' = p_run_id::text
           AND op.metadata ->> 'duration_ms' IS NOT NULL)
    SELECT jsonb_build_object(
               'state', v_run.metadata ->> 'state',
               'originals', (SELECT count(*) FROM touched WHERE kind = 'original'),
               'copies', (SELECT count(*) FROM touched WHERE kind = 'copy'),
               'aliases', (SELECT count(*) FROM touched WHERE kind = 'aliased'),
               'estimated_ms', (SELECT CASE WHEN m.transactions > 0
                                            THEN round(m.ms / m.transactions
                                                       * (SELECT count(*) FROM touched WHERE kind = 'original'))
                                            ELSE 0 END FROM measured m),
               'estimate_basis', (SELECT CASE WHEN m.transactions > 0
                                              THEN format('the run''s own batches: %s ms per transaction over %s',
                                                          round(m.ms / m.transactions, 3), m.transactions)
                                              ELSE 'no measured batch of the run' END FROM measured m),
               'periods', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                        'period_code', p.period_code, 'status', p.status,
                                        'transactions', p.transactions) ORDER BY p.period_code)
                                      FROM periods p), '[]'),
               'dependent_count', (SELECT count(*) FROM dependent),
               'dependent', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                          'transaction_id', d.id, 'transaction_code', d.transaction_code,
                                          'smart_code', d.smart_code, 'references_transaction_id', d.references_id,
                                          'reference', d.reference, 'created_at', d.created_at)
                                          ORDER BY d.created_at, d.id)
                                        FROM (SELECT * FROM dependent ORDER BY created_at, id LIMIT 100) d), '[]'))
      INTO v_result;
    RETURN v_result;
END;
$fn$;
