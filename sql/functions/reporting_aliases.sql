-- Phase 3: metadata-only reporting aliases.
--
-- An alias lets v2 reports read a v1 transaction as if it carried a v2 smart
-- code, without moving any data: the transaction keeps its smart code, lines
-- and status; its metadata gains
--   reporting_smart_code  the v2 code reports should use,
--   original_smart_code   the code it really carries,
--   alias_created_at, alias_version ('v2.1'), alias_batch_id,
--   alias_migration_id    (the run whose skipped transactions were aliased).
-- Removing those keys undoes it exactly, so an alias is reversible by design.
--
-- Everything is batched over a keyset cursor on (transaction_date, id), the
-- order of the ut_org_date_idx index, so that a million-row organization is
-- aliased in many short transactions of flat cost, never one long one.
-- Nothing here creates a table: mappings live in a jsonb argument.

-- The mappings as a set of (source, target) in normalized form, checked.
-- An empty array means "every v1 code maps to its .v2 form" and yields no
-- rows; the callers apply that default per transaction.
-- Raises invalid_parameter_value (22023) naming the offending field
-- ("smart_code_mappings[1].target_smart_code: ..."), which the RPC answers as
-- INVALID_ARGUMENT naming that field, before anything is written.
CREATE OR REPLACE FUNCTION hera_migration_alias_mappings_v2(p_smart_code_mappings jsonb)
RETURNS TABLE (source_smart_code text, target_smart_code text)
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    m   jsonb;
    src text;
    dst text;
    i   integer := 0;
BEGIN
    IF p_smart_code_mappings IS NULL OR jsonb_typeof(p_smart_code_mappings) <> 'array' THEN
        RAISE EXCEPTION 'smart_code_mappings: expected a JSON array of {source_smart_code, target_smart_code}'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR m IN SELECT e FROM jsonb_array_elements(p_smart_code_mappings) e LOOP
        i := i + 1;
        src := nullif(btrim(m ->> 'source_smart_code'), '');
        dst := nullif(btrim(m ->> 'target_smart_code'), '');
        IF jsonb_typeof(m) <> 'object' THEN
            RAISE EXCEPTION 'smart_code_mappings[%]: expected {source_smart_code, target_smart_code}', i - 1
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF src IS NULL OR NOT hera_smart_code_is_valid(src) THEN
            RAISE EXCEPTION 'smart_code_mappings[%].source_smart_code: % is not a valid HERA smart code',
                  i - 1, coalesce(src, 'nothing')
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF dst IS NULL THEN
            RAISE EXCEPTION 'smart_code_mappings[%].target_smart_code: an alias needs a target smart code', i - 1
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT hera_smart_code_is_valid(dst) THEN
            RAISE EXCEPTION 'smart_code_mappings[%].target_smart_code: % is not a valid HERA smart code', i - 1, dst
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        source_smart_code := hera_smart_code_normalize(src);
        target_smart_code := hera_smart_code_normalize(dst);
        RETURN NEXT;
    END LOOP;
END;
$fn$;

-- The aliasing's unit of work (hera_migration_isolate_v2 runs it, so that a
-- row the database refuses, say one breaking a NOT VALID CHECK that any
-- update re-checks, is set aside alone): for the ids, the alias of
-- p_args.rows -> id -> target, through hera_migration_update_rows_v2 (smart
-- codes kept byte for byte as they were).
-- p_args: {rows: {<id>: {target}}, alias_batch_id, migration_id, actor}.
CREATE OR REPLACE FUNCTION hera_migration_alias_unit_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE sql
AS $$
    SELECT hera_migration_update_rows_v2(
        (SELECT coalesce(jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'metadata', coalesce(t.metadata, '{}') || jsonb_build_object(
                        'reporting_smart_code', p_args #>> ARRAY['rows', t.id::text, 'target'],
                        'original_smart_code', t.smart_code,
                        'alias_created_at', now(),
                        'alias_version', 'v2.1',
                        'alias_batch_id', p_args ->> 'alias_batch_id')
                        || CASE WHEN p_args ->> 'migration_id' IS NULL THEN '{}'::jsonb
                                ELSE jsonb_build_object('alias_migration_id', p_args ->> 'migration_id') END)), '{}')
           FROM universal_transactions t
          WHERE t.id = ANY (p_ids)),
        (p_args ->> 'actor')::uuid)::integer
