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

-- Rollback step: the balance proof of a restore. For each original
-- p_originals[i] whose reversal p_reversals[i] and repost p_reposts[i] are
-- being voided: the pair nets to zero per account, currency and period fields
-- (what leaves the ledger is worth nothing, so the trial balance cannot move),
-- and, when it does, no original reads otherwise than intended against
-- p_before (the originals' rows as read before they were restored; NULL
-- skips that test). Returns the failures, [{transaction_id, rule, reason}]
-- ([] when the proof holds); hera_migration_restore_v2 raises them as HM001
-- so that hera_migration_isolate_v2 leaves exactly those originals migrated.
-- It writes nothing: from psql it tells whether a run's copies could still be
-- voided without moving the trial balance (its originals' metadata
-- reversal_id and migrated_to name them).
CREATE OR REPLACE FUNCTION hera_migration_rollback_verify_v2(
    p_originals uuid[],
    p_reversals uuid[],
    p_reposts uuid[],
    p_before universal_transactions[] DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    -- Computed once: called inside the query, the planner would also run it
    -- while planning (its argument is a constant under force_custom_plan).
    v_off uuid[] := ARRAY(SELECT x.original
                           FROM hera_migration_copies_off_v2(p_reversals || p_reposts, p_originals || p_originals) x
                          WHERE x.pair_off);
    v_bad jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', o, 'rule', 'copies_changed',
               'reason', 'its reversal and repost no longer net to zero per account and period (they were '
                         'changed after the migration): voiding them would move the trial balance')), '[]')
      INTO v_bad
      FROM unnest(v_off) o;
    -- The originals as restored: as the UPDATE wrote them unless a trigger
    -- or rule could have changed them (see hera_migration_write_copies_v2).
    IF jsonb_array_length(v_bad) = 0 AND p_before IS NOT NULL AND hera_migration_writes_may_be_altered_v2() THEN
        v_bad := hera_migration_original_changes_v2(p_before, hera_migration_restored_keys_v2(), 'restored');
    END IF;
    RETURN v_bad;
END;
$fn$;

