-- Phase 1: the exact, read-only plan of a migration.
--
-- Candidates are the organization's transactions dated within the range
-- (inclusive, UTC calendar dates) whose status the run migrates ('posted' by
-- default), at smart-code version v1 (.v1 or .V1), that are not a reversal,
-- not already migrated, and not one of hera-migrate's own bookkeeping rows
-- (hera_migration_is_candidate_v2). The preview also predicts what each
-- batch will do with them under the chosen closed-period policy: migrate,
-- skip (closed period, unmapped code) or quarantine, by HERA's rules
-- (hera_migration_screen_v2), and reports the v1 transactions that are not
-- candidates because of their status. Nothing is created or written, so it
-- can run in a READ ONLY transaction. Per-row work is kept to cheap
-- comparisons; string work runs once per distinct smart code.

-- The estimate's calibration, while the organization has no batch timings
-- recorded yet: a real batch of the first p_sample candidates (reversals,
-- reposts, verification, audit row), written and rolled back inside a
-- subtransaction, timed. Closed periods are posted to the open one for the
-- sample, so that it measures writing whatever the first candidates' dates.
-- Nothing it writes survives; its row locks go with the subtransaction (it
-- waits at most 200 ms on the business's). Returns {transactions, written,
-- batch_ms}, or NULL when timings are recorded already, there are no
-- candidates, or the transaction is read-only (it cannot write its sample);
-- {error} when the sample batch failed.
CREATE OR REPLACE FUNCTION hera_migration_calibrate_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_candidate_statuses text[] DEFAULT ARRAY['posted'],
    p_smart_code_mappings jsonb DEFAULT '[]'::jsonb,
    p_actor uuid DEFAULT NULL,
    p_sample integer DEFAULT 500
)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
-- The sample batch is planned as a run's batches are, whatever its caller
-- set: the preview, which calls it from psql, forbids nested loops for its
-- own set-against-set joins, which would make the batch's lookups by key
-- several times slower than a run's.
SET enable_nestloop = on
AS $fn$
DECLARE
    v_run     uuid;
    v_batch   jsonb;
    v_started timestamptz;
    v_detail  text;
BEGIN
    IF current_setting('transaction_read_only') = 'on'
       OR EXISTS (SELECT 1 FROM universal_transactions
                   WHERE organization_id = p_organization_id
                     AND transaction_type = 'MIGRATION_OPERATION'
                     AND metadata ->> 'phase' = 'EXECUTION') THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '200ms', true);
        v_run := hera_migration_create_run_v2(
            p_organization_id,
            coalesce(p_actor, (SELECT created_by FROM core_organizations WHERE id = p_organization_id)),
            jsonb_build_object(
                'from_date', p_from_date, 'to_date', p_to_date, 'batch_size', p_sample,
                'smart_code_mappings', coalesce(p_smart_code_mappings, '[]'::jsonb),
                'candidate_statuses', to_jsonb(p_candidate_statuses),
                'closed_period_policy', 'POST_TO_OPEN_PERIOD', 'dry_run', true));
        v_started := clock_timestamp();
        v_batch := hera_migration_execute_batch_v2(v_run);
        v_batch := jsonb_build_object(
            'transactions', v_batch -> 'transactions',
            'written', v_batch -> 'migrated',
            'batch_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3));
        RAISE EXCEPTION 'calibration done' USING ERRCODE = 'HM000', DETAIL = v_batch::text;
    EXCEPTION
        WHEN SQLSTATE 'HM000' THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            v_batch := v_detail::jsonb;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_detail = MESSAGE_TEXT;
            RETURN jsonb_build_object('error', v_detail);
    END;
    RETURN CASE WHEN (v_batch ->> 'transactions')::int > 0 THEN v_batch END;
END;
$fn$;

-- How long a run's first batch takes to record the trial balance (its
-- snapshot), from how long the preview took to read every GL line once: the
-- snapshot reads the same lines, joins their transactions and groups them by
-- account, currency and period, which costs about three times as much
-- (measured on seed-demo data: 2.3x at 200,000 transactions, 3.6x at a
-- million).
CREATE OR REPLACE FUNCTION hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ceil(3 * p_gl_read_ms) $$;

