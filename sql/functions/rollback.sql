-- Rollback of a migration run: batched, one database transaction per batch,
-- exactly once, ledger-neutral.
--
-- Method: VOID, not counter-entries. Migration left, per original O, a
-- reversal R (O's lines negated) and a v2 repost P (O's lines), with O marked
-- 'reversed'. The trial balance counts every transaction that is not
-- 'voided', so during the migration it holds O + R + P = O. To undo it we
--   * set R and P to HERA's 'voided' status (recording when, why, and by
--     which run), and
--   * put O back to the status it had (metadata.status_before_migration:
--     'posted', or 'completed' for a run that migrated completed ones),
--     dropping the migration's keys from its metadata and appending the
--     restoration to its rollback_history.
-- The ledger then holds O alone again: exactly the pre-migration balance,
-- by construction, per account and currency, whatever the amounts.
-- Why voiding rather than counter-entries (a reversal of R and of P):
--   * counter-entries would add two more transactions per original (five
--     rows for one business event), each itself in effect, and a later
--     migration would have to recognise and skip them all; the restored O
--     would still sit next to a chain of live R/P/R'/P' that nets to zero only
--     as a whole;
--   * R and P were never business events: they are artefacts of a technical
--     migration that is being withdrawn. 'voided' is HERA's status for a
--     document that must be treated as never having taken effect, and it is
--     exactly what the trial balance (and HERA's reports) exclude;
--   * voiding keeps every row (nothing deleted): the audit trail shows O, R
--     and P, the void stamps and the rollback's MIGRATION_OPERATION rows;
--   * O becomes a candidate again (posted, v1, none of the migration keys),
--     so a later run migrates it as if for the first time.
-- The voided R and P get their transaction_code suffixed with
-- '-VOID-<run id>' (the former code kept in voided_transaction_code): codes
-- are UNIQUE and a later migration of O writes O-REV and O-V2 again.
--
-- What a restored original looks like: every column as before the
-- migration, byte for byte (smart_code included: see the SET lists below),
-- except, documented, updated_at and updated_by (the rollback's time and
-- actor: HERA's actor audit wants the last writer named), version (up by one
-- for the migration and one for the rollback: it only grows), and
-- metadata.rollback_history (one entry per rollback).
--
-- When the database refuses to restore one (a trigger, a constraint), that
-- original stays migrated (its reversal and repost in effect, the ledger
-- still whole), is listed under metadata.rollback.refused with the
-- database's message, and the rollback finishes the rest; the run ends
-- ROLLED_BACK with a warning naming it, and rolling back again once the cause
-- is fixed retries exactly those.
--
-- It creates no table: the batch lives in arrays.

-- The columns a rollback means to change on an original, and the metadata
-- keys it removes (the migration's) or appends (rollback_history).
CREATE OR REPLACE FUNCTION hera_migration_restored_keys_v2()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hera_migration_original_keys_v2() || ARRAY['rollback_history'] $$;

-- The rollback's unit of work (run by hera_migration_isolate_v2, so a refusal
-- sets aside that one original): for the originals p_ids, still migrated by
-- run p_args.run_id and locked by the caller, void their reversal and repost
-- and put them back, through hera_migration_update_rows_v2 (smart codes kept
-- byte-identical under HERA's smart-code triggers). Verifies (raising
-- HM001 naming the originals) that each original's voided pair netted to zero
-- per account, currency and period fields (so the trial balance does not
-- move) and that nothing but the intended columns of an original changed.
-- p_args: {run_id, operation_id, actor, reason}.
CREATE OR REPLACE FUNCTION hera_migration_restore_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_run      uuid := (p_args ->> 'run_id')::uuid;
    v_op       uuid := (p_args ->> 'operation_id')::uuid;
    v_actor    uuid := (p_args ->> 'actor')::uuid;
    v_reason   text := p_args ->> 'reason';
    v_revs     uuid[];
    v_reps     uuid[];
    v_before   jsonb;
    v_bad      jsonb;
BEGIN
    SELECT coalesce(array_agg((t.metadata ->> 'reversal_id')::uuid ORDER BY o.n), '{}'),
           coalesce(array_agg((t.metadata ->> 'migrated_to')::uuid ORDER BY o.n), '{}'),
           jsonb_object_agg(t.id, hera_migration_kept_image_v2(t, hera_migration_marked_columns_v2(),
                                                               hera_migration_restored_keys_v2()))
      INTO v_revs, v_reps, v_before
      FROM unnest(p_ids) WITH ORDINALITY AS o (id, n)
      JOIN universal_transactions t ON t.id = o.id;

    -- 1. Void the reversals and the reposts (only this run's, still in effect).
    PERFORM hera_migration_update_rows_v2(
        (SELECT coalesce(jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'status', 'voided',
                    'code', t.transaction_code || '-VOID-' || v_run,
                    'metadata', coalesce(t.metadata, '{}') || jsonb_build_object(
                        'voided_at', now(), 'void_reason', v_reason, 'rolled_back_by_run', v_run,
                        'rollback_batch_id', v_op, 'voided_transaction_code', t.transaction_code,
                        'status_before_void', t.transaction_status))), '{}')
           FROM universal_transactions t
          WHERE t.id = ANY (v_revs || v_reps)
            AND t.transaction_status <> 'voided'
            AND (t.metadata ->> 'migration_run_id' = v_run::text OR t.metadata ->> 'migration_id' = v_run::text)),
        v_actor);

    -- 2. Put the originals back: their status before the migration, the
    -- migration's keys gone, the restoration appended to their history.
    PERFORM hera_migration_update_rows_v2(
        (SELECT jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'status', coalesce(t.metadata ->> 'status_before_migration', 'posted'),
                    'metadata', (coalesce(t.metadata, '{}') - hera_migration_original_keys_v2())
                        || jsonb_build_object('rollback_history',
                               coalesce(t.metadata -> 'rollback_history', '[]') || jsonb_build_array(
                                   jsonb_build_object(
                                       'migration_id', v_run,
                                       'reversal_id', t.metadata ->> 'reversal_id',
                                       'repost_id', t.metadata ->> 'migrated_to',
                                       'restored_status', coalesce(t.metadata ->> 'status_before_migration', 'posted'),
                                       'restored_at', now(),
                                       'rollback_batch_id', v_op,
                                       'reason', v_reason)))))
           FROM universal_transactions t
          WHERE t.id = ANY (p_ids)),
        v_actor);

    -- 3. Verify: each original's voided pair nets to zero per account,
    -- currency and period fields (what leaves the ledger is worth nothing),
    -- and the originals changed only as intended.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', o, 'rule', 'copies_changed',
               'reason', 'its reversal and repost no longer net to zero per account and period (they were '
                         'changed after the migration): voiding them would move the trial balance')), '[]')
      INTO v_bad
      FROM unnest(hera_migration_pairs_off_v2(v_revs || v_reps, p_ids || p_ids)) o;
    IF jsonb_array_length(v_bad) = 0 THEN
        v_bad := hera_migration_image_changes_v2(v_before, hera_migration_marked_columns_v2(),
                                                 hera_migration_restored_keys_v2(), 'restored');
    END IF;
    IF jsonb_array_length(v_bad) > 0 THEN
        RAISE EXCEPTION 'hera_migration_unverified: % original(s) of rollback batch % failed verification',
              jsonb_array_length(v_bad), v_op
              USING ERRCODE = 'HM001', DETAIL = v_bad::text;
    END IF;
    RETURN cardinality(p_ids);
