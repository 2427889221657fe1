-- Phase 2: one batch of a migration run, as one database transaction's work.
--
-- A run is a universal_transactions row (MIGRATION_RUN) whose metadata holds
-- its parameters, state, keyset cursor and counters. A batch:
--   1. locks the run row (two workers never run the same run's batches at once);
--   2. takes the next candidates after the cursor, in (transaction_date, id)
--      order, FOR UPDATE: PostgreSQL re-checks the candidate predicate on each
--      locked row, so a transaction is migrated at most once, ever;
--   3. sets aside what it must not touch: unmapped codes and closed or locked
--      periods (policy SKIP) are skipped; originals that do not balance, or
--      that one of HERA's rules says could not be reversed, reposted and later
--      restored (hera_migration_screen_v2), are quarantined with the rule;
--   4. writes, set-based, a HERA reversal and a v2 repost of each and marks
--      each original reversed (hera_migration_write_copies_v2), verifying what
--      it wrote; whatever the database or the verification refuses is
--      quarantined one transaction at a time with the database's own message
--      (hera_migration_isolate_v2) and the rest is written;
--   5. records a MIGRATION_OPERATION audit row and advances the run.
-- It creates no table, temporary or not: the batch lives in arrays.

-- The columns a migration means to change on an original (marking it
-- reversed): everything else must read the same afterwards.
CREATE OR REPLACE FUNCTION hera_migration_marked_columns_v2()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['transaction_status', 'version', 'updated_by', 'updated_at'] $$;

-- A row of universal_transactions as it must be preserved: every column but
-- p_changing, and metadata without the keys in p_keys (the ones the caller
-- writes or removes). Comparing it before and after an UPDATE shows whatever
-- a trigger changed beyond what the UPDATE meant to.
CREATE OR REPLACE FUNCTION hera_migration_kept_image_v2(t universal_transactions, p_changing text[], p_keys text[])
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_set(to_jsonb(t) - p_changing, '{metadata}', coalesce(t.metadata, '{}') - p_keys)
$$;

-- What a trigger changed: for each id of p_before ({id: kept image taken
-- before an UPDATE}) whose kept image now differs, an entry {transaction_id,
-- rule, reason} naming the columns (smart_code first), as HM001 wants them.
-- p_doing says what the UPDATE did ("marked reversed", "restored").
CREATE OR REPLACE FUNCTION hera_migration_image_changes_v2(
    p_before jsonb,
    p_changing text[],
    p_keys text[],
    p_doing text
)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', x.id,
               'rule', CASE WHEN c.columns[1] = 'smart_code' THEN 'smart_code_rewritten'
                            ELSE 'trigger_changed_columns' END,
               'reason', format('the database changed %s when it was %s%s, so it could not be restored exactly',
                                array_to_string(c.columns, ', '), p_doing,
                                CASE WHEN c.columns[1] = 'smart_code'
                                     THEN format(' (smart_code %s became %s)', x.before ->> 'smart_code',
                                                 x.after ->> 'smart_code')
                                     ELSE '' END))), '[]')
      FROM (SELECT t.id, p_before -> t.id::text AS before,
                   hera_migration_kept_image_v2(t, p_changing, p_keys) AS after
              FROM universal_transactions t
             -- an array of ids: a lookup by key, also under row-level security
             WHERE t.id = ANY (ARRAY(SELECT jsonb_object_keys(p_before)::uuid))) x
     CROSS JOIN LATERAL (
           SELECT ARRAY(SELECT k
                          FROM (SELECT jsonb_object_keys(x.before) UNION SELECT jsonb_object_keys(x.after)) ks (k)
                         WHERE x.before -> k IS DISTINCT FROM x.after -> k
                         ORDER BY k <> 'smart_code', k) AS columns) c
     WHERE x.before IS DISTINCT FROM x.after
$$;

