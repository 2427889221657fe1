-- A migration run: a MIGRATION_RUN row of universal_transactions (smart code
-- HERA.ACCOUNTING.MIGRATION.RUN.STATE.v2: the issue's HERA.ACCOUNTING.MIGRATION.RUN.v2
-- has two segments after the module, and HERA's rule needs three) whose
-- metadata holds its parameters, state, cursor and counters (zero tables).
-- p_parameters: {from_date, to_date, batch_size, smart_code_mappings,
-- closed_period_policy, dry_run, max_transactions_per_second, batch_delay_ms,
-- plan_fingerprint}. Returns the run's id (its migration_id).
-- Its first batch records the trial balance and the tables that exist (its
-- snapshot, which ValidateMigration compares against): taking it here would
-- hold up the start by a full read of the ledger.
CREATE OR REPLACE FUNCTION hera_migration_create_run_v2(
    p_organization_id uuid,
    p_actor uuid,
    p_parameters jsonb,
    p_request_id text DEFAULT NULL
)
RETURNS uuid
LANGUAGE sql
AS $$
    WITH new_run AS (SELECT gen_random_uuid() AS id)
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        total_amount, transaction_status, smart_code, metadata, created_by, updated_by)
    SELECT id, p_organization_id, 'MIGRATION_RUN', 'MIGRUN-' || id, now(), 0, 'running',
           'HERA.ACCOUNTING.MIGRATION.RUN.STATE.v2',
           jsonb_build_object(
               'migration_id', id,
               'state', 'RUNNING',
               'phase', 'EXECUTION',
               'parameters', p_parameters,
               'started_by', p_actor,
               'request_id', p_request_id,
               'counters', '{}'::jsonb),
           p_actor, p_actor
      FROM new_run
    RETURNING id
$$;