$$;

-- The transactions an application of aliases looks at, after p_cursor
-- ({transaction_date, id}; null: from the start) in (transaction_date, id)
-- order, at most p_limit (null: all, unordered, for a count), locked when
-- p_lock (a batch's; a count locks nothing).
--
-- Eligible: the organization's posted transactions whose smart code is a
-- mapped source (or any v1 code when p_smart_code_mappings is '[]'), that are
-- neither a reversal, a repost, nor migration bookkeeping. With p_migration_id,
-- what that run skipped because their period takes no postings: inside its
-- [from_date, to_date], still candidates under its rule (its statuses, v1),
-- in a CLOSED or LOCKED fiscal period (hera_migration_fiscal_periods_v2: the
-- transaction's fiscal period entity, else the period containing its date).
-- NOT_FOUND (no_data_found) for a p_migration_id that is no run of the
-- organization.
--
-- One query text for the batch and the count, so that both always agree;
-- EXECUTE plans it with the actual values every time (the batch's walk of
-- the (organization_id, transaction_date, id) index depends on them).
CREATE OR REPLACE FUNCTION hera_migration_alias_eligible_v2(
    p_organization_id uuid,
    p_smart_code_mappings jsonb,
    p_migration_id uuid,
    p_cursor jsonb,
    p_limit integer,
    p_lock boolean
)
RETURNS TABLE (id uuid, transaction_date timestamptz)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_sources  text[];
    v_from     timestamptz := '-infinity';
    v_to       timestamptz := 'infinity';
    v_statuses text[] := ARRAY['posted'];
    v_params   jsonb;
BEGIN
    SELECT coalesce(array_agg(m.source_smart_code), '{}') INTO v_sources
      FROM hera_migration_alias_mappings_v2(p_smart_code_mappings) m;
    IF p_migration_id IS NOT NULL THEN
        SELECT r.metadata -> 'parameters' INTO v_params
          FROM universal_transactions r
         WHERE r.id = p_migration_id AND r.organization_id = p_organization_id
           AND r.transaction_type = 'MIGRATION_RUN';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'migration_id: no migration run % in organization %', p_migration_id, p_organization_id
                  USING ERRCODE = 'no_data_found';
        END IF;
        v_from := (v_params ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC';
        v_to   := ((v_params ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC';
        v_statuses := hera_migration_candidate_statuses_v2(v_params);
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT t.id, t.transaction_date
          FROM universal_transactions t
         WHERE t.organization_id = $1
           AND (t.transaction_date, t.id) > ($2, $3)
           AND t.transaction_date >= $4
           AND t.transaction_date < $5
           AND t.transaction_status = ANY ($6)
           AND t.smart_code NOT LIKE 'HERA.ACCOUNTING.MIGRATION.%%'
           AND NOT coalesce(t.metadata ? 'reversal_of', false)
           AND NOT coalesce(t.metadata ? 'original_transaction_id', false)
           AND NOT coalesce(t.metadata ? 'migration_id', false)
           AND (CASE WHEN cardinality($7) = 0 THEN hera_smart_code_is_v1(t.smart_code)
                     ELSE hera_smart_code_normalize(t.smart_code) = ANY ($7) END)
           AND ($8::uuid IS NULL
                OR (hera_smart_code_is_v1(t.smart_code)
                    AND (SELECT p.status FROM hera_migration_fiscal_periods_v2($1) p
                          WHERE p.id = t.fiscal_period_entity_id
                             OR ((t.transaction_date AT TIME ZONE 'UTC')::date BETWEEN p.start_date AND p.end_date
                                 AND NOT EXISTS (SELECT 1 FROM hera_migration_fiscal_periods_v2($1) q
                                                  WHERE q.id = t.fiscal_period_entity_id))
                          ORDER BY (p.id = t.fiscal_period_entity_id) DESC, p.start_date DESC
                          LIMIT 1) IN ('CLOSED', 'LOCKED')))
         %s$q$,
        CASE WHEN p_limit IS NULL THEN ''
             ELSE format('ORDER BY t.transaction_date, t.id LIMIT %s', p_limit) END
        || CASE WHEN p_lock THEN ' FOR UPDATE' ELSE '' END)
    USING p_organization_id,
          coalesce((p_cursor ->> 'transaction_date')::timestamptz, '-infinity'),
          coalesce((p_cursor ->> 'id')::uuid, '00000000-0000-0000-0000-000000000000'),
          v_from, v_to, v_statuses, v_sources, p_migration_id;
END;
$fn$;

-- One batch of aliasing: at most p_limit eligible transactions after p_cursor
-- (hera_migration_alias_eligible_v2 says which are eligible).
--
-- Each aliased row's metadata, updated_by (p_actor, when given), updated_at
-- and version change; its smart_code stays byte-identical (see
-- hera_migration_write_copies_v2 on HERA's smart-code triggers).
--
-- Idempotent: a transaction already aliased to the same target is counted as
-- already_aliased and left untouched (not even its updated_at moves); one
-- aliased to another target is re-pointed and counted as aliased.
--
-- p_cursor: null to start, then the previous result's "cursor"
-- ({transaction_date, id}). Returns
--   {alias_batch_id, migration_id, transactions, transactions_aliased,
--    already_aliased, mappings: [{source_smart_code, target_smart_code,
--    transactions_aliased, already_aliased}], refused, cursor, done}
-- "done" is true when the batch found fewer than p_limit eligible rows.
-- Writes nothing but the aliased rows' metadata: the audit row is the
-- caller's (the ALIASING phase's batch, hera_migration_alias_batch_v2, and
-- the psql entry point hera_migration_apply_reporting_aliases_v2 record one).
CREATE OR REPLACE FUNCTION hera_migration_apply_reporting_aliases_batch_v2(
    p_organization_id uuid,
    p_smart_code_mappings jsonb,
    p_alias_batch_id uuid,
    p_migration_id uuid DEFAULT NULL,
    p_cursor jsonb DEFAULT NULL,
    p_limit integer DEFAULT 1000,
    p_actor uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
-- As in execute_batch.sql: walk the (organization_id, transaction_date, id)
-- index in order and stop at the limit, never sort what remains.
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_all_v1     boolean;
    v_sources    text[];
    v_targets    text[];
    v_ids        uuid[];
    v_last_date  timestamptz;
    v_last_id    uuid;
    v_per_map    jsonb;
    v_aliased    bigint;
    v_already    bigint;
    v_rows       jsonb;
    v_written    jsonb;
    v_refused    jsonb;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'limit: must be at least 1, got %', p_limit USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(array_agg(source_smart_code), '{}'), coalesce(array_agg(target_smart_code), '{}')
      INTO v_sources, v_targets
      FROM hera_migration_alias_mappings_v2(p_smart_code_mappings);
    v_all_v1 := cardinality(v_sources) = 0;

    -- The next eligible rows, locked: a concurrent migration batch that
    -- reverses one of them first makes PostgreSQL drop it here (the status
    -- test is re-checked on the locked row), so an alias never lands on a
    -- transaction that is no longer in effect as v1.
    SELECT coalesce(array_agg(c.id), '{}'),
           (array_agg(c.transaction_date ORDER BY c.transaction_date DESC, c.id DESC))[1],
           (array_agg(c.id ORDER BY c.transaction_date DESC, c.id DESC))[1]
      INTO v_ids, v_last_date, v_last_id
      FROM hera_migration_alias_eligible_v2(p_organization_id, p_smart_code_mappings, p_migration_id,
                                            p_cursor, p_limit, true) c;

    -- Each row's target, and whether it already carries it.
    SELECT coalesce(jsonb_object_agg(r.id, jsonb_build_object(
               'source', r.source, 'target', r.target, 'current', r.current_alias)), '{}')
      INTO v_rows
      FROM (SELECT t.id, hera_smart_code_normalize(t.smart_code) AS source,
                   CASE WHEN v_all_v1 THEN hera_smart_code_at_version(t.smart_code, 2)
                        ELSE (SELECT m.target FROM unnest(v_sources, v_targets) AS m (source, target)
                               WHERE m.source = hera_smart_code_normalize(t.smart_code) LIMIT 1)
                   END AS target,
                   t.metadata ->> 'reporting_smart_code' AS current_alias
              FROM universal_transactions t
             WHERE t.id = ANY (v_ids)) r;

    -- The writes, each row the database refuses set aside with its reason.
    v_written := hera_migration_isolate_v2('hera_migration_alias_unit_v2',
        ARRAY(SELECT r.key::uuid FROM jsonb_each(v_rows) r
               WHERE r.value ->> 'current' IS DISTINCT FROM r.value ->> 'target' ORDER BY r.key),
        jsonb_build_object('rows', v_rows, 'alias_batch_id', p_alias_batch_id,
                           'migration_id', p_migration_id, 'actor', p_actor));
    v_refused := v_written -> 'refused';

    WITH per_row AS (
        SELECT r.value ->> 'source' AS source, r.value ->> 'target' AS target,
               CASE WHEN v_written -> 'done' ? r.key THEN 'aliased'
                    WHEN r.value ->> 'current' IS NOT DISTINCT FROM r.value ->> 'target' THEN 'already'
                    ELSE 'refused' END AS outcome
          FROM jsonb_each(v_rows) r
    ),
    per_map AS (
        SELECT source, target,
               count(*) FILTER (WHERE outcome = 'aliased') AS aliased,
               count(*) FILTER (WHERE outcome = 'already') AS already,
               count(*) FILTER (WHERE outcome = 'refused') AS refused
          FROM per_row
         GROUP BY source, target
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_smart_code', source, 'target_smart_code', target,
               'transactions_aliased', aliased, 'already_aliased', already, 'refused', refused)
               ORDER BY source, target), '[]'),
           coalesce(sum(aliased), 0), coalesce(sum(already), 0)
      INTO v_per_map, v_aliased, v_already
      FROM per_map;

    RETURN jsonb_build_object(
        'alias_batch_id', p_alias_batch_id,
        'migration_id', p_migration_id,
        'transactions', cardinality(v_ids),
        'transactions_aliased', v_aliased,
        'already_aliased', v_already,
        'mappings', v_per_map,
        'refused', v_refused,
        'cursor', CASE WHEN v_last_id IS NULL THEN p_cursor
                       ELSE jsonb_build_object('transaction_date', v_last_date, 'id', v_last_id) END,
        'done', cardinality(v_ids) < p_limit);
END;
$fn$;

-- Sums what the batches of one application aliased, per mapping (keeping
-- requested mappings that matched nothing, with zeros), and records it as one
-- ALIAS MIGRATION_OPERATION row (its id is the alias batch id). Shared by the
-- psql entry point and the RPC, which runs the batches in transactions of
-- their own. p_rows: the batches' "mappings" arrays, concatenated.
CREATE OR REPLACE FUNCTION hera_migration_record_aliases_v2(
    p_organization_id uuid,
    p_alias_batch_id uuid,
    p_migration_id uuid,
    p_smart_code_mappings jsonb,
    p_rows jsonb,
    p_batches integer,
    p_actor uuid,
    p_request_id text DEFAULT NULL,
    p_refused jsonb DEFAULT '[]'
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_mappings jsonb;
    v_result   jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_smart_code', source, 'target_smart_code', target,
               'transactions_aliased', aliased, 'already_aliased', already) ORDER BY source, target), '[]')
      INTO v_mappings
      FROM (SELECT source, target, sum(aliased) AS aliased, sum(already) AS already
              FROM (SELECT e ->> 'source_smart_code' AS source, e ->> 'target_smart_code' AS target,
                           (e ->> 'transactions_aliased')::bigint AS aliased,
                           (e ->> 'already_aliased')::bigint AS already
                      FROM jsonb_array_elements(p_rows) e
                    UNION ALL
                    SELECT source_smart_code, target_smart_code, 0, 0
                      FROM hera_migration_alias_mappings_v2(p_smart_code_mappings)) x
             GROUP BY source, target) s;

    v_result := jsonb_build_object(
        'alias_batch_id', p_alias_batch_id,
        'migration_id', p_migration_id,
        'batches', p_batches,
        'transactions_aliased', (SELECT coalesce(sum((e ->> 'transactions_aliased')::bigint), 0)
                                   FROM jsonb_array_elements(v_mappings) e),
        'already_aliased', (SELECT coalesce(sum((e ->> 'already_aliased')::bigint), 0)
                              FROM jsonb_array_elements(v_mappings) e),
        'mappings', v_mappings,
        'refused', coalesce(p_refused, '[]'));

    PERFORM hera_migration_record_operation_v2(p_alias_batch_id, p_organization_id,
        v_result || jsonb_build_object('operation_type', 'ALIAS', 'phase', 'ALIASES',
                                       'smart_code_mappings', p_smart_code_mappings,
                                       'request_id', p_request_id),
        p_actor);
    RETURN v_result || jsonb_build_object('operation_id', p_alias_batch_id);
END;
$fn$;

-- The psql entry point of the guide: every batch to the end, in the caller's
-- one transaction (acceptable from psql; the RPC commits batch by batch).
-- Records one ALIAS MIGRATION_OPERATION row with the totals. Returns
--   {alias_batch_id, migration_id, transactions_aliased, already_aliased,
--    batches, operation_id, mappings: [{source_smart_code, target_smart_code,
--    transactions_aliased, already_aliased}]}
-- with a mapping of the argument that matched nothing still listed (zeros).
CREATE OR REPLACE FUNCTION hera_migration_apply_reporting_aliases_v2(
    p_organization_id uuid,
    p_smart_code_mappings jsonb,
    p_migration_id uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_alias_batch uuid := gen_random_uuid();
    v_cursor      jsonb;
    v_batch       jsonb;
    v_batches     integer := 0;
    v_rows        jsonb := '[]';
    v_refused     jsonb := '[]';
    v_actor       uuid;
BEGIN
    -- The bookkeeping row needs an author: the run's starter, else whoever
    -- created the organization (psql has no signed-in user).
    SELECT coalesce((SELECT (r.metadata ->> 'started_by')::uuid FROM universal_transactions r
                      WHERE r.id = p_migration_id AND r.organization_id = p_organization_id),
                    o.created_by)
      INTO v_actor
      FROM core_organizations o WHERE o.id = p_organization_id;
    IF v_actor IS NULL THEN
        RAISE EXCEPTION 'organization_id: no organization %', p_organization_id USING ERRCODE = 'no_data_found';
    END IF;
    LOOP
        v_batch := hera_migration_apply_reporting_aliases_batch_v2(
            p_organization_id, p_smart_code_mappings, v_alias_batch, p_migration_id, v_cursor, 5000, v_actor);
        v_batches := v_batches + 1;
        v_rows := v_rows || (v_batch -> 'mappings');
        v_refused := v_refused || coalesce(v_batch -> 'refused', '[]');
        v_cursor := v_batch -> 'cursor';
        EXIT WHEN (v_batch ->> 'done')::boolean;
    END LOOP;
    RETURN hera_migration_record_aliases_v2(p_organization_id, v_alias_batch, p_migration_id,
                                            p_smart_code_mappings, v_rows, v_batches, v_actor, NULL,
                                            v_refused);
END;
$fn$;

-- Removing a run's aliases, as a unit of work for hera_migration_isolate_v2:
-- the alias keys of the ids that still carry an alias of run
-- p_args.migration_id (no alias changes meanwhile: ApplyReportingAliases
-- waits while a run of the organization, its rollback included, is active),
-- smart codes kept as they are (hera_migration_update_rows_v2).
-- p_args: {migration_id, actor}.
CREATE OR REPLACE FUNCTION hera_migration_unalias_unit_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE sql
AS $$
    SELECT hera_migration_update_rows_v2(
        (SELECT coalesce(jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'metadata', t.metadata - 'reporting_smart_code' - 'original_smart_code' - 'alias_created_at'
                                           - 'alias_version' - 'alias_batch_id' - 'alias_migration_id')), '{}')
           FROM universal_transactions t
          WHERE t.id = ANY (p_ids) AND t.metadata ->> 'alias_migration_id' = p_args ->> 'migration_id'),
        (p_args ->> 'actor')::uuid)::integer