-- The batch's unit of work (hera_migration_isolate_v2 runs it, and reruns it
-- on parts of the batch when something is refused): for each original of
-- p_ids, a reversal (HERA's semantics: its lines negated) and a v2 repost
-- (its lines, under their v2 codes), then the original marked reversed.
--
-- A copy carries every column of its original the migration does not mean to
-- change: currencies, exchange-rate fields, fiscal fields, references, and in
-- an attached HERA database every column it has beyond our contract (the
-- installer writes those into the column lists below). It differs in its id,
-- transaction_code (-REV, -V2), smart code (the repost's), status (posted),
-- created/updated by and at, version, its migration keys in metadata, and,
-- under POST_TO_OPEN_PERIOD, its date and period fields. A reversal keeps its
-- original's header total_amount: HERA's chk_txn_total_sign ties the sign of
-- a total to the smart code the reversal shares with its original, and the
-- reversal's direction lies in its negated lines (and metadata.reversal_of).
--
-- The originals are changed through hera_migration_update_rows_v2, which
-- keeps smart_code byte-identical under HERA's smart-code triggers; what the
-- database changed anyway is caught below.
--
-- Verification (each raises HM001 naming the originals, which the caller
-- then quarantines): every copy balances, each original's reversal and repost
-- net to zero per account, currency and period fields (so the trial balance
-- cannot move), and no original reads differently than intended.
--
-- p_args: {run_id, operation_id, actor, reason, smart_code_mappings,
--          items: {<original id>: {target, move}},
--          open_period: {id, date, code, year, number} (for move)}.
CREATE OR REPLACE FUNCTION hera_migration_write_copies_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_run      uuid := (p_args ->> 'run_id')::uuid;
    v_op       uuid := (p_args ->> 'operation_id')::uuid;
    v_actor    uuid := (p_args ->> 'actor')::uuid;
    v_reason   text := p_args ->> 'reason';
    v_open     jsonb := p_args -> 'open_period';
    v_revs     uuid[];
    v_reps     uuid[];
    v_before   jsonb;
    v_lines    bigint;
    v_written  bigint;
    v_bad      jsonb;
BEGIN
    SELECT coalesce(array_agg(gen_random_uuid()), '{}'), coalesce(array_agg(gen_random_uuid()), '{}')
      INTO v_revs, v_reps
      FROM unnest(p_ids);
    SELECT jsonb_object_agg(t.id, hera_migration_kept_image_v2(t, hera_migration_marked_columns_v2(),
                                                               hera_migration_original_keys_v2())),
           sum((SELECT count(*) FROM universal_transaction_lines l WHERE l.transaction_id = t.id))
      INTO v_before, v_lines
      FROM universal_transactions t
     WHERE t.id = ANY (p_ids);

    -- The headers: each original's reversal and repost, by one INSERT.
    WITH src AS MATERIALIZED (
        SELECT t.*, m.hm_rev_id, m.hm_rep_id,
               p_args #>> ARRAY['items', t.id::text, 'target'] AS hm_target,
               coalesce((p_args #>> ARRAY['items', t.id::text, 'move'])::boolean, false) AS hm_move
          FROM unnest(p_ids, v_revs, v_reps) AS m (hm_id, hm_rev_id, hm_rep_id)
          JOIN universal_transactions t ON t.id = m.hm_id
    )
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by
        /*@header_copy_columns*//*@*/)
    SELECT copy.id, s.organization_id, s.transaction_type, s.transaction_code || copy.suffix,
           CASE WHEN s.hm_move THEN (v_open ->> 'date')::timestamptz ELSE s.transaction_date END,
           s.source_entity_id, s.target_entity_id, s.total_amount, 'posted', copy.smart_code,
           s.business_context,
           (coalesce(s.metadata, '{}') - 'rollback_history' - 'reporting_smart_code' - 'original_smart_code'
                                       - 'alias_created_at' - 'alias_version' - 'alias_batch_id'
                                       - 'alias_migration_id')
               || copy.context,
           CASE WHEN s.hm_move THEN (v_open ->> 'id')::uuid ELSE s.fiscal_period_entity_id END,
           CASE WHEN s.hm_move THEN (v_open ->> 'year')::int ELSE s.fiscal_year END,
           CASE WHEN s.hm_move THEN (v_open ->> 'number')::int ELSE s.fiscal_period END,
           CASE WHEN s.hm_move THEN v_open ->> 'code' ELSE s.posting_period_code END,
           s.transaction_currency_code, v_actor, v_actor
           /*@header_copy_values*//*@*/
      FROM src s
     CROSS JOIN LATERAL (VALUES
           (s.hm_rev_id, '-REV', s.smart_code::text,
            jsonb_build_object(
                'reversal_of', s.id, 'reversal_reason', v_reason, 'reversal_at', now(),
                'migration_run_id', v_run, 'migration_batch_id', v_op)),
           (s.hm_rep_id, '-V2', s.hm_target,
            jsonb_build_object(
                'finance_dna_version', 'v2', 'original_transaction_id', s.id,
                'migration_id', v_run, 'migration_batch_id', v_op,
                'migration_timestamp', now()))
           ) AS copy (id, suffix, smart_code, context);

    -- The lines: the reversal's negated, the repost's under their v2 codes.
    WITH line_codes AS MATERIALIZED ( -- each distinct line code's v2 form, computed once
        SELECT l.smart_code,
               coalesce((SELECT nullif(btrim(m ->> 'target_smart_code'), '')
                           FROM jsonb_array_elements(coalesce(p_args -> 'smart_code_mappings', '[]')) m
                          WHERE hera_smart_code_normalize(m ->> 'source_smart_code')
                                = hera_smart_code_normalize(l.smart_code)
                          LIMIT 1),
                        CASE WHEN hera_smart_code_is_v1(l.smart_code)
                             THEN hera_smart_code_at_version(l.smart_code, 2)
                             ELSE l.smart_code END) AS target
          FROM (SELECT DISTINCT smart_code FROM universal_transaction_lines
                 WHERE transaction_id = ANY (p_ids)) l
    )
    INSERT INTO universal_transaction_lines (
        organization_id, transaction_id, line_number, entity_id, line_type, description,
        quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
        created_by, updated_by
        /*@line_copy_columns*//*@*/)
    SELECT l.organization_id, copy.id, l.line_number, l.entity_id, l.line_type, copy.description,
           copy.sign * l.quantity, copy.sign * l.unit_amount, copy.sign * l.line_amount,
           copy.sign * l.discount_amount, copy.sign * l.tax_amount,
           copy.smart_code, l.line_data, v_actor, v_actor
           /*@line_copy_values*//*@*/
      FROM unnest(p_ids, v_revs, v_reps) AS m (id, rev_id, rep_id)
      JOIN universal_transaction_lines l ON l.transaction_id = m.id
      JOIN line_codes lc ON lc.smart_code = l.smart_code
     CROSS JOIN LATERAL (VALUES
           (m.rev_id, -1, 'REVERSAL: ' || coalesce(l.description, ''), l.smart_code::text),
           (m.rep_id, 1, l.description, lc.target)
           ) AS copy (id, sign, description, smart_code);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written <> 2 * coalesce(v_lines, 0) THEN
        -- A trigger skipped rows (a BEFORE trigger returning NULL): which
        -- original's, isolation finds out.
        RAISE EXCEPTION 'the database kept % of the % copied lines', v_written, 2 * coalesce(v_lines, 0)
              USING ERRCODE = 'HM002';
    END IF;

    -- The originals, marked reversed (hera_migration_update_rows_v2 keeps
    -- their smart codes byte-identical under HERA's triggers).
    PERFORM hera_migration_update_rows_v2(
        (SELECT jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'status', 'reversed',
                    'metadata', coalesce(t.metadata, '{}') || jsonb_build_object(
                        'reversal_id', m.rev_id, 'reversed_at', now(), 'reversal_reason', v_reason,
                        'migrated_to', m.rep_id, 'migration_run_id', v_run,
                        'status_before_migration', t.transaction_status)))
           FROM unnest(p_ids, v_revs, v_reps) AS m (id, rev_id, rep_id)
           JOIN universal_transactions t ON t.id = m.id),
        v_actor);

    -- Verify the copies: each balances, and each original's pair nets to zero
    -- per account, currency and period fields.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', x.original, 'rule', 'copies_unbalanced',
               'reason', 'its reversal and repost, as the database wrote them, do not balance or do not net '
                         'to zero per account and period (a trigger changed them)')), '[]')
      INTO v_bad
      FROM (SELECT c.original
              FROM unnest(v_revs || v_reps, p_ids || p_ids) AS c (copy_id, original)
              JOIN universal_transaction_lines l ON l.transaction_id = c.copy_id AND l.smart_code LIKE '%.GL.%'
             GROUP BY c.copy_id, c.original
            HAVING abs(sum(CASE upper(l.line_data ->> 'side') WHEN 'DR' THEN coalesce(l.line_amount, 0)
                                                              WHEN 'CR' THEN -coalesce(l.line_amount, 0)
                                                              ELSE 0 END)) >= 0.0001
            UNION
            SELECT unnest(hera_migration_pairs_off_v2(v_revs || v_reps, p_ids || p_ids))) x;
    IF jsonb_array_length(v_bad) = 0 THEN
        v_bad := hera_migration_image_changes_v2(v_before, hera_migration_marked_columns_v2(),
                                                 hera_migration_original_keys_v2(), 'marked reversed');
    END IF;
    IF jsonb_array_length(v_bad) > 0 THEN
        RAISE EXCEPTION 'hera_migration_unverified: % original(s) of batch % failed verification',
              jsonb_array_length(v_bad), v_op
              USING ERRCODE = 'HM001', DETAIL = v_bad::text;
    END IF;
    RETURN cardinality(p_ids);