CREATE OR REPLACE FUNCTION hera_migration_preview_candidates_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_batch_limit integer DEFAULT 1000,
    p_smart_code_mappings jsonb DEFAULT '[]'::jsonb,
    p_candidate_statuses text[] DEFAULT ARRAY['posted'],
    p_closed_period_policy text DEFAULT 'SKIP',
    p_calibration jsonb DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE -- it reads the clock (and may calibrate); nothing is kept
-- Plan with the actual organization and dates (a generic plan guesses a
-- handful of rows and probes millions by index), and aggregate a million
-- candidates in memory rather than on disk.
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
-- Every join here is set against set; the filters' selectivities are beyond
-- the planner's statistics, and a misjudged nested loop probes lines per
-- candidate (tens of seconds at a million).
SET enable_nestloop = off
-- The candidates' statistics are beyond the planner too: it would sort a
-- million of them to group them (hashing is cheaper), or to pick the first
-- few (the index gives them in order).
SET enable_sort = off
-- Compiling these statements with LLVM costs far more than it saves.
SET jit = off
AS $fn$
DECLARE
    v_statuses   text[] := coalesce(nullif(p_candidate_statuses, '{}'), ARRAY['posted']);
    v_policy     text := coalesce(nullif(p_closed_period_policy, ''), 'SKIP');
    v_sign_rule  boolean := hera_migration_enforces_total_sign_v2();
    v_started    timestamptz;
    v_gl_read_ms numeric;
    v_calibration jsonb := p_calibration;
    v_result     jsonb;
    v_suspect    boolean;
    v_groups     jsonb;
    v_has_open   boolean;
    -- The organization's fiscal periods, for placing candidates: every id,
    -- and those with a start, in order (a binary search by width_bucket).
    v_period_all uuid[];
    v_starts     date[];
    v_period_ids uuid[];
    v_ends       date[];
    v_closed_ids uuid[]; -- periods that take no postings (CLOSED, LOCKED)
    v_screened_ids jsonb := '{}';
BEGIN
-- Does any transaction of the organization have unbalanced GL lines? One
-- ungrouped pass answers: each line adds its signed amount times a hash of
-- its transaction, so a balanced transaction adds exactly zero (NUMERIC, no
-- rounding) and the sum is zero when all balance. Imbalances could only cancel
-- out against each other's random multipliers by a fluke. Only a non-zero sum
-- pays for grouping lines by transaction to name the culprits. Timed: it
-- reads what a run's snapshot reads.
v_started := clock_timestamp();
SELECT coalesce(sum(CASE upper(l.line_data ->> 'side') WHEN 'DR' THEN coalesce(l.line_amount, 0)
                                                      WHEN 'CR' THEN -coalesce(l.line_amount, 0) ELSE 0 END
                    * (uuid_hash_extended(l.transaction_id, 20241231) % 1000000007)), 0) <> 0
  INTO v_suspect
  FROM universal_transaction_lines l
 WHERE l.organization_id = p_organization_id
   AND l.smart_code LIKE '%.GL.%';
v_gl_read_ms := extract(epoch FROM clock_timestamp() - v_started) * 1000;