$$;

-- Removes the aliases a run made (alias_migration_id = p_migration_id), at
-- most p_limit rows after p_cursor; used by the rollback, batch by batch.
-- Only the alias keys go: the transaction is otherwise untouched.
-- The run's aliases all lie in its date range, so the keyset scan starts at
-- from_date and its cost per call stays flat.
-- Returns {removed, refused: [{transaction_id, rule, reason, ...}], scanned,
-- cursor, done}: "done" when fewer than p_limit rows of the range were left
-- to scan; a row whose update the database refuses keeps its alias and is
-- listed under refused.
CREATE OR REPLACE FUNCTION hera_migration_remove_reporting_aliases_v2(
    p_organization_id uuid,
    p_migration_id uuid,
    p_limit integer DEFAULT 1000,
    p_cursor jsonb DEFAULT NULL,
    p_actor uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $fn$
DECLARE
    v_params     jsonb;
    v_from       timestamptz;
    v_to         timestamptz;
    v_after_date timestamptz;
    v_after_id   uuid;
    v_ids        uuid[];
    v_scanned    integer;
    v_last_date  timestamptz;
    v_last_id    uuid;
    v_removed    integer;
    v_written    jsonb;
BEGIN
    SELECT metadata -> 'parameters' INTO v_params
      FROM universal_transactions
     WHERE id = p_migration_id AND organization_id = p_organization_id
       AND transaction_type = 'MIGRATION_RUN';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration run % in organization %', p_migration_id, p_organization_id
              USING ERRCODE = 'no_data_found';
    END IF;
    v_from := coalesce((v_params ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC', '-infinity');
    v_to   := coalesce(((v_params ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC', 'infinity');
    v_after_date := coalesce((p_cursor ->> 'transaction_date')::timestamptz, '-infinity');
    v_after_id   := coalesce((p_cursor ->> 'id')::uuid, '00000000-0000-0000-0000-000000000000');

    -- Scan p_limit rows of the range (aliased or not): the cost of a call is
    -- bounded by p_limit whatever share of the range carries aliases.
    SELECT coalesce(array_agg(s.id) FILTER (WHERE s.mine), '{}'), count(*),
           (array_agg(s.transaction_date ORDER BY s.transaction_date DESC, s.id DESC))[1],
           (array_agg(s.id ORDER BY s.transaction_date DESC, s.id DESC))[1]
      INTO v_ids, v_scanned, v_last_date, v_last_id
      FROM (SELECT t.id, t.transaction_date,
                   coalesce(t.metadata ->> 'alias_migration_id' = p_migration_id::text, false) AS mine
              FROM universal_transactions t
             WHERE t.organization_id = p_organization_id
               AND (t.transaction_date, t.id) > (v_after_date, v_after_id)
               AND t.transaction_date >= v_from
               AND t.transaction_date < v_to
             ORDER BY t.transaction_date, t.id
             LIMIT p_limit) s;

    -- The writes, each row the database refuses set aside with its reason.
    v_written := hera_migration_isolate_v2('hera_migration_unalias_unit_v2', v_ids,
        jsonb_build_object('migration_id', p_migration_id, 'actor', p_actor));
    v_removed := jsonb_array_length(v_written -> 'done');

    RETURN jsonb_build_object(
        'removed', v_removed,
        'refused', v_written -> 'refused',
        'scanned', v_scanned,
        'cursor', CASE WHEN v_last_id IS NULL THEN p_cursor
                       ELSE jsonb_build_object('transaction_date', v_last_date, 'id', v_last_id) END,
        'done', v_scanned < p_limit);
END;
$fn$;