END;
$fn$;

-- One batch of run p_run_id, in the caller's transaction. Returns
--   {operation_id, batch_number, phase: 'EXECUTION', transactions, migrated,
--    skipped_closed, skipped_unmapped, quarantined_ids, quarantined: [{transaction_id,
--    rule, reason, ...}], failed_verification_ids, first_transaction_id,
--    last_transaction_id, balanced, done, duration_ms, counters}
-- or, for a run that is not RUNNING in phase EXECUTION, {halted: <state>, ...}.
-- p_batch_size overrides the run's batch_size (the engine's lock backoff).
CREATE OR REPLACE FUNCTION hera_migration_execute_batch_v2(
    p_run_id uuid,
    p_batch_size integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
-- The keyset read must walk the (organization_id, transaction_date, id) index
-- in order and stop at the batch size; the candidate filters' selectivity is
-- beyond the planner's statistics, and a bitmap scan plus a sort of every
-- remaining candidate would make a batch's cost grow with what is left.
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
-- Every read of a batch is a lookup by key (the run, the locked candidates,
-- their lines by transaction). Stale statistics (after a bulk load, or the
-- rows a migration adds) must never turn one into a scan of the whole table.
SET enable_seqscan = off
-- Compiling these statements with LLVM costs far more than it saves.
SET jit = off
AS $fn$
DECLARE
    v_started      timestamptz := clock_timestamp();
    v_run          record;
    v_org          uuid;
    v_params       jsonb;
    v_statuses     text[];
    v_batch_size   integer;
    v_from         timestamptz;
    v_to           timestamptz;
    v_after_date   timestamptz;
    v_after_id     uuid;
    v_policy       text;
    v_sign_rule    boolean := hera_migration_enforces_total_sign_v2();
    v_batch_no     bigint;
    v_operation_id uuid := gen_random_uuid();
    v_locked       uuid[];
    v_last_date    timestamptz;
    v_last_id      uuid;
    v_migrate      uuid[];
    v_items        jsonb;
    v_open         jsonb;
    v_closed       uuid[];
    v_unmapped     uuid[];
    v_set_aside    jsonb;  -- [{transaction_id, rule, reason}]: unbalanced or screened
    v_written      jsonb;
    v_refused      jsonb;  -- what the database or the verification refused
    v_quarantined  jsonb;
    v_quarantined_ids jsonb;
    v_counters     jsonb;
    v_result       jsonb;
BEGIN
    SELECT id, organization_id, metadata INTO v_run
      FROM universal_transactions
     WHERE id = p_run_id AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'migration_id: no migration run %', p_run_id USING ERRCODE = 'no_data_found';
    END IF;
    -- A paused or finished run does nothing: its controls (PauseMigration,
    -- CancelMigration) wait on this row lock, so they take effect between batches.
    -- A run being rolled back is not executed either (its executor stops).
    IF coalesce(v_run.metadata ->> 'state', 'RUNNING') <> 'RUNNING'
       OR coalesce(v_run.metadata ->> 'phase', 'EXECUTION') <> 'EXECUTION' THEN
        RETURN jsonb_build_object('halted', CASE WHEN coalesce(v_run.metadata ->> 'phase', 'EXECUTION') = 'EXECUTION'
                                                 THEN v_run.metadata ->> 'state'
                                                 ELSE 'PHASE_' || (v_run.metadata ->> 'phase') END,
                                  'done', false,
                                  'transactions', 0, 'duration_ms', 0,
                                  'counters', coalesce(v_run.metadata -> 'counters', '{}'));
    END IF;
    v_org        := v_run.organization_id;
    v_params     := v_run.metadata -> 'parameters';
    v_statuses   := hera_migration_candidate_statuses_v2(v_params);
    v_batch_size := coalesce(p_batch_size, (v_params ->> 'batch_size')::int, 1000);
    v_from       := (v_params ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC';
    v_to         := ((v_params ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC';
    v_after_date := coalesce((v_run.metadata #>> '{cursor,transaction_date}')::timestamptz, '-infinity');
    v_after_id   := coalesce((v_run.metadata #>> '{cursor,id}')::uuid, '00000000-0000-0000-0000-000000000000');
    v_policy     := coalesce(v_params ->> 'closed_period_policy', 'SKIP');
    v_batch_no   := coalesce((v_run.metadata #>> '{counters,batches}')::bigint, 0) + 1;

    -- 1. Before the first write: the trial balance (ValidateMigration compares
    -- against it; the run recorded the catalog when it was created). A dry
    -- run writes nothing.
    IF NOT coalesce(v_run.metadata -> 'snapshot' ? 'trial_balance', false)
       AND NOT coalesce((v_params ->> 'dry_run')::boolean, false) THEN
        PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('snapshot',
                    coalesce(v_run.metadata -> 'snapshot', '{}') || hera_migration_ledger_snapshot_v2(v_org)));
    END IF;

    -- 2. The next candidates, locked. The keyset cursor keeps a batch's cost
    -- flat however far the run has come.
    SELECT coalesce(array_agg(c.id ORDER BY c.transaction_date, c.id), '{}'),
           (array_agg(c.transaction_date ORDER BY c.transaction_date DESC, c.id DESC))[1],
           (array_agg(c.id ORDER BY c.transaction_date DESC, c.id DESC))[1]
      INTO v_locked, v_last_date, v_last_id
      FROM (SELECT t.id, t.transaction_date
              FROM universal_transactions t
             WHERE t.organization_id = v_org
               AND (t.transaction_date, t.id) > (v_after_date, v_after_id)
               AND t.transaction_date >= v_from
               AND t.transaction_date < v_to
               AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, v_statuses)
             ORDER BY t.transaction_date, t.id
             LIMIT v_batch_size
               FOR UPDATE) c;

    -- 3. Classify: migrate, skip (unmapped / closed period) or quarantine.
    SELECT to_jsonb(p) INTO v_open
      FROM (SELECT id, start_date::timestamp AT TIME ZONE 'UTC' AS date, period_code AS code,
                   fiscal_year AS year, period_number AS number
              FROM hera_migration_fiscal_periods_v2(v_org)
             WHERE status = 'OPEN' AND start_date IS NOT NULL
             ORDER BY start_date LIMIT 1) p;
    WITH candidates AS (
        SELECT t, t.id, t.transaction_date, t.smart_code, t.fiscal_period_entity_id,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day
          FROM universal_transactions t
         WHERE t.id = ANY (v_locked)
    ),
    periods AS (
        SELECT * FROM hera_migration_fiscal_periods_v2(v_org)
    ),
    mappings AS (
        SELECT hera_smart_code_normalize(m ->> 'source_smart_code') AS source,
               nullif(btrim(m ->> 'target_smart_code'), '') AS target
          FROM jsonb_array_elements(coalesce(v_params -> 'smart_code_mappings', '[]')) m
    ),
    -- MATERIALIZED: computed once per row; inlined, the smart-code functions
    -- would run again inside each of the aggregates' filters below.
    code_map AS MATERIALIZED (
        SELECT c.smart_code,
               CASE WHEN m.source IS NOT NULL THEN m.target
                    WHEN hera_smart_code_is_valid(c.smart_code)
                        THEN hera_smart_code_at_version(c.smart_code, 2)
               END AS target
          FROM (SELECT DISTINCT smart_code FROM candidates) c
          LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)
    ),
    balances AS ( -- DR minus CR over each candidate's GL lines (HERA's hera_line_side)
        SELECT l.transaction_id,
               sum(CASE upper(l.line_data ->> 'side') WHEN 'DR' THEN coalesce(l.line_amount, 0)
                                                     WHEN 'CR' THEN -coalesce(l.line_amount, 0)
                                                     ELSE 0 END) AS net
          FROM universal_transaction_lines l
         WHERE l.transaction_id = ANY (v_locked)
           AND l.smart_code LIKE '%.GL.%'
         GROUP BY l.transaction_id
    ),
    decided AS MATERIALIZED (
        SELECT c.id, c.transaction_date, cm.target, pp.status AS period_status,
               CASE WHEN cm.target IS NULL THEN 'unmapped'
                    WHEN abs(coalesce(b.net, 0)) >= 0.0001 THEN 'unbalanced'
                    WHEN pp.status IN ('CLOSED', 'LOCKED')
                         AND (v_policy <> 'POST_TO_OPEN_PERIOD' OR v_open IS NULL) THEN 'closed'
                    WHEN hera_migration_screen_v2(c.t, cm.target, v_sign_rule) IS NOT NULL THEN 'screened'
                    ELSE 'migrate'
               END AS decision,
               hera_migration_screen_v2(c.t, cm.target, v_sign_rule) AS screen,
               b.net
          FROM candidates c
          JOIN code_map cm USING (smart_code)
          LEFT JOIN balances b ON b.transaction_id = c.id
          LEFT JOIN LATERAL ( -- its fiscal period entity, else the period containing its date
              SELECT p.status FROM periods p
               WHERE p.id = c.fiscal_period_entity_id
                  OR (c.day BETWEEN p.start_date AND p.end_date
                      AND NOT EXISTS (SELECT 1 FROM periods q WHERE q.id = c.fiscal_period_entity_id))
               ORDER BY (p.id = c.fiscal_period_entity_id) DESC, p.start_date DESC
               LIMIT 1) pp ON true
    )
    SELECT coalesce(array_agg(id ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(jsonb_object_agg(id, jsonb_build_object(
                        'target', target,
                        'move', period_status IN ('CLOSED', 'LOCKED')))
                    FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE decision = 'closed'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE decision = 'unmapped'), '{}'),
           coalesce(jsonb_agg(CASE decision
                        WHEN 'unbalanced' THEN jsonb_build_object(
                            'transaction_id', id, 'rule', 'unbalanced',
                            'reason', format('its GL lines do not balance (DR - CR = %s)', net))
                        ELSE jsonb_build_object('transaction_id', id) || screen END
                        ORDER BY transaction_date, id)
                    FILTER (WHERE decision IN ('unbalanced', 'screened')), '[]')
      INTO v_migrate, v_items, v_closed, v_unmapped, v_set_aside
      FROM decided;

    -- 4. The writes, each transaction's refusal set aside with its reason.
    v_written := hera_migration_isolate_v2('hera_migration_write_copies_v2', v_migrate, jsonb_build_object(
        'run_id', p_run_id, 'operation_id', v_operation_id,
        'actor', v_run.metadata ->> 'started_by', 'reason', 'Finance DNA v2 Migration',
        'smart_code_mappings', coalesce(v_params -> 'smart_code_mappings', '[]'),
        'items', v_items, 'open_period', v_open));
    v_migrate := ARRAY(SELECT jsonb_array_elements_text(v_written -> 'done')::uuid);
    v_refused := v_written -> 'refused';
    v_quarantined := v_set_aside || v_refused;
    v_quarantined_ids := coalesce((SELECT jsonb_agg(e -> 'transaction_id') FROM jsonb_array_elements(v_quarantined) e), '[]');

    -- 5. Record the batch and advance the run.
    v_counters := coalesce(v_run.metadata -> 'counters', '{}');
    v_counters := v_counters || jsonb_build_object(
        'batches', v_batch_no,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0) + cardinality(v_locked),
        'migrated', coalesce((v_counters ->> 'migrated')::bigint, 0) + cardinality(v_migrate),
        'skipped_closed', coalesce((v_counters ->> 'skipped_closed')::bigint, 0) + cardinality(v_closed),
        'skipped_unmapped', coalesce((v_counters ->> 'skipped_unmapped')::bigint, 0) + cardinality(v_unmapped),
        'quarantined', coalesce((v_counters ->> 'quarantined')::bigint, 0) + jsonb_array_length(v_quarantined));
    v_result := jsonb_build_object(
        'operation_id', v_operation_id,
        'batch_number', v_batch_no,
        'phase', 'EXECUTION',
        'transactions', cardinality(v_locked),
        'migrated', cardinality(v_migrate),
        'skipped_closed', cardinality(v_closed),
        'skipped_unmapped', cardinality(v_unmapped),
        'quarantined_ids', v_quarantined_ids,
        'quarantined', v_quarantined,
        'failed_verification_ids', coalesce((SELECT jsonb_agg(e -> 'transaction_id')
                                               FROM jsonb_array_elements(v_refused) e), '[]'),
        'first_transaction_id', v_locked[1],
        'last_transaction_id', v_last_id,
        'balanced', true,
        'done', cardinality(v_locked) = 0,
        'duration_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3),
        'counters', v_counters);

    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
        transaction_status, smart_code, metadata, created_by, updated_by)
    VALUES (v_operation_id, v_org, 'MIGRATION_OPERATION', 'MIGOP-' || v_operation_id, now(), 0,
            'completed', 'HERA.ACCOUNTING.MIGRATION.AUDIT.TRAIL.v2',
            -- migrated_ids: what a rollback of this batch restores.
            v_result || jsonb_build_object('migration_id', p_run_id, 'operation_type', 'REVERSE_REPOST',
                                           'migrated_ids', to_jsonb(v_migrate)),
            (v_run.metadata ->> 'started_by')::uuid, (v_run.metadata ->> 'started_by')::uuid);

    PERFORM hera_migration_update_run_v2(p_run_id,
        jsonb_build_object('counters', v_counters)
        || CASE WHEN v_last_id IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('cursor', jsonb_build_object(
                         'transaction_date', v_last_date, 'id', v_last_id)) END
        || CASE WHEN jsonb_array_length(v_quarantined) = 0 THEN '{}'::jsonb
                ELSE jsonb_build_object(
                         'quarantined_ids', coalesce(v_run.metadata -> 'quarantined_ids', '[]') || v_quarantined_ids,
                         'quarantined', coalesce(v_run.metadata -> 'quarantined', '[]') || v_quarantined) END);

    RETURN v_result;
END;
$fn$;