SELECT coalesce(array_agg(p.id), '{}'),
       coalesce(array_agg(p.start_date ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
       coalesce(array_agg(p.id ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
       coalesce(array_agg(p.end_date ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
       coalesce(bool_or(p.status = 'OPEN' AND p.start_date IS NOT NULL), false),
       coalesce(array_agg(p.id) FILTER (WHERE p.status IN ('CLOSED', 'LOCKED')), '{}')
  INTO v_period_all, v_starts, v_period_ids, v_ends, v_has_open, v_closed_ids
  FROM hera_migration_fiscal_periods_v2(p_organization_id) p;

-- The one pass over the organization's v1 transactions in the range, grouped
-- by smart code, fiscal period (its fiscal period entity, else the period
-- whose dates contain it), status when it is not a candidate's, and what
-- HERA's rules need per row: whether its metadata clashes with the
-- migration's keys, whether it is a posted foreign-currency transaction
-- without exchange-rate fields, and the sign of its total. A statement of its
-- own, referring to no CTE, so that PostgreSQL can run it in parallel workers.
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'smart_code', g.smart_code, 'period_id', g.period_id, 'status', g.status,
           'keys', g.keys, 'fx', g.fx, 'transactions', g.transactions,
           'positive', g.positive, 'negative', g.negative, 'amount', g.amount, 'state', g.state)), '[]')
  INTO v_groups
  FROM (SELECT c.smart_code,
               CASE WHEN c.fiscal_period_entity_id = ANY (v_period_all) THEN c.fiscal_period_entity_id
                    WHEN c.day <= v_ends[width_bucket(c.day, v_starts)]
                        THEN v_period_ids[width_bucket(c.day, v_starts)]
               END AS period_id,
               c.status, c.keys, c.fx,
               count(*) AS transactions,
               count(*) FILTER (WHERE c.total_amount > 0) AS positive,
               count(*) FILTER (WHERE c.total_amount < 0) AS negative,
               sum(c.total_amount) AS amount, bit_xor(c.state_hash) AS state
          FROM (SELECT t.smart_code, t.total_amount, t.fiscal_period_entity_id,
                       (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
                       CASE WHEN t.transaction_status = ANY (v_statuses) THEN NULL
                            ELSE coalesce(t.transaction_status, '') END AS status,
                       coalesce(t.metadata ?| hera_migration_original_keys_v2(), false) AS keys,
                       upper(coalesce(t.transaction_status, '')) = 'POSTED'
                           AND coalesce(hera_migration_fx_incomplete_v2(t), false) AS fx,
                       uuid_hash_extended(t.id, coalesce(t.version, 0))
                         # timestamp_hash_extended(t.updated_at AT TIME ZONE 'UTC', 1)
                         # hash_numeric_extended(t.total_amount, 2)
                         # timestamp_hash_extended(t.transaction_date AT TIME ZONE 'UTC', 3) AS state_hash
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
       AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
       AND hera_smart_code_is_v1(t.smart_code)
       AND t.smart_code NOT LIKE 'HERA.ACCOUNTING.MIGRATION.%'
       AND NOT coalesce(t.metadata ? 'reversal_of', false)
       AND NOT coalesce(t.metadata ? 'migration_id', false)
               ) c
         GROUP BY 1, 2, 3, 4, 5) g;

-- The ids behind each predicted quarantine by one of HERA's rules (at most
-- 100 per rule, oldest first), looked up row by row only when a group shows
-- that a rule applies at all (a clashing key, an FX gap, or a total whose
-- sign the code's type or an explicit mapping may refuse).
IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_groups) g
            WHERE g ->> 'status' IS NULL
              AND ((g ->> 'keys')::boolean OR (g ->> 'fx')::boolean
                   OR (v_sign_rule AND ((g ->> 'positive')::bigint > 0 AND hera_migration_is_negative_type_v2(g ->> 'smart_code')
                                        OR (g ->> 'negative')::bigint > 0 AND NOT hera_migration_is_negative_type_v2(g ->> 'smart_code')
                                        OR jsonb_array_length(coalesce(p_smart_code_mappings, '[]')) > 0)))) THEN
    WITH mappings AS (
        SELECT hera_smart_code_normalize(m ->> 'source_smart_code') AS source,
               nullif(btrim(m ->> 'target_smart_code'), '') AS target
          FROM jsonb_array_elements(coalesce(p_smart_code_mappings, '[]'::jsonb)) AS m
    ),
    code_map AS MATERIALIZED (
        SELECT c.smart_code,
               CASE WHEN m.source IS NOT NULL THEN m.target
                    WHEN hera_smart_code_is_valid(c.smart_code) THEN hera_smart_code_at_version(c.smart_code, 2)
               END AS target
          FROM (SELECT DISTINCT g ->> 'smart_code' AS smart_code FROM jsonb_array_elements(v_groups) g
                 WHERE g ->> 'status' IS NULL) c
          LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)
    ),
    hits AS (
        SELECT t.id, t.transaction_date, sc.s ->> 'rule' AS rule,
               row_number() OVER (PARTITION BY sc.s ->> 'rule' ORDER BY t.transaction_date, t.id) AS nth
          FROM universal_transactions t
          JOIN code_map cm ON cm.smart_code = t.smart_code AND cm.target IS NOT NULL
         CROSS JOIN LATERAL (SELECT hera_migration_screen_v2(t, cm.target, v_sign_rule) AS s) sc
         WHERE t.organization_id = p_organization_id
           AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
           AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
           AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, v_statuses)
           AND sc.s IS NOT NULL
           AND NOT coalesce(
                   CASE WHEN t.fiscal_period_entity_id = ANY (v_period_all) THEN t.fiscal_period_entity_id
                        WHEN (t.transaction_date AT TIME ZONE 'UTC')::date
                             <= v_ends[width_bucket((t.transaction_date AT TIME ZONE 'UTC')::date, v_starts)]
                            THEN v_period_ids[width_bucket((t.transaction_date AT TIME ZONE 'UTC')::date, v_starts)]
                   END = ANY (v_closed_ids)
                   AND (v_policy <> 'POST_TO_OPEN_PERIOD' OR NOT v_has_open), false)
    )
    SELECT coalesce(jsonb_object_agg(rule, ids), '{}') INTO v_screened_ids
      FROM (SELECT rule, jsonb_agg(id ORDER BY transaction_date, id) AS ids
              FROM hits WHERE nth <= 100 GROUP BY rule) r;
