-- The ALIASING phase: an application of reporting aliases executed by the
-- engine like a migration's execution and rollback (leased, batched, paced,
-- pausable, resumed after a crash), recorded as a MIGRATION_RUN row of its
-- own in phase ALIASING. Its metadata's "aliasing" holds the application:
--   {alias_batch_id, migration_id (the run whose skipped transactions it
--    aliases, or null: organization-wide), smart_code_mappings, cursor,
--    per_mapping: [{source_smart_code, target_smart_code,
--                   transactions_aliased, already_aliased}],
--    refused: [{transaction_id, rule, reason}],
--    operation_id (the ALIAS audit row, once recorded)}
-- and its counters count batches, transactions looked at (processed),
-- aliased (migrated), already aliased (skipped_unmapped) and refused.

-- Creates the application RUNNING: the mappings checked (INVALID_ARGUMENT
-- naming the field), the aliased run found (NOT_FOUND otherwise), and the
-- eligible transactions counted, which its progress is measured against.
-- p_parameters: the run's parameters (batch_size and pace; the dates and
-- statuses are the aliased run's). Returns the run's id.
CREATE OR REPLACE FUNCTION hera_migration_create_alias_run_v2(
    p_organization_id uuid,
    p_actor uuid,
    p_parameters jsonb,
    p_migration_id uuid,
    p_request_id text DEFAULT NULL
)
RETURNS uuid
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_mappings jsonb := coalesce(p_parameters -> 'smart_code_mappings', '[]');
    v_eligible bigint;
    v_id       uuid;
BEGIN
    SELECT count(*) INTO v_eligible
      FROM hera_migration_alias_eligible_v2(p_organization_id, v_mappings, p_migration_id, NULL, NULL, false);
    v_id := hera_migration_create_run_v2(p_organization_id, p_actor, p_parameters, p_request_id);
    PERFORM hera_migration_update_run_v2(v_id, jsonb_build_object(
        'phase', 'ALIASING',
        'total_candidates', v_eligible,
        'aliasing', jsonb_build_object(
            'alias_batch_id', gen_random_uuid(),
            'migration_id', p_migration_id,
            'smart_code_mappings', v_mappings,
            'cursor', NULL,
            'per_mapping', '[]'::jsonb,
            'refused', '[]'::jsonb)));
    PERFORM hera_migration_append_event_v2(v_id, jsonb_build_object(
        'kind', 'STARTED',
        'message', format('applying reporting aliases to %s eligible transaction(s)%s', v_eligible,
                          CASE WHEN p_migration_id IS NULL THEN ''
                               ELSE ' skipped by migration ' || p_migration_id END),
        'actor', p_actor), p_actor);
    RETURN v_id;
END;
$fn$;

-- Per-mapping counts summed: the run's so far and a batch's.
CREATE OR REPLACE FUNCTION hera_migration_alias_counts_sum_v2(p_so_far jsonb, p_batch jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_smart_code', source, 'target_smart_code', target,
               'transactions_aliased', aliased, 'already_aliased', already) ORDER BY source, target), '[]')
      FROM (SELECT e ->> 'source_smart_code' AS source, e ->> 'target_smart_code' AS target,
                   sum((e ->> 'transactions_aliased')::bigint) AS aliased,
                   sum((e ->> 'already_aliased')::bigint) AS already
              FROM jsonb_array_elements(coalesce(p_so_far, '[]') || coalesce(p_batch, '[]')) e
             GROUP BY 1, 2) s
$$;

-- The phase's batch (the engine's "$1 the run, $2 the batch size"): the next
-- p_batch_size eligible transactions aliased, the cursor and counts advanced
-- on the run's row in the same transaction, so that a crash resumes exactly
-- after the last committed batch. The batch that finds the end also records
-- the ALIAS audit row (once: a resumed run whose audit row exists finds
-- nothing left). Returns the engine's batch result:
--   {transactions, done, duration_ms, batch_number, counters, refused}
-- or {halted: <state>} when the run is no longer RUNNING (nothing done).
CREATE OR REPLACE FUNCTION hera_migration_alias_batch_v2(p_run_id uuid, p_batch_size integer)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_started  timestamptz := clock_timestamp();
    v_org      uuid;
    v_meta     jsonb;
    v_aliasing jsonb;
    v_counters jsonb;
    v_batch    jsonb;
    v_refused  jsonb;
    v_done     boolean;
