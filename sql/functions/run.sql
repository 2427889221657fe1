-- A migration run: a MIGRATION_RUN row of universal_transactions (smart code
-- HERA.ACCOUNTING.MIGRATION.RUN.STATE.v2: the issue's HERA.ACCOUNTING.MIGRATION.RUN.v2
-- has two segments after the module, and HERA's rule needs three) whose
-- metadata holds its parameters, state, cursor and counters (zero tables).
-- p_parameters: {from_date, to_date, batch_size, smart_code_mappings,
-- candidate_statuses, closed_period_policy, dry_run,
-- max_transactions_per_second, batch_delay_ms, plan_fingerprint}. Returns the
-- run's id (its migration_id).

-- Every write of a run's row goes through here: p_patch merged into its
-- metadata, and its status and author when given. smart_code is named in the
-- SET list so that HERA's smart-code triggers keep its lower-case version
-- marker (an UPDATE that does not name it leaves the code upper-cased).
CREATE OR REPLACE FUNCTION hera_migration_update_run_v2(
    p_run_id uuid,
    p_patch jsonb,
    p_status text DEFAULT NULL,
    p_actor uuid DEFAULT NULL
)
RETURNS void
LANGUAGE sql
AS $$
    UPDATE universal_transactions
       SET metadata = coalesce(metadata, '{}') || p_patch,
           transaction_status = coalesce(p_status, transaction_status),
           updated_by = coalesce(p_actor, updated_by),
           updated_at = now(),
           version = coalesce(version, 1) + 1,
           smart_code = smart_code
     WHERE id = p_run_id
$$;

-- A run's state change, the one way its state moves: the new state (and
-- transaction_status), finished_at when it ends (cleared when a FAILED run
-- is resumed), the message when given,
-- the author when given, and its event in the run's history (PAUSED,
-- RESUMED, CANCELLED, or ENDED; see events.sql) in the same transaction.
-- p_from: only when the run is in one of these states (a user's control
-- wins over an executor's end, say); NULL: any. Returns whether the state
-- changed.
CREATE OR REPLACE FUNCTION hera_migration_set_state_v2(
    p_run_id uuid,
    p_state text,
    p_actor uuid DEFAULT NULL,
    p_message text DEFAULT NULL,
    p_from text[] DEFAULT NULL
)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_before text;
BEGIN
    SELECT coalesce(metadata ->> 'state', 'RUNNING') INTO v_before
      FROM universal_transactions WHERE id = p_run_id FOR UPDATE;
    IF NOT FOUND OR (p_from IS NOT NULL AND NOT v_before = ANY (p_from)) THEN
        RETURN false;
    END IF;
    UPDATE universal_transactions
       SET metadata = CASE WHEN p_state IN ('RUNNING', 'PAUSED') THEN metadata - 'finished_at'
                           ELSE metadata END
               || jsonb_build_object('state', p_state)
               || CASE WHEN p_state IN ('RUNNING', 'PAUSED') THEN '{}'::jsonb
                       ELSE jsonb_build_object('finished_at', now()) END
               || CASE WHEN p_message IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('message', p_message) END,
           transaction_status = lower(p_state),
           updated_by = coalesce(p_actor, updated_by),
           updated_at = now(),
           version = coalesce(version, 1) + 1,
           smart_code = smart_code
     WHERE id = p_run_id;
    PERFORM hera_migration_append_event_v2(p_run_id, jsonb_build_object(
        'kind', CASE p_state WHEN 'PAUSED' THEN 'PAUSED'
                             WHEN 'RUNNING' THEN 'RESUMED'
                             WHEN 'CANCELLED' THEN 'CANCELLED'
                             ELSE 'ENDED' END,
        'message', coalesce(p_message, lower(p_state)),
        'actor', p_actor), p_actor);
    RETURN true;
END;
$fn$;

-- UpdateMigration: p_changes merged into the run's parameters, the change
-- recorded (when, by whom, what) under last_update, and as an UPDATED event
-- naming each old and new value.
CREATE OR REPLACE FUNCTION hera_migration_set_parameters_v2(p_run_id uuid, p_changes jsonb, p_actor uuid)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_before jsonb;
BEGIN
    SELECT coalesce(metadata -> 'parameters', '{}') INTO v_before
      FROM universal_transactions WHERE id = p_run_id FOR UPDATE;
    UPDATE universal_transactions
       SET metadata = metadata || jsonb_build_object(
               -- signals: the settings named replace theirs, the rest stay.
               'parameters', (metadata -> 'parameters') || p_changes
                   || CASE WHEN p_changes ? 'signals'
                           THEN jsonb_build_object('signals', coalesce(metadata #> '{parameters,signals}', '{}')
                                                              || (p_changes -> 'signals'))
                           ELSE '{}' END,
               'last_update', jsonb_build_object('at', now(), 'by', p_actor, 'changes', p_changes)),
           updated_by = p_actor,
           updated_at = now(),
           version = coalesce(version, 1) + 1,
           smart_code = smart_code
     WHERE id = p_run_id;
    PERFORM hera_migration_append_event_v2(p_run_id, jsonb_build_object(
        'kind', 'UPDATED',
        'message', 'updated by ' || coalesce(p_actor::text, 'psql') || ': ' ||
            (SELECT string_agg(format('%s %s -> %s', c.key,
                                      coalesce(v_before ->> c.key, 'none'),
                                      coalesce(c.value #>> '{}', 'none')), ', ' ORDER BY c.key)
               FROM jsonb_each(p_changes) c),
        'actor', p_actor), p_actor);
END;
$fn$;

-- Run p_run_id's row, locked until the caller's transaction ends (a batch of
-- any phase holds it, so controls wait for the batch in flight and two
-- servers never run one run's batches at once): its organization, date and
-- metadata. NOT_FOUND (no_data_found) when it is no run (or, under row-level
-- security, not one of the caller's organization).
CREATE OR REPLACE FUNCTION hera_migration_lock_run_v2(
    p_run_id uuid,
    OUT organization_id uuid,
    OUT run_date timestamptz,
    OUT metadata jsonb
)
LANGUAGE plpgsql
AS $fn$
BEGIN
    SELECT t.organization_id, t.transaction_date, coalesce(t.metadata, '{}')
      INTO organization_id, run_date, metadata
      FROM universal_transactions t
     WHERE t.id = p_run_id AND t.transaction_type = 'MIGRATION_RUN'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration run %', p_run_id USING ERRCODE = 'no_data_found';
    END IF;
END;
$fn$;

-- The fence of a run's executors. An executor that takes a run (it holds
-- the organization's lease: src/migration/engine/lease.rs) moves the run's
-- lease generation on, under the run's row lock; every batch reads the
-- generation under that same lock, which it holds to its commit, and commits
-- only when it is its executor's. So once a server has taken a run over, the
-- one it took it from (its lease lost, say its lease's session cut, and not
-- noticed yet) can commit no batch of it: its batch in flight commits before
-- the move (the move waits for its lock) or is refused after it. p_server
-- names the executing server in the run's record. Returns the generation.
CREATE OR REPLACE FUNCTION hera_migration_take_lease_v2(p_run_id uuid, p_server text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_generation bigint;
BEGIN
    SELECT coalesce((l.metadata #>> '{lease,generation}')::bigint, 0) + 1
      INTO v_generation
      FROM hera_migration_lock_run_v2(p_run_id) l;
    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('lease', jsonb_build_object(
        'generation', v_generation, 'server', p_server, 'since', now())));
    RETURN v_generation;
END;
$fn$;

-- A MIGRATION_OPERATION audit row of a run's work (a batch of reverse and
-- repost, of rollback, an application of aliases): completed, zero total,
-- its metadata p_metadata, by p_actor. Every such row is written here.
CREATE OR REPLACE FUNCTION hera_migration_record_operation_v2(
    p_id uuid,
    p_organization_id uuid,
    p_metadata jsonb,
    p_actor uuid
)
RETURNS void
LANGUAGE sql
AS $$
    SELECT hera_migration_write_audit_row_v2(
        p_id, p_organization_id, 'MIGRATION_OPERATION', 'MIGOP-' || p_id, 'completed',
        'HERA.ACCOUNTING.MIGRATION.AUDIT.TRAIL.v2', p_metadata, p_actor)
$$;

-- The catalog half of a run's snapshot: {tables_taken_at, tables:
-- ["schema.table", ...]}, every ordinary and partitioned table outside the
-- system schemas (pg_catalog, information_schema, pg_toast*, and pg_temp*:
-- another session's temporary tables come and go with it and would make the
-- comparison flap). Views are not tables.
CREATE OR REPLACE FUNCTION hera_migration_catalog_snapshot_v2()
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'tables_taken_at', now(),
        'tables', coalesce(
            (SELECT jsonb_agg(n.nspname || '.' || c.relname ORDER BY n.nspname, c.relname)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%'
                AND n.nspname NOT LIKE 'pg_temp%'), '[]'))
$$;

-- The ledger half: {taken_at, trial_balance: [{account, account_key,
-- currency_code, fiscal_period, net_amount}]}, net_amount the exact NUMERIC
-- as text (JSON numbers may lose digits in clients).
CREATE OR REPLACE FUNCTION hera_migration_ledger_snapshot_v2(p_organization_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
-- A read of the whole ledger, also when the first batch (which forbids
-- sequential scans and sorts for its own lookups) takes it. In one process:
-- the engine reads it beside the run's first batches, which it must leave a
-- core to (parallel workers on a 2-core machine made them 2.5x slower).
SET enable_seqscan = on
SET enable_sort = on
SET enable_bitmapscan = on
SET max_parallel_workers_per_gather = 0
AS $$
    SELECT jsonb_build_object(
        'taken_at', now(),
        'trial_balance', coalesce(
            (SELECT jsonb_agg(jsonb_build_object('account', tb.account,
                                                 'account_key', tb.account_key,
                                                 'currency_code', tb.currency_code,
                                                 'fiscal_period', tb.fiscal_period,
                                                 'net_amount', tb.net_amount::text)
                              ORDER BY tb.account_key, tb.currency_code, tb.fiscal_period)
               FROM hera_migration_trial_balance_v2(p_organization_id) tb), '[]'))
$$;

-- The plan of a run that started before its plan was checked (a start
-- without an expected fingerprint streams at once; its executor checks the
-- plan before the first write): p_plan's total_candidates, prediction and
-- plan_fingerprint (hera_migration_preview_candidates_v2's) recorded as a
-- checked start records them, under the run's lock.
CREATE OR REPLACE FUNCTION hera_migration_record_plan_v2(p_run_id uuid, p_plan jsonb)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_parameters jsonb;
BEGIN
    SELECT coalesce(r.metadata -> 'parameters', '{}') INTO v_parameters FROM hera_migration_lock_run_v2(p_run_id) r;
    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object(
        'total_candidates', p_plan -> 'total_candidates',
        'prediction', p_plan -> 'prediction',
        'parameters', v_parameters || jsonb_build_object('plan_fingerprint', p_plan -> 'plan_fingerprint')));
END;
$fn$;

-- The trial balance of a run the engine executes, in two steps around its
-- first batch. Before it (p_trial_balance NULL): the run's snapshot says
-- trial_balance_pending, so that no batch takes it, while the engine reads
-- the ledger in a REPEATABLE READ transaction whose snapshot it took before
-- the first batch began (so what it reads is the ledger before any write of
-- the run). Then (p_trial_balance: hera_migration_ledger_snapshot_v2's
-- answer in that transaction): recorded in place of the mark. A run whose
-- snapshot holds a trial balance already keeps it, and one that has run a
-- batch is not marked again (a reading the server's end interrupted cannot
-- be redone once the ledger moved). Returns whether the snapshot changed.
CREATE OR REPLACE FUNCTION hera_migration_record_trial_balance_v2(p_run_id uuid, p_trial_balance jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_snapshot jsonb;
    v_batches  bigint;
BEGIN
    SELECT coalesce(r.metadata -> 'snapshot', '{}'), coalesce((r.metadata #>> '{counters,batches}')::bigint, 0)
      INTO v_snapshot, v_batches
      FROM hera_migration_lock_run_v2(p_run_id) r;
    IF v_snapshot ? 'trial_balance' OR (p_trial_balance IS NULL AND v_batches > 0) THEN
        RETURN false;
    END IF;
    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('snapshot',
                CASE WHEN p_trial_balance IS NULL THEN v_snapshot || '{"trial_balance_pending": true}'
                     ELSE (v_snapshot - 'trial_balance_pending') || p_trial_balance END));
    RETURN true;
END;
$fn$;

-- The run records the tables that exist when it is created (the catalog
-- half of its snapshot, which ValidateMigration compares against); its first
-- batch records the trial balance, the other half: taking that here would
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
               'counters', '{}'::jsonb,
               'snapshot', hera_migration_catalog_snapshot_v2()),
           p_actor, p_actor
      FROM new_run
    RETURNING id
$$;