END IF;

-- Without recorded batch timings, calibrate (when this transaction may write).
IF v_calibration IS NULL THEN
    v_calibration := hera_migration_calibrate_v2(p_organization_id, p_from_date, p_to_date, v_statuses,
                                                 p_smart_code_mappings);
END IF;

WITH
-- Inlined where it is used: the first candidates in order come straight off
-- the (organization_id, transaction_date, id) index, and the lines of
-- candidates are only read when the screen above found an imbalance.
candidates AS NOT MATERIALIZED (
    SELECT t.id, t.smart_code, t.transaction_date, t.total_amount, t.fiscal_period_entity_id,
           (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
           coalesce(t.metadata ?| hera_migration_original_keys_v2(), false) AS keys,
           upper(coalesce(t.transaction_status, '')) = 'POSTED'
               AND coalesce(hera_migration_fx_incomplete_v2(t), false) AS fx
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
       AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
       AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, v_statuses)
),
periods AS (
    SELECT * FROM hera_migration_fiscal_periods_v2(p_organization_id)
),
all_groups AS (
    SELECT g.smart_code, g.period_id, g.status, g.keys, g.fx, g.transactions, g.positive, g.negative,
           g.amount, g.state
      FROM jsonb_to_recordset(v_groups)
           AS g (smart_code text, period_id uuid, status text, keys boolean, fx boolean, transactions bigint,
                 positive bigint, negative bigint, amount numeric, state bigint)
),
groups AS ( -- the candidates'
    SELECT * FROM all_groups WHERE status IS NULL
),
mappings AS (
    SELECT hera_smart_code_normalize(m ->> 'source_smart_code') AS source,
           nullif(btrim(m ->> 'target_smart_code'), '') AS target
      FROM jsonb_array_elements(coalesce(p_smart_code_mappings, '[]'::jsonb)) AS m
),
code_map AS ( -- per distinct smart code: its source form, its target, or why it has none
    SELECT c.smart_code,
           hera_smart_code_normalize(c.smart_code) AS source,
           CASE WHEN m.source IS NOT NULL AND hera_smart_code_is_valid(m.target) THEN m.target
                WHEN m.source IS NULL AND hera_smart_code_is_valid(c.smart_code)
                    THEN hera_smart_code_at_version(c.smart_code, 2)
           END AS target,
           CASE WHEN m.source IS NOT NULL AND m.target IS NULL THEN 'excluded by an explicit mapping'
                WHEN m.source IS NOT NULL THEN 'the mapping''s target ' || m.target || ' is not a valid smart code'
                ELSE 'not a valid HERA smart code, so it has no v2 form'
           END AS reason,
           hera_migration_is_negative_type_v2(c.smart_code) AS own_negative,
           hera_migration_is_financial_v2(c.smart_code) AS financial
      FROM (SELECT DISTINCT smart_code FROM groups) c
      LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)
),
mapped AS (
    SELECT g.*, cm.source, cm.target, cm.reason, cm.own_negative, cm.financial,
           hera_migration_is_negative_type_v2(cm.target) AS target_negative
      FROM groups g JOIN code_map cm USING (smart_code)
),
migratable AS (
    SELECT * FROM mapped WHERE target IS NOT NULL
),
balances AS ( -- GL lines of the candidates, per transaction
    SELECT l.transaction_id,
           sum(CASE upper(l.line_data ->> 'side') WHEN 'DR' THEN coalesce(l.line_amount, 0)
                                                 WHEN 'CR' THEN -coalesce(l.line_amount, 0) ELSE 0 END) AS net
      FROM universal_transaction_lines l
     WHERE v_suspect
       AND l.organization_id = p_organization_id
       AND l.transaction_id IN (SELECT id FROM candidates)
       AND l.smart_code LIKE '%.GL.%'
     GROUP BY l.transaction_id
),
unbalanced AS (
    SELECT c.id, c.transaction_date, c.smart_code, c.keys, c.fx, c.total_amount,
           CASE WHEN c.fiscal_period_entity_id = ANY (v_period_all) THEN c.fiscal_period_entity_id
                WHEN c.day <= v_ends[width_bucket(c.day, v_starts)]
                    THEN v_period_ids[width_bucket(c.day, v_starts)]
           END AS period_id
      FROM candidates c
      JOIN balances b ON b.transaction_id = c.id
     WHERE v_suspect
       AND abs(b.net) >= 0.0001
),
unbalanced_groups AS ( -- the unbalanced, in the groups' terms (a batch quarantines them first)
    SELECT u.smart_code, u.period_id, u.keys, u.fx, count(*) AS transactions,
           count(*) FILTER (WHERE u.total_amount > 0) AS positive,
           count(*) FILTER (WHERE u.total_amount < 0) AS negative
      FROM unbalanced u
     GROUP BY 1, 2, 3, 4
),
-- What the batches will do with each group, in a batch's order of decisions:
-- unmapped, unbalanced, closed period (unless posted to the open one),
-- HERA's rules (hera_migration_screen_v2's order), else migrated.
predicted AS (
    SELECT m.*, coalesce(p.status, 'UNASSIGNED') AS period_status,
           coalesce(ug.transactions, 0) AS unbalanced,
           m.transactions - coalesce(ug.transactions, 0) AS n,
           m.positive - coalesce(ug.positive, 0) AS pos,
           m.negative - coalesce(ug.negative, 0) AS neg,
           p.status IN ('CLOSED', 'LOCKED') AND (v_policy <> 'POST_TO_OPEN_PERIOD' OR NOT v_has_open) AS skipped
      FROM migratable m
      LEFT JOIN periods p ON p.id = m.period_id
      LEFT JOIN unbalanced_groups ug
             ON ug.smart_code = m.smart_code AND ug.period_id IS NOT DISTINCT FROM m.period_id
            AND ug.keys = m.keys AND ug.fx = m.fx
),
screened AS (
    SELECT pr.*,
           CASE WHEN pr.skipped OR NOT pr.keys THEN 0 ELSE pr.n END AS by_keys,
           CASE WHEN pr.skipped OR pr.keys OR NOT v_sign_rule THEN 0
                WHEN pr.own_negative THEN pr.pos ELSE pr.neg END AS by_own_sign,
           CASE WHEN pr.skipped OR pr.keys OR NOT v_sign_rule OR pr.own_negative = pr.target_negative THEN 0
                WHEN pr.target_negative THEN pr.pos ELSE pr.neg END AS by_target_sign
      FROM predicted pr
),
outcome AS (
    SELECT s.*,
           CASE WHEN s.skipped OR s.keys OR NOT s.fx OR NOT s.financial THEN 0
                ELSE s.n - s.by_own_sign - s.by_target_sign END AS by_fx
      FROM screened s
),
prediction AS (
    SELECT coalesce(sum(o.n - o.by_keys - o.by_own_sign - o.by_target_sign - o.by_fx)
                        FILTER (WHERE NOT o.skipped), 0)::bigint AS migrated,
           coalesce(sum(o.n) FILTER (WHERE o.skipped), 0)::bigint AS skipped_closed,
           (SELECT coalesce(sum(transactions), 0) FROM mapped WHERE target IS NULL)::bigint AS skipped_unmapped,
           coalesce(sum(o.unbalanced), 0)::bigint AS unbalanced,
           coalesce(sum(o.by_keys), 0)::bigint AS metadata_keys,
           coalesce(sum(o.by_own_sign + o.by_target_sign), 0)::bigint AS total_sign,
           coalesce(sum(o.by_fx), 0)::bigint AS fx_posting
      FROM outcome o
),
quarantine AS (
    SELECT q.rule, q.transaction_count, q.reason,
           coalesce(CASE WHEN q.rule = 'unbalanced'
                         THEN (SELECT jsonb_agg(id ORDER BY transaction_date, id)
                                 FROM (SELECT u.id, u.transaction_date FROM unbalanced u
                                         JOIN code_map cm ON cm.smart_code = u.smart_code AND cm.target IS NOT NULL
                                        ORDER BY u.transaction_date, u.id LIMIT 100) u)
                         ELSE v_screened_ids -> q.rule END, '[]') AS transaction_ids
      FROM prediction pn
     CROSS JOIN LATERAL (VALUES
           ('unbalanced', pn.unbalanced, 'its GL lines do not balance (DR <> CR)'),
           ('metadata_keys', pn.metadata_keys,
            'its metadata already holds keys a migration writes, which a rollback would remove'),
           ('chk_txn_total_sign', pn.total_sign,
            'its total_amount breaks HERA''s sign rule for its smart code or its target''s'),
           ('fx_posting', pn.fx_posting,
            'a financial transaction in a foreign currency without exchange_rate, exchange_rate_date and '
            'exchange_rate_type: HERA refuses to set it back to posted (trg_txn_fx_on_post), so a rollback '
            'could not restore it')
           ) AS q (rule, transaction_count, reason)
     WHERE q.transaction_count > 0
),
totals AS (
    SELECT coalesce(sum(transactions), 0)::bigint AS candidates,
           coalesce(sum(transactions) FILTER (WHERE p.status IN ('CLOSED', 'LOCKED')), 0)::bigint AS in_closed,
           coalesce(sum(transactions) FILTER (WHERE m.period_id IS NULL), 0)::bigint AS unassigned
      FROM migratable m
      LEFT JOIN periods p ON p.id = m.period_id
),
recorded AS ( -- this organization's latest executed batches
    SELECT sum((r.metadata ->> 'duration_ms')::numeric) AS ms,
           sum((r.metadata ->> 'transactions')::numeric) AS transactions,
           count(*) AS batches
      FROM (SELECT metadata
              FROM universal_transactions
             WHERE organization_id = p_organization_id
               AND transaction_type = 'MIGRATION_OPERATION'
               AND metadata ->> 'phase' = 'EXECUTION'
               AND (metadata ->> 'transactions')::numeric > 0
             ORDER BY created_at DESC
             LIMIT 20) r
),
-- The estimate: the first batch's snapshot, then per transaction what the
-- latest batches took (or what the calibration's sample batch took per
-- transaction it wrote, for those that will be written; skipped and
-- quarantined ones are only read).
estimate AS (
    SELECT CASE
             WHEN t.candidates = 0 THEN jsonb_build_object('ms', 0, 'basis', 'no candidates')
             WHEN r.batches > 0 THEN
                 jsonb_build_object(
                     'ms', ceil(hera_migration_snapshot_estimate_ms_v2(v_gl_read_ms) + t.candidates * r.ms / r.transactions),
                     'basis', format('measured: %s ms per transaction over the latest %s batches, plus %s ms for '
                                     'the first batch''s snapshot of the trial balance',
                                     round(r.ms / r.transactions, 3), r.batches,
                                     hera_migration_snapshot_estimate_ms_v2(v_gl_read_ms)))
             WHEN (v_calibration ->> 'transactions')::numeric > 0 THEN
                 -- A candidate that is only read (skipped, quarantined) costs
                 -- about a tenth of one written: it is locked and classified,
                 -- not copied (measured: 582,205 skipped at a million took
                 -- 50 s of a 277 s run, 0.09 ms each against 0.53 ms).
                 jsonb_build_object(
                     'ms', ceil(hera_migration_snapshot_estimate_ms_v2(v_gl_read_ms)
                                + (pn.migrated + 0.1 * (t.candidates - pn.migrated))
                                  * (v_calibration ->> 'batch_ms')::numeric
                                  / greatest((v_calibration ->> 'written')::numeric, 1)),
                     'basis', format('calibration: a sample batch of %s transactions was written and rolled '
                                     'back in %s ms; %s ms per transaction written for the %s to be migrated '
                                     '(a tenth of that for the %s only read), plus %s ms for the first batch''s '
                                     'snapshot of the trial balance; the first executed batches replace it',
                                     v_calibration ->> 'transactions', v_calibration ->> 'batch_ms',
                                     round((v_calibration ->> 'batch_ms')::numeric
                                           / greatest((v_calibration ->> 'written')::numeric, 1), 3),
                                     pn.migrated, t.candidates - pn.migrated,
                                     hera_migration_snapshot_estimate_ms_v2(v_gl_read_ms)))
             ELSE jsonb_build_object('ms', 0, 'basis',
                      CASE WHEN v_calibration ? 'error'
                           THEN 'no estimate: the calibration batch failed: ' || (v_calibration ->> 'error')
                           ELSE 'no estimate: no batch timings are recorded, and a read-only transaction cannot '
                                'write the calibration''s sample batch (pass hera_migration_calibrate_v2(...) '
                                'as p_calibration)' END)
           END AS value
      FROM totals t
     CROSS JOIN recorded r
     CROSS JOIN prediction pn
),
risk AS (
    SELECT
        CASE WHEN (SELECT count(*) FROM unbalanced) > 0 OR (SELECT count(*) FROM quarantine) > 0 THEN 'HIGH'
             WHEN t.in_closed > 0 OR t.unassigned > 0 THEN 'MEDIUM'
             ELSE 'LOW' END AS data_integrity,
        CASE WHEN t.candidates > 250000 THEN 'HIGH'
             WHEN t.candidates > 10000 THEN 'MEDIUM'
             ELSE 'LOW' END AS performance,
        CASE WHEN (SELECT count(*) FROM quarantine) > 0 OR t.candidates > 1000000 THEN 'HIGH'
             WHEN t.in_closed > 0 THEN 'MEDIUM'
             ELSE 'LOW' END AS rollback,
        array_remove(ARRAY[
            CASE WHEN (SELECT count(*) FROM unbalanced) > 0 THEN
                format('%s candidates do not balance today (DR <> CR on their GL lines)', (SELECT count(*) FROM unbalanced)) END,
            CASE WHEN t.in_closed > 0 THEN
                format('%s candidates lie in CLOSED or LOCKED fiscal periods', t.in_closed) END,
            CASE WHEN t.unassigned > 0 THEN
                format('%s candidates belong to no fiscal period', t.unassigned) END,
            CASE WHEN (SELECT coalesce(sum(transactions), 0) FROM mapped WHERE target IS NULL) > 0 THEN
                format('%s transactions have no v2 target and stay as they are',
                       (SELECT sum(transactions) FROM mapped WHERE target IS NULL)) END,
            CASE WHEN (SELECT coalesce(sum(transactions), 0) FROM all_groups WHERE status IS NOT NULL) > 0 THEN
                format('%s v1 transactions are not candidates because of their status (%s); '
                       'candidate_statuses may add completed ones',
                       (SELECT sum(transactions) FROM all_groups WHERE status IS NOT NULL),
                       (SELECT string_agg(format('%s %s', n, s), ', ' ORDER BY s)
                          FROM (SELECT status AS s, sum(transactions) AS n FROM all_groups
                                 WHERE status IS NOT NULL GROUP BY status) x)) END,
            format('%s candidates to reverse and repost', t.candidates)
        ] || ARRAY(SELECT format('%s candidates will be quarantined (%s): %s', q.transaction_count, q.rule, q.reason)
                     FROM quarantine q ORDER BY q.rule), NULL) AS reasons
      FROM totals t
)
SELECT jsonb_build_object(
    'organization_id', p_organization_id,
    'from_date', p_from_date,
    'to_date', p_to_date,
    'candidate_statuses', to_jsonb(v_statuses),
    'closed_period_policy', v_policy,
    'total_candidates', (SELECT candidates FROM totals),
    'smart_code_breakdown', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'source_smart_code', source, 'target_smart_code', target,
                   'transaction_count', transactions, 'total_amount', amount::text)
                 ORDER BY source), '[]'::jsonb)
          FROM (SELECT source, target, sum(transactions) AS transactions, sum(amount) AS amount
                  FROM migratable GROUP BY source, target) b),
    'not_migratable', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'source_smart_code', source, 'transaction_count', transactions, 'reason', reason)
                 ORDER BY source), '[]'::jsonb)
          FROM (SELECT source, reason, sum(transactions) AS transactions
                  FROM mapped WHERE target IS NULL GROUP BY source, reason) n),
    'non_candidates', (
        SELECT coalesce(jsonb_agg(jsonb_build_object('status', status, 'transaction_count', transactions)
                 ORDER BY status), '[]'::jsonb)
          FROM (SELECT status, sum(transactions) AS transactions FROM all_groups
                 WHERE status IS NOT NULL GROUP BY status) s),
    'fiscal_period_status', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'period_code', coalesce(p.period_code, ''),
                   'status', coalesce(p.status, 'UNASSIGNED'),
                   'affected_transactions', f.transactions)
                 ORDER BY p.start_date NULLS LAST, p.period_code), '[]'::jsonb)
          FROM (SELECT period_id, sum(transactions) AS transactions FROM migratable GROUP BY period_id) f
          LEFT JOIN periods p ON p.id = f.period_id),
    'unbalanced_transactions', jsonb_build_object(
        'count', (SELECT count(*) FROM unbalanced),
        'transaction_ids', (SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
                              FROM (SELECT id, transaction_date FROM unbalanced
                                     ORDER BY transaction_date, id LIMIT 100) u)),
    'prediction', (
        SELECT jsonb_build_object(
                   'migrated', pn.migrated,
                   'skipped_closed', pn.skipped_closed,
                   'skipped_unmapped', pn.skipped_unmapped,
                   'quarantined', pn.unbalanced + pn.metadata_keys + pn.total_sign + pn.fx_posting,
                   'quarantine', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                          'rule', q.rule, 'transaction_count', q.transaction_count,
                                          'reason', q.reason, 'transaction_ids', q.transaction_ids)
                                        ORDER BY q.rule), '[]'::jsonb) FROM quarantine q))
          FROM prediction pn),
    'estimated_processing_time_ms', (SELECT (value ->> 'ms')::bigint FROM estimate),
    'estimate_basis', (SELECT value ->> 'basis' FROM estimate),
    'risk_assessment', (
        SELECT jsonb_build_object('data_integrity_risk', data_integrity,
                                  'performance_impact', performance,
                                  'rollback_complexity', rollback,
                                  'reasons', to_jsonb(reasons))
          FROM risk),
    'plan_fingerprint', md5(concat_ws('|',
        p_organization_id, p_from_date, p_to_date, array_to_string(v_statuses, ','), v_policy,
        (SELECT string_agg(concat_ws(':', smart_code, coalesce(period_id::text, '-'), coalesce(target, '-'),
                                     keys, fx, transactions, state), ',' ORDER BY smart_code, period_id, keys, fx)
           FROM mapped),
        (SELECT string_agg(concat_ws(':', id, status), ',' ORDER BY id) FROM periods))),
    'candidate_ids', (
        SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
          FROM (SELECT c.id, c.transaction_date
                  FROM candidates c
                 -- a filter, not a join: the index gives them in order, and
                 -- the scan stops at the limit
                 WHERE c.smart_code = ANY (ARRAY(SELECT smart_code FROM code_map WHERE target IS NOT NULL))
                 ORDER BY c.transaction_date, c.id
                 LIMIT greatest(coalesce(nullif(p_batch_limit, 0), 1000), 0)) ids),
    'generated_at', now()
) INTO v_result;
RETURN v_result;
END;
$fn$;