END;
$fn$;

-- One batch of the rollback of run p_run_id, in the caller's transaction.
-- Contract as hera_migration_execute_batch_v2: locks the run row; a run that
-- is not RUNNING in phase ROLLBACK does nothing and answers
--   {halted: <state>, done: false, transactions: 0, duration_ms: 0, counters}.
-- Otherwise it walks the run's REVERSE_REPOST MIGRATION_OPERATION rows in
-- (transaction_date, id) order and, within each, its migrated_ids in order;
-- the cursor (metadata.rollback.cursor = {transaction_date, id, offset}) says
-- how far it has come, so a batch costs the same at the start and at the end.
-- A retry (metadata.rollback.retry_ids, set when a rollback whose restores
-- were refused is asked again) takes those originals instead.
-- It takes at most p_batch_size originals, restores them, then (when the
-- originals are exhausted) spends the rest of its budget removing the run's
-- reporting aliases. Returns
--   {operation_id, batch_number, phase: 'ROLLBACK', transactions, restored,
--    already_restored, refused: [{transaction_id, rule, reason, ...}],
--    aliases_removed, restored_ids, remaining, done, balanced, duration_ms,
--    counters}
-- counters = metadata.rollback.counters = {batches, processed, restored,
-- already_restored, refused, aliases_removed, total}: batches and processed
-- as in the execution's counters; refused = the originals whose restore is
-- refused now; total = the originals the run migrated.
CREATE OR REPLACE FUNCTION hera_migration_rollback_batch_v2(
    p_run_id uuid,
    p_batch_size integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
-- As in execute_batch.sql: the cursor reads walk indexes in order and stop
-- at the budget; nothing sorts what remains.
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_started      timestamptz := clock_timestamp();
    v_run          record;
    v_org          uuid;
    v_actor        uuid;
    v_rb           jsonb;
    v_reason       text;
    v_batch_size   integer;
    v_batch_no     bigint;
    v_operation_id uuid := gen_random_uuid();
    v_retry        jsonb;
    v_retrying     boolean;
    v_c_date       timestamptz;
    v_c_id         uuid;
    v_c_off        bigint;
    v_items        uuid[];
    v_l_date       timestamptz;
    v_l_id         uuid;
    v_l_off        bigint;
    v_origs        uuid[];
    v_restore      jsonb;
    v_restored     uuid[];
    v_refused      jsonb;
    v_all_refused  jsonb;
    v_alias        jsonb;
    v_alias_done   boolean;
    v_alias_cursor jsonb;
    v_removed      bigint := 0;
    v_total        bigint;
    v_counters     jsonb;
    v_done         boolean;
    v_exhausted    boolean;
    v_result       jsonb;
BEGIN
    SELECT id, organization_id, transaction_date, metadata INTO v_run
      FROM universal_transactions
     WHERE id = p_run_id AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration run %', p_run_id USING ERRCODE = 'no_data_found';
    END IF;
    v_rb := coalesce(v_run.metadata -> 'rollback', '{}');
    -- Pause and cancel of a rollback wait on this row lock and flip the state:
    -- they take effect between batches, as for the execution.
    IF coalesce(v_run.metadata ->> 'state', '') <> 'RUNNING'
       OR coalesce(v_run.metadata ->> 'phase', '') <> 'ROLLBACK' THEN
        RETURN jsonb_build_object('halted', v_run.metadata ->> 'state', 'done', false,
                                  'transactions', 0, 'duration_ms', 0,
                                  'counters', coalesce(v_rb -> 'counters', '{}'));
    END IF;
    v_org        := v_run.organization_id;
    v_actor      := coalesce((v_rb ->> 'requested_by')::uuid, (v_run.metadata ->> 'started_by')::uuid);
    v_reason     := coalesce(v_rb ->> 'reason', 'Finance DNA v2 migration rollback');
    v_batch_size := coalesce(p_batch_size, (v_run.metadata #>> '{parameters,batch_size}')::int, 1000);
    IF v_batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size: must be at least 1, got %', v_batch_size
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_batch_no   := coalesce((v_rb #>> '{counters,batches}')::bigint, 0) + 1;
    v_total      := coalesce((v_run.metadata #>> '{counters,migrated}')::bigint, 0);
    v_retry      := coalesce(v_rb -> 'retry_ids', '[]');
    v_retrying   := jsonb_array_length(v_retry) > 0;

    -- 1. The next originals to restore: a retry's, or from the run's audit
    -- trail (each REVERSE_REPOST operation lists what its batch migrated).
    IF v_retrying THEN
        v_items := ARRAY(SELECT e::uuid FROM jsonb_array_elements_text(v_retry) WITH ORDINALITY AS r (e, n)
                          WHERE n <= v_batch_size ORDER BY n);
        v_retry := coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(v_retry) WITH ORDINALITY AS r (e, n)
                              WHERE n > v_batch_size), '[]');
    ELSE
        -- The run's operations are written after the run row (their dates are
        -- their batches' now()), so the first batch starts the scan at the
        -- run's own date, not at the organization's oldest transaction.
        v_c_date := coalesce((v_rb #>> '{cursor,transaction_date}')::timestamptz, v_run.transaction_date);
        v_c_id   := coalesce((v_rb #>> '{cursor,id}')::uuid, '00000000-0000-0000-0000-000000000000');
        v_c_off  := coalesce((v_rb #>> '{cursor,offset}')::bigint, 0);
        SELECT coalesce(array_agg(x.orig ORDER BY x.op_date, x.op_id, x.ord), '{}'),
               (array_agg(x.op_date ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1],
               (array_agg(x.op_id ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1],
               (array_agg(x.ord ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1]
          INTO v_items, v_l_date, v_l_id, v_l_off
          FROM (SELECT op.transaction_date AS op_date, op.id AS op_id, m.ord, m.orig::uuid AS orig
                  FROM universal_transactions op
                 CROSS JOIN LATERAL jsonb_array_elements_text(
                           coalesce(op.metadata -> 'migrated_ids', '[]')) WITH ORDINALITY AS m (orig, ord)
                 WHERE op.organization_id = v_org
                   AND (op.transaction_date, op.id) >= (v_c_date, v_c_id)
                   AND op.transaction_type = 'MIGRATION_OPERATION'
                   AND op.metadata ->> 'migration_id' = p_run_id::text
                   AND op.metadata ->> 'operation_type' = 'REVERSE_REPOST'
                   AND NOT (op.id = v_c_id AND m.ord <= v_c_off)
                 ORDER BY op.transaction_date, op.id, m.ord
                 LIMIT v_batch_size) x;
    END IF;

    -- 2. Lock them, and keep only those this run still holds migrated: the
    -- test is re-checked on the locked row, so an original restored by an
    -- earlier (or concurrent) rollback batch, or migrated again by a later
    -- run, is skipped: each is restored at most once.
    SELECT coalesce(array_agg(o.id ORDER BY o.id), '{}')
      INTO v_origs
      FROM (SELECT t.id
              FROM universal_transactions t
             WHERE t.id = ANY (v_items)
               AND t.organization_id = v_org
               AND t.transaction_status = 'reversed'
               AND t.metadata ->> 'migration_run_id' = p_run_id::text
               AND t.metadata ? 'migrated_to'
             ORDER BY t.id
               FOR UPDATE) o;

    -- 3. Void the copies and put the originals back, each refusal set aside.
    v_restore := hera_migration_isolate_v2('hera_migration_restore_v2', v_origs, jsonb_build_object(
        'run_id', p_run_id, 'operation_id', v_operation_id, 'actor', v_actor, 'reason', v_reason));
    v_restored := ARRAY(SELECT jsonb_array_elements_text(v_restore -> 'done')::uuid);
    v_refused := v_restore -> 'refused';
    v_all_refused := coalesce(v_rb -> 'refused', '[]') || v_refused;

    -- 4. Once every original is back, the rest of the budget removes the
    -- run's reporting aliases. Scanning for them is cheaper than restoring,
    -- so a batch may scan fifty rows per unit of budget left (measured: 10,000
    -- rows of range in about 40 ms, against about 600 ms to restore 1,000
    -- originals).
    v_alias_done   := coalesce((v_rb ->> 'aliases_done')::boolean, false);
    v_alias_cursor := v_rb -> 'alias_cursor';
    v_exhausted    := CASE WHEN v_retrying THEN jsonb_array_length(v_retry) = 0
                           ELSE cardinality(v_items) < v_batch_size END;
    IF v_exhausted AND NOT v_alias_done THEN
        v_alias := hera_migration_remove_reporting_aliases_v2(
            v_org, p_run_id, greatest(v_batch_size - cardinality(v_items), 1) * 50, v_alias_cursor, v_actor);
        v_removed      := (v_alias ->> 'removed')::bigint;
        v_alias_done   := (v_alias ->> 'done')::boolean;
        v_alias_cursor := v_alias -> 'cursor';
        -- An alias the database refuses to remove stays, listed like a
        -- refused restore (a retry scans for the run's aliases again).
        v_refused := v_refused || coalesce((SELECT jsonb_agg(e || '{"kind": "alias"}')
                                              FROM jsonb_array_elements(v_alias -> 'refused') e), '[]');
        v_all_refused := coalesce(v_rb -> 'refused', '[]') || v_refused;
    END IF;
    v_done := v_exhausted AND v_alias_done;

    -- 5. Record the batch and advance the run. A retry's originals were
    -- counted as processed by the pass that first met them.
    v_counters := coalesce(v_rb -> 'counters', '{}');
    v_counters := v_counters || jsonb_build_object(
        'batches', v_batch_no,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0)
                     + CASE WHEN v_retrying THEN 0 ELSE cardinality(v_items) END,
        'restored', coalesce((v_counters ->> 'restored')::bigint, 0) + cardinality(v_restored),
        'already_restored', coalesce((v_counters ->> 'already_restored')::bigint, 0)
                            + cardinality(v_items) - cardinality(v_origs),
        'refused', jsonb_array_length(v_all_refused),
        'aliases_removed', coalesce((v_counters ->> 'aliases_removed')::bigint, 0) + v_removed,
        'total', v_total);
    v_result := jsonb_build_object(
        'operation_id', v_operation_id,
        'batch_number', v_batch_no,
        'phase', 'ROLLBACK',
        'transactions', cardinality(v_items),
        'restored', cardinality(v_restored),
        'already_restored', cardinality(v_items) - cardinality(v_origs),
        'refused', v_refused,
        'aliases_removed', v_removed,
        'first_transaction_id', v_items[1],
        'last_transaction_id', v_items[cardinality(v_items)],
        'remaining', greatest(v_total - (v_counters ->> 'processed')::bigint, 0) + jsonb_array_length(v_retry),
        'balanced', true,
        'done', v_done,
        'duration_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3),
        'counters', v_counters);

    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
        transaction_status, smart_code, metadata, created_by, updated_by)
    VALUES (v_operation_id, v_org, 'MIGRATION_OPERATION', 'MIGOP-' || v_operation_id, now(), 0,
            'completed', 'HERA.ACCOUNTING.MIGRATION.AUDIT.TRAIL.v2',
            v_result || jsonb_build_object(
                'migration_id', p_run_id, 'operation_type', 'ROLLBACK', 'reason', v_reason,
                'restored_ids', to_jsonb(v_restored)),
            v_actor, v_actor);

    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('rollback',
        v_rb || jsonb_build_object('counters', v_counters, 'aliases_done', v_alias_done,
                                   'refused', v_all_refused, 'retry_ids', v_retry)
             || CASE WHEN v_l_id IS NULL THEN '{}'::jsonb
                     ELSE jsonb_build_object('cursor', jsonb_build_object(
                              'transaction_date', v_l_date, 'id', v_l_id, 'offset', v_l_off)) END
             || CASE WHEN v_alias_cursor IS NULL THEN '{}'::jsonb
                     ELSE jsonb_build_object('alias_cursor', v_alias_cursor) END));

    RETURN v_result;
END;
$fn$;

-- Turns a run into a rollback: state RUNNING in phase ROLLBACK, with who
-- asked, why, and (for the RPC's idempotency) the request id. A rollback
-- already under way keeps its reason, start and cursor. A run ROLLED_BACK
-- with refused restores is rolled back again: those originals are retried.
-- The caller holds the run row's lock and has checked that the run may be
-- rolled back.
CREATE OR REPLACE FUNCTION hera_migration_begin_rollback_v2(
    p_run_id uuid,
    p_actor uuid,
    p_reason text,
    p_request_id text
)
RETURNS void
LANGUAGE sql
AS $$
    UPDATE universal_transactions
       SET metadata = metadata || jsonb_build_object(
               'state', 'RUNNING',
               'phase', 'ROLLBACK',
               'message', 'rolling back',
               'state_changes', coalesce((metadata ->> 'state_changes')::int, 0) + 1,
               'rollback', coalesce(metadata -> 'rollback', '{}') || jsonb_strip_nulls(jsonb_build_object(
                   'reason', coalesce(nullif(btrim(p_reason), ''),
                                      metadata #>> '{rollback,reason}', 'Finance DNA v2 migration rollback'),
                   'requested_at', coalesce(metadata #>> '{rollback,requested_at}', now()::text),
                   'requested_by', coalesce(p_actor::text, metadata #>> '{rollback,requested_by}'),
                   'request_id', coalesce(nullif(p_request_id, ''), metadata #>> '{rollback,request_id}'),
                   'state_before', coalesce(metadata #>> '{rollback,state_before}', metadata ->> 'state')))
               || CASE WHEN metadata ->> 'state' = 'ROLLED_BACK'
                       THEN jsonb_build_object('retry_ids',
                                coalesce((SELECT jsonb_agg(e -> 'transaction_id')
                                            FROM jsonb_array_elements(metadata #> '{rollback,refused}') e
                                           WHERE NOT e ? 'kind'), '[]'),
                                'refused', '[]'::jsonb,
                                'aliases_done', false,
                                'alias_cursor', NULL)
                       ELSE '{}'::jsonb END),
           transaction_status = 'running',
           updated_at = now(),
           updated_by = coalesce(p_actor, updated_by),
           version = coalesce(version, 1) + 1,
           smart_code = smart_code
     WHERE id = p_run_id
$$;

-- The guide's psql entry point: roll back run p_migration_batch_id (the
-- migration_id, as text) of p_organization_id, to the end, in the caller's
-- transaction. Sets the run RUNNING in phase ROLLBACK (reason and request
-- time recorded under metadata.rollback), loops the batch function, then sets
-- it ROLLED_BACK. A rollback that was interrupted (RUNNING or PAUSED in phase
-- ROLLBACK) resumes from its cursor; one that ended with refused restores is
-- retried for those.
-- Raises no_data_found (P0002) for an unknown run, and
-- object_not_in_prerequisite_state (55000) for a run still executing
-- (RUNNING or PAUSED in phase EXECUTION: cancel it first).
-- A run already ROLLED_BACK with nothing refused is answered with its
-- summary, nothing written.
-- Returns {migration_id, organization_id, state, reason, batches, processed,
-- restored, already_restored, refused, aliases_removed, total,
-- refused_transactions, already_rolled_back, duration_ms}.
CREATE OR REPLACE FUNCTION hera_migration_rollback_v2(
    p_organization_id uuid,
    p_migration_batch_id text,
    p_rollback_reason text
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_run_id  uuid;
    v_run     record;
    v_state   text;
    v_phase   text;
    v_batch   jsonb;
    v_meta    jsonb;
BEGIN
    BEGIN
        v_run_id := btrim(p_migration_batch_id)::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'migration_id: no migration run % in organization %', p_migration_batch_id, p_organization_id
              USING ERRCODE = 'no_data_found';
    END;
    SELECT id, metadata INTO v_run
      FROM universal_transactions
     WHERE id = v_run_id AND organization_id = p_organization_id
       AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration run % in organization %', p_migration_batch_id, p_organization_id
              USING ERRCODE = 'no_data_found';
    END IF;
    v_state := coalesce(v_run.metadata ->> 'state', 'RUNNING');
    v_phase := coalesce(v_run.metadata ->> 'phase', 'EXECUTION');

    IF v_state = 'ROLLED_BACK' AND coalesce(jsonb_array_length(v_run.metadata #> '{rollback,refused}'), 0) = 0 THEN
        RETURN jsonb_build_object('migration_id', v_run_id, 'organization_id', p_organization_id,
                                  'state', v_state, 'already_rolled_back', true,
                                  'reason', v_run.metadata #>> '{rollback,reason}', 'duration_ms', 0,
                                  'refused_transactions', '[]'::jsonb)
               || coalesce(v_run.metadata #> '{rollback,counters}', '{}');
    END IF;
    IF v_phase <> 'ROLLBACK' AND v_state IN ('RUNNING', 'PAUSED') THEN
        RAISE EXCEPTION 'migration_id: migration % is still % in phase %; cancel it before rolling it back',
              v_run_id, v_state, v_phase
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    PERFORM hera_migration_begin_rollback_v2(v_run_id, NULL, p_rollback_reason, NULL);

    LOOP
        v_batch := hera_migration_rollback_batch_v2(v_run_id);
        EXIT WHEN (v_batch ->> 'done')::boolean OR v_batch ? 'halted';
    END LOOP;

    SELECT metadata INTO v_meta FROM universal_transactions WHERE id = v_run_id;
    PERFORM hera_migration_update_run_v2(v_run_id, jsonb_build_object(
        'rollback', (v_meta -> 'rollback') || jsonb_build_object('finished_at', now())));
    PERFORM hera_migration_set_state_v2(v_run_id, 'ROLLED_BACK', NULL,
        CASE WHEN jsonb_array_length(coalesce(v_meta #> '{rollback,refused}', '[]')) > 0
             THEN format('rolled back, except %s transaction(s) whose restore the database refused',
                         jsonb_array_length(v_meta #> '{rollback,refused}'))
             ELSE 'rolled back' END);
    SELECT metadata INTO v_meta FROM universal_transactions WHERE id = v_run_id;

    RETURN jsonb_build_object('migration_id', v_run_id, 'organization_id', p_organization_id,
                              'state', 'ROLLED_BACK', 'already_rolled_back', false,
                              'reason', v_meta #>> '{rollback,reason}',
                              'refused_transactions', coalesce(v_meta #> '{rollback,refused}', '[]'),
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3))
           || coalesce(v_meta #> '{rollback,counters}', '{}');
END;
$fn$;