BEGIN
    SELECT r.organization_id, r.metadata INTO v_org, v_meta
      FROM hera_migration_lock_run_v2(p_run_id) r;
    IF v_meta ->> 'phase' IS DISTINCT FROM 'ALIASING' THEN
        RAISE EXCEPTION 'migration_id: migration % is no application of reporting aliases', p_run_id
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_meta ->> 'state' IS DISTINCT FROM 'RUNNING' THEN
        RETURN jsonb_build_object('halted', v_meta ->> 'state', 'transactions', 0, 'done', false,
                                  'duration_ms', 0, 'counters', coalesce(v_meta -> 'counters', '{}'));
    END IF;
    v_aliasing := v_meta -> 'aliasing';
    v_counters := coalesce(v_meta -> 'counters', '{}');
    IF v_aliasing ? 'operation_id' THEN
        RETURN jsonb_build_object('transactions', 0, 'done', true, 'duration_ms', 0,
                                  'batch_number', coalesce((v_counters ->> 'batches')::bigint, 0),
                                  'counters', v_counters);
    END IF;

    v_batch := hera_migration_apply_reporting_aliases_batch_v2(
        v_org, v_aliasing -> 'smart_code_mappings', (v_aliasing ->> 'alias_batch_id')::uuid,
        (v_aliasing ->> 'migration_id')::uuid, v_aliasing -> 'cursor', p_batch_size,
        (v_meta ->> 'started_by')::uuid);
    v_refused := coalesce(v_batch -> 'refused', '[]');
    v_done := (v_batch ->> 'done')::boolean;
    v_counters := jsonb_build_object(
        'batches', coalesce((v_counters ->> 'batches')::bigint, 0) + 1,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0) + (v_batch ->> 'transactions')::bigint,
        'migrated', coalesce((v_counters ->> 'migrated')::bigint, 0) + (v_batch ->> 'transactions_aliased')::bigint,
        'skipped_unmapped', coalesce((v_counters ->> 'skipped_unmapped')::bigint, 0)
                            + (v_batch ->> 'already_aliased')::bigint,
        'refused', coalesce((v_counters ->> 'refused')::bigint, 0) + jsonb_array_length(v_refused));
    v_aliasing := v_aliasing || jsonb_build_object(
        'cursor', v_batch -> 'cursor',
        'per_mapping', hera_migration_alias_counts_sum_v2(v_aliasing -> 'per_mapping', v_batch -> 'mappings'),
        'refused', coalesce(v_aliasing -> 'refused', '[]') || v_refused);
    IF v_done THEN
        PERFORM hera_migration_record_aliases_v2(
            v_org, (v_aliasing ->> 'alias_batch_id')::uuid, (v_aliasing ->> 'migration_id')::uuid,
            v_aliasing -> 'smart_code_mappings', v_aliasing -> 'per_mapping',
            (v_counters ->> 'batches')::integer, (v_meta ->> 'started_by')::uuid,
            v_meta ->> 'request_id', v_aliasing -> 'refused');
        v_aliasing := v_aliasing || jsonb_build_object('operation_id', v_aliasing -> 'alias_batch_id');
    END IF;
    PERFORM hera_migration_update_run_v2(p_run_id,
        jsonb_build_object('aliasing', v_aliasing, 'counters', v_counters));
    RETURN jsonb_build_object(
        'transactions', (v_batch ->> 'transactions')::bigint,
        'aliased', (v_batch ->> 'transactions_aliased')::bigint,
        'done', v_done,
        'duration_ms', extract(epoch FROM clock_timestamp() - v_started) * 1000,
        'batch_number', (v_counters ->> 'batches')::bigint,
        'counters', v_counters,
        'refused', v_refused);
END;
$fn$;
