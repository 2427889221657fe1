-- Phase 2: one batch of a migration run, as one database transaction's work.
--
-- A run is a universal_transactions row (MIGRATION_RUN) whose metadata holds
-- its parameters, state, keyset cursor and counters. A batch:
--   1. locks the run row (two workers never run the same run's batches at once);
--   2. takes the next candidates after the cursor, in (transaction_date, id)
--      order, FOR UPDATE: PostgreSQL re-checks the candidate predicate on each
--      locked row, so a transaction is migrated at most once, ever;
--   3. sets aside what it must not touch: unmapped codes, closed or locked
--      periods (policy SKIP), and originals that do not balance (quarantined);
--   4. writes, set-based, a HERA reversal and a v2 repost of each, and marks
--      each original reversed;
--   5. verifies that every reversal and repost balances and that the batch
--      nets to zero per account and currency, raising (so the caller's
--      transaction rolls back) if not;
--   6. records a MIGRATION_OPERATION audit row and advances the run.
-- It creates no table, temporary or not: the batch lives in arrays.

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
    v_actor        uuid;
    v_params       jsonb;
    v_batch_size   integer;
    v_from         timestamptz;
    v_to           timestamptz;
    v_after_date   timestamptz;
    v_after_id     uuid;
    v_policy       text;
    v_reason       text := 'Finance DNA v2 Migration';
    v_batch_no     bigint;
    v_operation_id uuid := gen_random_uuid();
    v_locked       uuid[];
    v_last_date    timestamptz;
    v_last_id      uuid;
    v_migrate      uuid[];
    v_reversals    uuid[];
    v_reposts      uuid[];
    v_targets      text[];
    v_dates        timestamptz[];
    v_periods      uuid[];
    v_period_codes text[];
    v_rev_totals   numeric[];
    v_closed       uuid[];
    v_unmapped     uuid[];
    v_unbalanced   uuid[];
    v_bad          uuid[];
    v_failed       uuid[] := '{}'; -- originals whose copies failed verification
    v_rejected     uuid[];
    v_detail       text;
    v_counters     jsonb;
    v_result       jsonb;
BEGIN
    SELECT id, organization_id, metadata INTO v_run
      FROM universal_transactions
     WHERE id = p_run_id AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no migration run %', p_run_id USING ERRCODE = 'no_data_found';
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
    v_actor      := (v_run.metadata ->> 'started_by')::uuid;
    v_batch_size := coalesce(p_batch_size, (v_params ->> 'batch_size')::int, 1000);
    v_from       := (v_params ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC';
    v_to         := ((v_params ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC';
    v_after_date := coalesce((v_run.metadata #>> '{cursor,transaction_date}')::timestamptz, '-infinity');
    v_after_id   := coalesce((v_run.metadata #>> '{cursor,id}')::uuid, '00000000-0000-0000-0000-000000000000');
    v_policy     := coalesce(v_params ->> 'closed_period_policy', 'SKIP');
    v_batch_no   := coalesce((v_run.metadata #>> '{counters,batches}')::bigint, 0) + 1;

    -- 1. Before the first write: what the ledger and the catalog look like
    -- (ValidateMigration compares against it). A dry run writes nothing.
    IF NOT v_run.metadata ? 'snapshot' AND NOT coalesce((v_params ->> 'dry_run')::boolean, false) THEN
        UPDATE universal_transactions
           SET metadata = metadata || jsonb_build_object('snapshot', hera_migration_run_snapshot_v2(v_org))
         WHERE id = p_run_id;
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
               AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata)
             ORDER BY t.transaction_date, t.id
             LIMIT v_batch_size
               FOR UPDATE) c;

    -- 3. Classify: migrate, skip (unmapped / closed period) or quarantine.
    WITH candidates AS (
        SELECT t.id, t.transaction_date, t.smart_code, t.fiscal_period_entity_id,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day
          FROM universal_transactions t
         WHERE t.id = ANY (v_locked)
    ),
    periods AS (
        SELECT e.id, e.metadata ->> 'period_code' AS period_code,
               upper(coalesce(e.metadata ->> 'status', 'OPEN')) AS status,
               (e.metadata ->> 'start_date')::date AS start_date,
               (e.metadata ->> 'end_date')::date AS end_date
          FROM core_entities e
         WHERE e.organization_id = v_org AND e.entity_type = 'FISCAL_PERIOD'
    ),
    open_period AS ( -- where POST_TO_OPEN_PERIOD posts
        SELECT id, period_code, start_date FROM periods
         WHERE status = 'OPEN' ORDER BY start_date LIMIT 1
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
    balances AS (
        SELECT l.transaction_id,
               coalesce(sum(l.line_amount) FILTER (WHERE l.smart_code LIKE '%.GL.%' AND l.line_data ->> 'side' = 'DR'), 0)
             - coalesce(sum(l.line_amount) FILTER (WHERE l.smart_code LIKE '%.GL.%' AND l.line_data ->> 'side' = 'CR'), 0) AS net,
               abs(coalesce(sum(l.line_amount), 0)) AS reversal_total
          FROM universal_transaction_lines l
         WHERE l.transaction_id = ANY (v_locked)
         GROUP BY l.transaction_id
    ),
    classified AS (
        SELECT c.id, cm.target,
               coalesce(p.status, 'UNASSIGNED') AS period_status,
               coalesce(abs(b.net), 0) >= 0.0001 AS unbalanced,
               coalesce(b.reversal_total, 0) AS reversal_total,
               c.transaction_date
          FROM candidates c
          JOIN code_map cm USING (smart_code)
          LEFT JOIN balances b ON b.transaction_id = c.id
          LEFT JOIN LATERAL (
              SELECT p.status FROM periods p
               WHERE p.id = c.fiscal_period_entity_id
                  OR (c.fiscal_period_entity_id IS NULL AND c.day BETWEEN p.start_date AND p.end_date)
               ORDER BY (p.id = c.fiscal_period_entity_id) DESC, p.start_date DESC
               LIMIT 1) p ON true
    ),
    decided AS MATERIALIZED (
        SELECT cl.*,
               CASE WHEN cl.target IS NULL THEN 'unmapped'
                    WHEN cl.unbalanced THEN 'unbalanced'
                    WHEN cl.period_status IN ('CLOSED', 'LOCKED')
                         AND (v_policy <> 'POST_TO_OPEN_PERIOD' OR NOT EXISTS (SELECT 1 FROM open_period))
                        THEN 'closed'
                    ELSE 'migrate'
               END AS decision,
               CASE WHEN cl.period_status IN ('CLOSED', 'LOCKED') AND v_policy = 'POST_TO_OPEN_PERIOD'
                    THEN (SELECT start_date::timestamp AT TIME ZONE 'UTC' FROM open_period) END AS new_date,
               CASE WHEN cl.period_status IN ('CLOSED', 'LOCKED') AND v_policy = 'POST_TO_OPEN_PERIOD'
                    THEN (SELECT id FROM open_period) END AS new_period,
               CASE WHEN cl.period_status IN ('CLOSED', 'LOCKED') AND v_policy = 'POST_TO_OPEN_PERIOD'
                    THEN (SELECT period_code FROM open_period) END AS new_period_code
          FROM classified cl
    )
    SELECT coalesce(array_agg(id ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(target ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(new_date ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(new_period ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(new_period_code ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(reversal_total ORDER BY transaction_date, id) FILTER (WHERE decision = 'migrate'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE decision = 'closed'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE decision = 'unmapped'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE decision = 'unbalanced'), '{}')
      INTO v_migrate, v_targets, v_dates, v_periods, v_period_codes, v_rev_totals,
           v_closed, v_unmapped, v_unbalanced
      FROM decided;

    SELECT coalesce(array_agg(gen_random_uuid()), '{}'), coalesce(array_agg(gen_random_uuid()), '{}')
      INTO v_reversals, v_reposts
      FROM unnest(v_migrate);

    -- 4 and 5 run in a subtransaction: when the verification finds copies that
    -- do not balance, their writes roll back, the originals behind them are
    -- quarantined, and the batch is written again without them.
    LOOP
        BEGIN
            -- 4. The writes: reversals and reposts (headers and lines), originals marked.
            WITH src AS ( -- each original, with where its reversal and repost are posted
                SELECT t.*, m.rev_id, m.rep_id, m.target, m.rev_total,
                       coalesce(m.new_date, t.transaction_date) AS posted_on,
                       coalesce(m.new_period, t.fiscal_period_entity_id) AS posted_period,
                       CASE WHEN m.new_period IS NULL THEN t.fiscal_year
                            ELSE split_part(m.new_period_code, '-', 1)::int END AS posted_year,
                       CASE WHEN m.new_period IS NULL THEN t.fiscal_period
                            ELSE split_part(m.new_period_code, '-', 2)::int END AS posted_month,
                       coalesce(m.new_period_code, t.posting_period_code) AS posted_period_code
                  FROM unnest(v_migrate, v_reversals, v_reposts, v_targets, v_dates, v_periods, v_period_codes, v_rev_totals)
                       AS m (id, rev_id, rep_id, target, new_date, new_period, new_period_code, rev_total)
                  JOIN universal_transactions t ON t.id = m.id
            ),
            line_codes AS MATERIALIZED ( -- each distinct line smart code's v2 form, computed once
                -- (inlined, it would be computed again for every line)
                SELECT l.smart_code,
                       coalesce((SELECT nullif(btrim(m ->> 'target_smart_code'), '')
                                   FROM jsonb_array_elements(coalesce(v_params -> 'smart_code_mappings', '[]')) m
                                  WHERE hera_smart_code_normalize(m ->> 'source_smart_code')
                                        = hera_smart_code_normalize(l.smart_code)
                                  LIMIT 1),
                                CASE WHEN hera_smart_code_is_v1(l.smart_code)
                                     THEN hera_smart_code_at_version(l.smart_code, 2)
                                     ELSE l.smart_code END) AS target
                  FROM (SELECT DISTINCT smart_code FROM universal_transaction_lines
                         WHERE transaction_id = ANY (v_migrate)) l
            ),
            -- Each original's two copies, its reversal (HERA's semantics:
            -- negated lines) and its v2 repost, written by one INSERT for the
            -- headers and one for the lines.
            copies AS (
                INSERT INTO universal_transactions (
                    id, organization_id, transaction_type, transaction_code, transaction_date,
                    source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
                    business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
                    posting_period_code, transaction_currency_code, created_by, updated_by)
                SELECT copy.id, s.organization_id, s.transaction_type, s.transaction_code || copy.suffix,
                       s.posted_on, s.source_entity_id, s.target_entity_id, copy.total,
                       'posted', copy.smart_code, s.business_context,
                       coalesce(s.metadata, '{}') || copy.context,
                       s.posted_period, s.posted_year, s.posted_month, s.posted_period_code,
                       s.transaction_currency_code, v_actor, v_actor
                  FROM src s
                 CROSS JOIN LATERAL (VALUES
                       (s.rev_id, '-REV', s.rev_total, s.smart_code::text,
                        jsonb_build_object(
                            'reversal_of', s.id, 'reversal_reason', v_reason, 'reversal_at', now(),
                            'migration_run_id', p_run_id, 'migration_batch_id', v_operation_id)),
                       (s.rep_id, '-V2', s.total_amount, s.target,
                        jsonb_build_object(
                            'finance_dna_version', 'v2', 'original_transaction_id', s.id,
                            'migration_id', p_run_id, 'migration_batch_id', v_operation_id,
                            'migration_timestamp', now()))
                       ) AS copy (id, suffix, total, smart_code, context)
                RETURNING 1
            ),
            copy_lines AS (
                INSERT INTO universal_transaction_lines (
                    organization_id, transaction_id, line_number, entity_id, line_type, description,
                    quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
                    created_by, updated_by)
                SELECT l.organization_id, copy.id, l.line_number, l.entity_id, l.line_type, copy.description,
                       copy.sign * l.quantity, copy.sign * l.unit_amount, copy.sign * l.line_amount,
                       copy.sign * l.discount_amount, copy.sign * l.tax_amount,
                       copy.smart_code, l.line_data, v_actor, v_actor
                  FROM src s
                  JOIN universal_transaction_lines l ON l.transaction_id = s.id
                  JOIN line_codes lc ON lc.smart_code = l.smart_code
                 CROSS JOIN LATERAL (VALUES
                       (s.rev_id, -1, 'REVERSAL: ' || coalesce(l.description, ''), l.smart_code::text),
                       (s.rep_id, 1, l.description, lc.target)
                       ) AS copy (id, sign, description, smart_code)
                RETURNING 1
            )
            UPDATE universal_transactions t
               SET transaction_status = 'reversed',
                   metadata = coalesce(t.metadata, '{}') || jsonb_build_object(
                       'reversal_id', s.rev_id, 'reversed_at', now(), 'reversal_reason', v_reason,
                       'migrated_to', s.rep_id, 'migration_run_id', p_run_id),
                   version = coalesce(t.version, 1) + 1,
                   updated_by = v_actor,
                   updated_at = now()
              FROM src s
             WHERE t.id = s.id;

            -- 5. Verify what was written: every reversal and repost balances, and the
            -- batch nets to zero per account and currency.
            SELECT coalesce(array_agg(x.transaction_id), '{}') INTO v_bad
              FROM (SELECT l.transaction_id
                      FROM universal_transaction_lines l
                     WHERE l.transaction_id = ANY (v_reversals || v_reposts)
                       AND l.smart_code LIKE '%.GL.%'
                     GROUP BY l.transaction_id
                    HAVING abs(coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR'), 0)
                             - coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR'), 0)) >= 0.0001) x;
            IF cardinality(v_bad) = 0 THEN
                SELECT coalesce(array_agg(DISTINCT l.transaction_id), '{}') INTO v_bad
                  FROM universal_transaction_lines l
                  JOIN (SELECT l2.line_data ->> 'account_code' AS account, t2.transaction_currency_code AS currency
                          FROM universal_transaction_lines l2
                          JOIN universal_transactions t2 ON t2.id = l2.transaction_id
                         WHERE l2.transaction_id = ANY (v_reversals || v_reposts)
                           AND l2.smart_code LIKE '%.GL.%'
                         GROUP BY 1, 2
                        HAVING abs(sum(CASE l2.line_data ->> 'side' WHEN 'DR' THEN l2.line_amount
                                                                   WHEN 'CR' THEN -l2.line_amount ELSE 0 END)) >= 0.0001
                       ) off ON off.account IS NOT DISTINCT FROM l.line_data ->> 'account_code'
                 WHERE l.transaction_id = ANY (v_reversals || v_reposts);
            END IF;
            IF cardinality(v_bad) > 0 THEN
                RAISE EXCEPTION 'hera_migration_unbalanced: batch % of run % does not balance', v_batch_no, p_run_id
                      USING ERRCODE = 'check_violation',
                            DETAIL = (SELECT jsonb_agg(DISTINCT coalesce(
                                          (SELECT (metadata ->> 'reversal_of') FROM universal_transactions WHERE id = b),
                                          (SELECT (metadata ->> 'original_transaction_id') FROM universal_transactions WHERE id = b)))::text
                                        FROM unnest(v_bad) b);
            END IF;
            EXIT;
        EXCEPTION WHEN check_violation THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            v_rejected := ARRAY(SELECT jsonb_array_elements_text(nullif(v_detail, '')::jsonb)::uuid);
            IF cardinality(v_rejected) = 0 OR v_rejected <@ v_failed THEN
                RAISE; -- nothing new to set aside: the batch cannot be made to balance
            END IF;
            v_failed := v_failed || v_rejected;
            SELECT coalesce(array_agg(m.id ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.target ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.new_date ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.new_period ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.new_period_code ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.rev_total ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.rev_id ORDER BY m.n), '{}'),
                   coalesce(array_agg(m.rep_id ORDER BY m.n), '{}')
              INTO v_migrate, v_targets, v_dates, v_periods, v_period_codes, v_rev_totals,
                   v_reversals, v_reposts
              FROM unnest(v_migrate, v_targets, v_dates, v_periods, v_period_codes, v_rev_totals,
                          v_reversals, v_reposts) WITH ORDINALITY
                   AS m (id, target, new_date, new_period, new_period_code, rev_total, rev_id, rep_id, n)
             WHERE m.id <> ALL (v_failed);
        END;
    END LOOP;
    v_unbalanced := v_unbalanced || v_failed;

    -- 6. Record the batch and advance the run.
    v_counters := coalesce(v_run.metadata -> 'counters', '{}');
    v_counters := v_counters || jsonb_build_object(
        'batches', v_batch_no,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0) + cardinality(v_locked),
        'migrated', coalesce((v_counters ->> 'migrated')::bigint, 0) + cardinality(v_migrate),
        'skipped_closed', coalesce((v_counters ->> 'skipped_closed')::bigint, 0) + cardinality(v_closed),
        'skipped_unmapped', coalesce((v_counters ->> 'skipped_unmapped')::bigint, 0) + cardinality(v_unmapped),
        'quarantined', coalesce((v_counters ->> 'quarantined')::bigint, 0) + cardinality(v_unbalanced));
    v_result := jsonb_build_object(
        'operation_id', v_operation_id,
        'batch_number', v_batch_no,
        'phase', 'EXECUTION',
        'transactions', cardinality(v_locked),
        'migrated', cardinality(v_migrate),
        'skipped_closed', cardinality(v_closed),
        'skipped_unmapped', cardinality(v_unmapped),
        'quarantined_ids', to_jsonb(v_unbalanced),
        'failed_verification_ids', to_jsonb(v_failed),
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
            v_actor, v_actor);

    UPDATE universal_transactions
       SET metadata = metadata
                      || jsonb_build_object('counters', v_counters)
                      || CASE WHEN v_last_id IS NULL THEN '{}'::jsonb
                              ELSE jsonb_build_object('cursor', jsonb_build_object(
                                       'transaction_date', v_last_date, 'id', v_last_id)) END
                      || CASE WHEN cardinality(v_unbalanced) = 0 THEN '{}'::jsonb
                              ELSE jsonb_build_object('quarantined_ids',
                                       coalesce(metadata -> 'quarantined_ids', '[]') || to_jsonb(v_unbalanced)) END,
           updated_by = v_actor,
           updated_at = now(),
           version = coalesce(version, 1) + 1
     WHERE id = p_run_id;

    RETURN v_result;
END;
$fn$;