-- The rollback's unit of work (run by hera_migration_isolate_v2, so a refusal
-- sets aside that one original): for the originals p_ids, still migrated by
-- run p_args.run_id and locked by the caller, void their reversal and repost
-- and put them back, through hera_migration_update_rows_v2 (smart codes kept
-- byte-identical under HERA's smart-code triggers). Verifies
-- (hera_migration_rollback_verify_v2, raising HM001 naming the originals)
-- that each original's voided pair netted to zero per account, currency and
-- period fields (so the trial balance does not move) and that nothing but
-- the intended columns of an original changed.
-- p_args: {run_id, operation_id, actor, reason}.
CREATE OR REPLACE FUNCTION hera_migration_restore_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE plpgsql
-- Not force_custom_plan: it would plan every foreign-key check of these
-- updates again (see hera_migration_write_copies_v2).
SET plan_cache_mode = auto
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
    v_before   universal_transactions[];
    v_bad      jsonb;
BEGIN
    SELECT coalesce(array_agg((t.metadata ->> 'reversal_id')::uuid ORDER BY o.n), '{}'),
           coalesce(array_agg((t.metadata ->> 'migrated_to')::uuid ORDER BY o.n), '{}'),
           array_agg(t)
      INTO v_revs, v_reps, v_before
      FROM unnest(p_ids) WITH ORDINALITY AS o (id, n)
      JOIN universal_transactions t ON t.id = o.id;

    -- 1. Void the reversals and the reposts (only this run's, still in effect).
    PERFORM hera_migration_update_rows_v2(
        (SELECT coalesce(jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'status', 'voided',
                    'code', t.transaction_code || '-VOID-' || v_run,
                    'merge', jsonb_build_object(
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
           FROM unnest(v_before) t), -- the originals as read above (locked by the caller)
        v_actor);

    -- 3. Verify (hera_migration_rollback_verify_v2): each original's voided
    -- pair nets to zero, and the originals changed only as intended.
    v_bad := hera_migration_rollback_verify_v2(p_ids, v_revs, v_reps, v_before);
    IF jsonb_array_length(v_bad) > 0 THEN
        RAISE EXCEPTION 'hera_migration_unverified: % original(s) of rollback batch % failed verification',
              jsonb_array_length(v_bad), v_op
              USING ERRCODE = 'HM001', DETAIL = v_bad::text;
    END IF;
    RETURN cardinality(p_ids);
END;
$fn$;

-- The steps of a rollback batch, in the order hera_migration_rollback_batch_v2
-- runs them. Each runs once per batch, set-based, inside the caller's
-- transaction (none commits), and each can be called alone from psql; those
-- that read the tables carry the batch's planner settings, so that alone they
-- are planned as in a batch.

-- Rollback step 1: the run, locked, and what its next rollback batch is to
-- do. The run row is locked FOR UPDATE: pause and cancel of a rollback wait
-- on this lock and flip the state, so they take effect between batches, as
-- for the execution. A run that is not RUNNING in phase ROLLBACK does
-- nothing: halted is then the batch's whole answer,
--   {halted: <state>, done: false, transactions: 0, duration_ms: 0, counters},
-- and actor, reason, batch_size and total are left NULL. Otherwise halted is
-- NULL and the row holds the run (organization_id; run_date, its
-- transaction_date, where the walk of its audit trail starts; rollback_state,
-- its metadata.rollback with cursor, retry_ids, counters and refused) and
-- what the batch works with: actor (who asked for the rollback, else the
-- run's starter), reason, batch_size (p_batch_size overrides the run's; below
-- 1 raises invalid_parameter_value) and total (the originals the run
-- migrated).
-- Raises no_data_found for an unknown run. From psql:
--   SELECT * FROM hera_migration_rollback_lock_run_v2('<run id>');
CREATE OR REPLACE FUNCTION hera_migration_rollback_lock_run_v2(
    p_run_id uuid,
    p_batch_size integer DEFAULT NULL,
    OUT halted jsonb,
    OUT organization_id uuid,
    OUT run_date timestamptz,
    OUT rollback_state jsonb,
    OUT actor uuid,
    OUT reason text,
    OUT batch_size integer,
    OUT total bigint
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_meta jsonb;
BEGIN
    SELECT r.organization_id, r.run_date, r.metadata INTO organization_id, run_date, v_meta
      FROM hera_migration_lock_run_v2(p_run_id) r;
    rollback_state := coalesce(v_meta -> 'rollback', '{}');
    IF coalesce(v_meta ->> 'state', '') <> 'RUNNING'
       OR coalesce(v_meta ->> 'phase', '') <> 'ROLLBACK' THEN
        halted := jsonb_build_object('halted', v_meta ->> 'state', 'done', false,
                                     'transactions', 0, 'duration_ms', 0,
                                     'counters', coalesce(rollback_state -> 'counters', '{}'));
        RETURN;
    END IF;
    actor      := coalesce((rollback_state ->> 'requested_by')::uuid, (v_meta ->> 'started_by')::uuid);
    reason     := coalesce(rollback_state ->> 'reason', 'Finance DNA v2 migration rollback');
    batch_size := coalesce(p_batch_size, (v_meta #>> '{parameters,batch_size}')::int, 1000);
    IF batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size: must be at least 1, got %', batch_size
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    total      := coalesce((v_meta #>> '{counters,migrated}')::bigint, 0);
END;
$fn$;

-- Rollback step 2: the next originals to restore, at most p_limit. A retry
-- (p_rollback.retry_ids, set when a rollback whose restores were refused is
-- asked again) takes the first of those, and retry_left is what remains of
-- them. Otherwise they come from the run's audit trail: its REVERSE_REPOST
-- MIGRATION_OPERATION rows in (transaction_date, id) order and, within each,
-- its migrated_ids in order, after p_rollback.cursor ({transaction_date, id,
-- offset}); next_cursor is where this batch stops (NULL when it took none).
-- The walk reads the (organization_id, transaction_date, id) index in order
-- and stops at the limit, so a batch costs the same at the start and at the
-- end: hence the planner settings (as the batch's). exhausted: no original
-- is left after these (the rest of the budget may go to the aliases).
-- It neither locks nor writes anything.
CREATE OR REPLACE FUNCTION hera_migration_rollback_next_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_run_date timestamptz,
    p_rollback jsonb,
    p_limit integer,
    OUT ids uuid[],
    OUT retrying boolean,
    OUT retry_left jsonb,
    OUT next_cursor jsonb,
    OUT exhausted boolean
)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_retry  jsonb := coalesce(p_rollback -> 'retry_ids', '[]');
    v_c_date timestamptz;
    v_c_id   uuid;
    v_c_off  bigint;
    v_l_date timestamptz;
    v_l_id   uuid;
    v_l_off  bigint;
BEGIN
    retrying := jsonb_array_length(v_retry) > 0;
    IF retrying THEN
        ids := ARRAY(SELECT e::uuid FROM jsonb_array_elements_text(v_retry) WITH ORDINALITY AS r (e, n)
                      WHERE n <= p_limit ORDER BY n);
        retry_left := coalesce((SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements(v_retry) WITH ORDINALITY AS r (e, n)
                                 WHERE n > p_limit), '[]');
        exhausted := jsonb_array_length(retry_left) = 0;
        RETURN;
    END IF;
    -- The run's operations are written after the run row (their dates are
    -- their batches' now()), so the first batch starts the scan at the
    -- run's own date, not at the organization's oldest transaction.
    v_c_date := coalesce((p_rollback #>> '{cursor,transaction_date}')::timestamptz, p_run_date);
    v_c_id   := coalesce((p_rollback #>> '{cursor,id}')::uuid, '00000000-0000-0000-0000-000000000000');
    v_c_off  := coalesce((p_rollback #>> '{cursor,offset}')::bigint, 0);
    SELECT coalesce(array_agg(x.orig ORDER BY x.op_date, x.op_id, x.ord), '{}'),
           (array_agg(x.op_date ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1],
           (array_agg(x.op_id ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1],
           (array_agg(x.ord ORDER BY x.op_date DESC, x.op_id DESC, x.ord DESC))[1]
      INTO ids, v_l_date, v_l_id, v_l_off
      FROM (SELECT op.transaction_date AS op_date, op.id AS op_id, m.ord, m.orig::uuid AS orig
              FROM universal_transactions op
             CROSS JOIN LATERAL jsonb_array_elements_text(
                       coalesce(op.metadata -> 'migrated_ids', '[]')) WITH ORDINALITY AS m (orig, ord)
             WHERE op.organization_id = p_organization_id
               AND (op.transaction_date, op.id) >= (v_c_date, v_c_id)
               AND op.transaction_type = 'MIGRATION_OPERATION'
               AND op.metadata ->> 'migration_id' = p_run_id::text
               AND op.metadata ->> 'operation_type' = 'REVERSE_REPOST'
               AND NOT (op.id = v_c_id AND m.ord <= v_c_off)
             ORDER BY op.transaction_date, op.id, m.ord
             LIMIT p_limit) x;
    retry_left := v_retry;
    IF v_l_id IS NOT NULL THEN
        next_cursor := jsonb_build_object('transaction_date', v_l_date, 'id', v_l_id, 'offset', v_l_off);
    END IF;
    -- Exhausted when the scan ran short, or once it has reached every
    -- original the run counts migrated (no empty batch to find that out).
    exhausted := cardinality(ids) < p_limit
                 OR coalesce((p_rollback #>> '{counters,processed}')::bigint, 0) + cardinality(ids)
                    >= (SELECT coalesce((t.metadata #>> '{counters,migrated}')::bigint, 0)
                          FROM universal_transactions t WHERE t.id = p_run_id);
END;
$fn$;

-- Rollback step 3: of the originals p_ids, those run p_run_id still holds
-- migrated, locked FOR UPDATE (in id order). The test is re-checked on the
-- locked row, so an original restored by an earlier (or concurrent) rollback
-- batch, or migrated again by a later run, is left out: each is restored at
-- most once. The rest of p_ids count as already restored.
CREATE OR REPLACE FUNCTION hera_migration_rollback_lock_originals_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_ids uuid[]
)
RETURNS uuid[]
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_origs uuid[];
BEGIN
    SELECT coalesce(array_agg(o.id ORDER BY o.id), '{}')
      INTO v_origs
      FROM (SELECT t.id
              FROM universal_transactions t
             WHERE t.id = ANY (p_ids)
               AND t.organization_id = p_organization_id
               AND t.transaction_status = 'reversed'
               AND t.metadata ->> 'migration_run_id' = p_run_id::text
               AND t.metadata ? 'migrated_to'
             ORDER BY t.id
               FOR UPDATE) o;
    RETURN v_origs;
END;
$fn$;

-- Rollback step 4: the writes. Runs the restore unit, hera_migration_restore_v2
-- (void each original's reversal and repost, put it back, the balance
-- proof), through hera_migration_isolate_v2: an original the database (or
-- the proof) refuses to restore stays migrated, its ledger whole, and is
-- listed with the database's own message; the rest are restored. p_ids are
-- locked originals (hera_migration_rollback_lock_originals_v2); the writes
-- name p_operation_id (the batch's audit row), p_actor and p_reason. Returns
-- restored (the ids restored) and refused ([{transaction_id, rule, reason,
-- sqlstate, ...}]). It writes: from psql, inside a transaction rolled back.
CREATE OR REPLACE FUNCTION hera_migration_rollback_write_v2(
    p_run_id uuid,
    p_operation_id uuid,
    p_actor uuid,
    p_reason text,
    p_ids uuid[],
    OUT restored uuid[],
    OUT refused jsonb
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_restore jsonb;
BEGIN
    v_restore := hera_migration_isolate_v2('hera_migration_restore_v2', p_ids, jsonb_build_object(
        'run_id', p_run_id, 'operation_id', p_operation_id, 'actor', p_actor, 'reason', p_reason));
    restored := ARRAY(SELECT jsonb_array_elements_text(v_restore -> 'done')::uuid);
    refused := v_restore -> 'refused';
END;
$fn$;

-- Rollback step 5: the run's reporting aliases. Once every original is back
-- (p_exhausted), the rest of the batch's budget (p_budget_left, the batch
-- size less the originals it took) removes them, from p_rollback's
-- alias_cursor on, until aliases_done. Scanning for them is cheaper than
-- restoring, so a batch may scan fifty rows per unit of budget left
-- (measured: 10,000 rows of range in about 40 ms, against about 600 ms to
-- restore 1,000 originals). Before that, or once done, it does nothing and
-- answers p_rollback's state. Returns removed, done (aliases_done),
-- alias_cursor and refused: an alias the database refuses to remove stays,
-- listed like a refused restore with kind 'alias' (a retry scans for the
-- run's aliases again).
CREATE OR REPLACE FUNCTION hera_migration_rollback_aliases_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_actor uuid,
    p_rollback jsonb,
    p_exhausted boolean,
    p_budget_left integer,
    OUT removed bigint,
    OUT done boolean,
    OUT alias_cursor jsonb,
    OUT refused jsonb
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_alias jsonb;
BEGIN
    removed      := 0;
    done         := coalesce((p_rollback ->> 'aliases_done')::boolean, false);
    alias_cursor := p_rollback -> 'alias_cursor';
    refused      := '[]';
    IF p_exhausted AND NOT done AND NOT hera_migration_was_aliased_v2(p_organization_id, p_run_id) THEN
        done := true; -- nothing ever aliased what it skipped: no scan, no empty batches
    ELSIF p_exhausted AND NOT done THEN
        v_alias := hera_migration_remove_reporting_aliases_v2(
            p_organization_id, p_run_id, greatest(p_budget_left, 1) * 50, alias_cursor, p_actor);
        removed      := (v_alias ->> 'removed')::bigint;
        done         := (v_alias ->> 'done')::boolean;
        alias_cursor := v_alias -> 'cursor';
        refused      := coalesce((SELECT jsonb_agg(e || '{"kind": "alias"}')
                                    FROM jsonb_array_elements(v_alias -> 'refused') e), '[]');
    END IF;
END;
$fn$;

-- Whether reporting aliases were ever applied to what run p_run_id skipped:
-- an ALIASING run of it (created before it writes any alias), or an ALIAS
-- audit row naming it (psql's application, written with its aliases).
CREATE OR REPLACE FUNCTION hera_migration_was_aliased_v2(p_organization_id uuid, p_run_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM universal_transactions t
         WHERE t.organization_id = p_organization_id
           AND ((t.transaction_type = 'MIGRATION_RUN'
                 AND t.metadata #>> '{aliasing,migration_id}' = p_run_id::text)
             OR (t.transaction_type = 'MIGRATION_OPERATION'
                 AND t.metadata ->> 'operation_type' = 'ALIAS'
                 AND t.metadata ->> 'migration_id' = p_run_id::text)))
$$;

-- Rollback step 6: the batch's answer (see hera_migration_rollback_batch_v2)
-- and the rollback's counters after it: p_rollback.counters (before the
-- batch) plus what this batch did. The batch is counters.batches + 1;
-- p_items are the originals it took, p_locked those still migrated (the rest
-- were already restored), p_restored those restored; p_refused is this
-- batch's refusals (restores, then aliases); refused counts them with
-- p_rollback.refused. A retry's originals (p_retrying) were counted as
-- processed by the pass that first met them; remaining adds what is left of
-- the retry (p_retry_left). duration_ms runs from p_started. Writes nothing
-- and reads no table: the answer's one definition.
CREATE OR REPLACE FUNCTION hera_migration_rollback_result_v2(
    p_operation_id uuid,
    p_rollback jsonb,
    p_total bigint,
    p_items uuid[],
    p_locked uuid[],
    p_restored uuid[],
    p_refused jsonb,
    p_removed bigint,
    p_retrying boolean,
    p_retry_left jsonb,
    p_done boolean,
    p_started timestamptz
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_counters jsonb := coalesce(p_rollback -> 'counters', '{}');
    v_batch_no bigint := coalesce((v_counters ->> 'batches')::bigint, 0) + 1;
BEGIN
    v_counters := v_counters || jsonb_build_object(
        'batches', v_batch_no,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0)
                     + CASE WHEN p_retrying THEN 0 ELSE cardinality(p_items) END,
        'restored', coalesce((v_counters ->> 'restored')::bigint, 0) + cardinality(p_restored),
        'already_restored', coalesce((v_counters ->> 'already_restored')::bigint, 0)
                            + cardinality(p_items) - cardinality(p_locked),
        'refused', jsonb_array_length(coalesce(p_rollback -> 'refused', '[]') || p_refused),
        'aliases_removed', coalesce((v_counters ->> 'aliases_removed')::bigint, 0) + p_removed,
        'total', p_total);
    RETURN jsonb_build_object(
        'operation_id', p_operation_id,
        'batch_number', v_batch_no,
        'phase', 'ROLLBACK',
        'transactions', cardinality(p_items),
        'restored', cardinality(p_restored),
        'already_restored', cardinality(p_items) - cardinality(p_locked),
        'refused', p_refused,
        'aliases_removed', p_removed,
        'first_transaction_id', p_items[1],
        'last_transaction_id', p_items[cardinality(p_items)],
        'remaining', greatest(p_total - (v_counters ->> 'processed')::bigint, 0) + jsonb_array_length(p_retry_left),
        'balanced', true,
        'done', p_done,
        'duration_ms', round(extract(epoch FROM clock_timestamp() - p_started) * 1000, 3),
        'counters', v_counters);
END;
$fn$;

-- Rollback step 7: the batch recorded and the rollback advanced, last, so
-- that both commit with the restores or not at all. The ROLLBACK
-- MIGRATION_OPERATION audit row holds p_result
-- (hera_migration_rollback_result_v2's), the reason and restored_ids
-- (p_restored); the run's metadata.rollback (p_rollback, as locked) takes the
-- result's counters, every refusal so far, what is left of a retry
-- (p_retry_left), the cursor (p_next_cursor; unchanged when NULL) and the
-- aliases' progress (p_aliases_done, p_alias_cursor). Both name p_actor.
CREATE OR REPLACE FUNCTION hera_migration_rollback_advance_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_actor uuid,
    p_reason text,
    p_rollback jsonb,
    p_result jsonb,
    p_restored uuid[],
    p_retry_left jsonb,
    p_next_cursor jsonb,
    p_aliases_done boolean,
    p_alias_cursor jsonb
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM hera_migration_record_operation_v2((p_result ->> 'operation_id')::uuid, p_organization_id,
        p_result || jsonb_build_object('migration_id', p_run_id, 'operation_type', 'ROLLBACK',
                                       'reason', p_reason, 'restored_ids', to_jsonb(p_restored)),
        p_actor);

    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('rollback',
        p_rollback || jsonb_build_object('counters', p_result -> 'counters', 'aliases_done', p_aliases_done,
                                         'refused', coalesce(p_rollback -> 'refused', '[]') || (p_result -> 'refused'),
                                         'retry_ids', p_retry_left)
                   || CASE WHEN p_next_cursor IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('cursor', p_next_cursor) END
                   || CASE WHEN p_alias_cursor IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('alias_cursor', p_alias_cursor) END));
END;
$fn$;

-- One batch of the rollback of run p_run_id, in the caller's transaction:
-- the steps above, in order, as one unit that commits whole or not at all.
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
-- at the budget; nothing sorts what remains. The steps inherit these
-- settings (those that read the tables repeat them, for a call from psql).
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_started   timestamptz := clock_timestamp();
    v_operation uuid := gen_random_uuid();
    v_run       record;  -- hera_migration_rollback_lock_run_v2
    v_next      record;  -- hera_migration_rollback_next_v2
    v_locked    uuid[];
    v_restore   record;  -- hera_migration_rollback_write_v2
    v_aliases   record;  -- hera_migration_rollback_aliases_v2
    v_result    jsonb;
BEGIN
    -- 1. The run, locked; a paused or finished rollback does nothing.
    v_run := hera_migration_rollback_lock_run_v2(p_run_id, p_batch_size);
    IF v_run.halted IS NOT NULL THEN
        RETURN v_run.halted;
    END IF;
    -- 2. The next originals: a retry's, or from the run's audit trail.
    v_next := hera_migration_rollback_next_v2(p_run_id, v_run.organization_id, v_run.run_date,
                                              v_run.rollback_state, v_run.batch_size);
    -- 3. Locked, and only those this run still holds migrated.
    v_locked := hera_migration_rollback_lock_originals_v2(p_run_id, v_run.organization_id, v_next.ids);
    -- 4. Void the copies and put the originals back, each refusal set aside.
    v_restore := hera_migration_rollback_write_v2(p_run_id, v_operation, v_run.actor, v_run.reason, v_locked);
    -- 5. Once every original is back, the rest of the budget removes aliases.
    v_aliases := hera_migration_rollback_aliases_v2(p_run_id, v_run.organization_id, v_run.actor,
                                                    v_run.rollback_state, v_next.exhausted,
                                                    v_run.batch_size - cardinality(v_next.ids));
    -- 6. The answer and the rollback's counters.
    v_result := hera_migration_rollback_result_v2(v_operation, v_run.rollback_state, v_run.total, v_next.ids,
                                                  v_locked, v_restore.restored,
                                                  v_restore.refused || v_aliases.refused, v_aliases.removed,
                                                  v_next.retrying, v_next.retry_left,
                                                  v_next.exhausted AND v_aliases.done, v_started);
    -- 7. The audit row, and the rollback's cursor, counters and refusals.
    PERFORM hera_migration_rollback_advance_v2(p_run_id, v_run.organization_id, v_run.actor, v_run.reason,
                                               v_run.rollback_state, v_result, v_restore.restored,
                                               v_next.retry_left, v_next.next_cursor, v_aliases.done,
                                               v_aliases.alias_cursor);
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
     WHERE id = p_run_id;
    SELECT hera_migration_append_event_v2(p_run_id, jsonb_build_object(
        'kind', 'ROLLBACK_STARTED',
        'message', 'rolling back: ' || (metadata #>> '{rollback,reason}'),
        'actor', p_actor), p_actor)
      FROM universal_transactions WHERE id = p_run_id;
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
    IF p_rollback_reason IS NULL OR btrim(p_rollback_reason) = '' THEN
        RAISE EXCEPTION 'reason: is required: say why the migration is rolled back'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
        EXIT WHEN v_batch ? 'halted';
        IF (v_batch ->> 'transactions')::bigint > 0 THEN
            PERFORM hera_migration_append_event_v2(v_run_id, jsonb_build_object(
                'kind', 'BATCH',
                'message', format('batch %s committed (from psql): %s transaction(s), %s restored',
                                  v_batch ->> 'batch_number', v_batch ->> 'transactions', v_batch ->> 'restored'),
                'health', CASE WHEN jsonb_array_length(v_batch -> 'refused') > 0 THEN 'WARNING' ELSE 'HEALTHY' END,
                'batch_transactions', (v_batch ->> 'transactions')::bigint,
                'current_batch_ms', (v_batch ->> 'duration_ms')::numeric));
        END IF;
        EXIT WHEN (v_batch ->> 'done')::boolean;
    END LOOP;

    SELECT metadata INTO v_meta FROM universal_transactions WHERE id = v_run_id;
    PERFORM hera_migration_update_run_v2(v_run_id, jsonb_build_object(
        'rollback', (v_meta -> 'rollback') || jsonb_build_object('finished_at', now())));
    PERFORM hera_migration_set_state_v2(v_run_id, 'ROLLED_BACK', NULL,
        CASE WHEN jsonb_array_length(coalesce(v_meta #> '{rollback,refused}', '[]')) > 0
             THEN format('rolled back, except %s transaction(s) whose restore the database refused',
                         jsonb_array_length(v_meta #> '{rollback,refused}'))
             ELSE 'rolled back' END);

    RETURN jsonb_build_object('migration_id', v_run_id, 'organization_id', p_organization_id,
                              'state', 'ROLLED_BACK', 'already_rolled_back', false,
                              'reason', v_meta #>> '{rollback,reason}',
                              'refused_transactions', coalesce(v_meta #> '{rollback,refused}', '[]'),
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3))
           || coalesce(v_meta #> '{rollback,counters}', '{}');
END;
$fn$;

-- What of run p_run_id is in effect, that a rollback undoes, row by row:
-- role 'original' (migrated, status 'reversed': to restore), 'reversal' and
-- 'repost' (its copies not voided: to void), 'alias' (a reporting alias the
-- run applied: to remove). Validation's rollback check counts these, and
-- PreviewRollback lists them.
CREATE OR REPLACE FUNCTION hera_migration_in_effect_v2(p_organization_id uuid, p_run_id uuid)
RETURNS TABLE (id uuid, transaction_code text, transaction_date timestamptz,
               fiscal_period_entity_id uuid, role text)
LANGUAGE sql STABLE
AS $$
    SELECT t.id, t.transaction_code, t.transaction_date, t.fiscal_period_entity_id,
           CASE WHEN t.metadata ->> 'alias_migration_id' = p_run_id::text THEN 'alias'
                WHEN t.metadata ? 'reversal_of' THEN 'reversal'
                WHEN t.metadata ? 'original_transaction_id' THEN 'repost'
                ELSE 'original' END
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND (t.metadata ->> 'alias_migration_id' = p_run_id::text
            OR (coalesce(t.transaction_status, '') <> 'voided'
                AND t.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION')
                AND ((t.metadata ->> 'migration_run_id' = p_run_id::text
                      AND (t.metadata ? 'reversal_of' OR t.transaction_status = 'reversed'))
                     OR (t.metadata ->> 'migration_id' = p_run_id::text
                         AND t.metadata ? 'original_transaction_id'))))
$$;
