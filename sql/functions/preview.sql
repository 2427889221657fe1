-- Phase 1: the exact, read-only plan of a migration.
--
-- Candidates are the organization's transactions dated within the range
-- (inclusive, UTC calendar dates), posted, at smart-code version v1 (.v1 or
-- .V1), that are not a reversal, not already migrated, and not one of
-- hera-migrate's own bookkeeping rows. Everything is one CTE query: nothing is
-- created or written, so it can run in a READ ONLY transaction. Per-row work
-- is kept to cheap comparisons; string work runs once per distinct smart code.

-- Times a read of what a batch reads for a sample of candidates (headers and
-- lines), three times, keeping the fastest (a warm read, free of the noise of
-- whatever else the machine is doing). Read-only; used only while no batch
-- timings are recorded yet.
CREATE OR REPLACE FUNCTION hera_migration_calibrate_v2(p_organization_id uuid, p_ids uuid[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_started timestamptz;
    v_best numeric;
    v_transactions bigint;
    v_lines bigint;
BEGIN
    FOR i IN 1..3 LOOP
    v_started := clock_timestamp();
    SELECT count(*), coalesce(sum(l.lines), 0)
      INTO v_transactions, v_lines
      FROM universal_transactions t
      CROSS JOIN LATERAL (
          SELECT count(*) AS lines,
                 sum(line_amount) FILTER (WHERE line_data ->> 'side' = 'DR') AS dr,
                 sum(line_amount) FILTER (WHERE line_data ->> 'side' = 'CR') AS cr
            FROM universal_transaction_lines
           WHERE transaction_id = t.id
      ) l
     WHERE t.organization_id = p_organization_id
       AND t.id = ANY (p_ids);
    v_best := least(v_best, extract(epoch FROM clock_timestamp() - v_started) * 1000);
    END LOOP;
    RETURN jsonb_build_object(
        'transactions', v_transactions,
        'lines', v_lines,
        'read_ms', round(v_best, 3));
END;
$$;

CREATE OR REPLACE FUNCTION hera_migration_preview_candidates_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_batch_limit integer DEFAULT 1000,
    p_smart_code_mappings jsonb DEFAULT '[]'::jsonb
)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE -- the calibration reads the clock; nothing is written
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
    v_result     jsonb;
    v_suspect    boolean;
    v_groups     jsonb;
    -- The organization's fiscal periods, for placing candidates: every id,
    -- and those with a start, in order (a binary search by width_bucket).
    v_period_all uuid[];
    v_starts     date[];
    v_period_ids uuid[];
    v_ends       date[];
BEGIN
-- Does any transaction of the organization have unbalanced GL lines? One
-- ungrouped pass answers: each line adds its signed amount times a hash of
-- its transaction, so a balanced transaction adds exactly zero (NUMERIC, no
-- rounding) and the sum is zero when all balance. Imbalances could only cancel
-- out against each other's random multipliers by a fluke. Only a non-zero sum
-- pays for grouping lines by transaction to name the culprits.
SELECT coalesce(sum(CASE l.line_data ->> 'side' WHEN 'DR' THEN l.line_amount
                                               WHEN 'CR' THEN -l.line_amount ELSE 0 END
                    * (uuid_hash_extended(l.transaction_id, 20241231) % 1000000007)), 0) <> 0
  INTO v_suspect
  FROM universal_transaction_lines l
 WHERE l.organization_id = p_organization_id
   AND l.smart_code LIKE '%.GL.%';

SELECT coalesce(array_agg(e.id), '{}'),
       coalesce(array_agg((e.metadata ->> 'start_date')::date ORDER BY (e.metadata ->> 'start_date')::date, e.id)
                FILTER (WHERE e.metadata ->> 'start_date' IS NOT NULL), '{}'),
       coalesce(array_agg(e.id ORDER BY (e.metadata ->> 'start_date')::date, e.id)
                FILTER (WHERE e.metadata ->> 'start_date' IS NOT NULL), '{}'),
       coalesce(array_agg((e.metadata ->> 'end_date')::date ORDER BY (e.metadata ->> 'start_date')::date, e.id)
                FILTER (WHERE e.metadata ->> 'start_date' IS NOT NULL), '{}')
  INTO v_period_all, v_starts, v_period_ids, v_ends
  FROM core_entities e
 WHERE e.organization_id = p_organization_id
   AND e.entity_type = 'FISCAL_PERIOD';

-- The one pass over the candidates, grouped by smart code and fiscal period
-- (a candidate's period: its fiscal period entity, else the period whose
-- dates contain it). A statement of its own, referring to no CTE, so that
-- PostgreSQL can run it in parallel workers.
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'smart_code', g.smart_code, 'period_id', g.period_id, 'transactions', g.transactions,
           'amount', g.amount, 'state', g.state)), '[]')
  INTO v_groups
  FROM (SELECT c.smart_code,
               CASE WHEN c.fiscal_period_entity_id = ANY (v_period_all) THEN c.fiscal_period_entity_id
                    WHEN c.day <= v_ends[width_bucket(c.day, v_starts)]
                        THEN v_period_ids[width_bucket(c.day, v_starts)]
               END AS period_id,
               count(*) AS transactions, sum(c.total_amount) AS amount, bit_xor(c.state_hash) AS state
          FROM (SELECT t.smart_code, t.total_amount, t.fiscal_period_entity_id,
                       (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
                       uuid_hash_extended(t.id, coalesce(t.version, 0))
                         # timestamp_hash_extended(t.updated_at AT TIME ZONE 'UTC', 1)
                         # hash_numeric_extended(t.total_amount, 2)
                         # timestamp_hash_extended(t.transaction_date AT TIME ZONE 'UTC', 3) AS state_hash
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
       AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
       AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata)
               ) c
         GROUP BY 1, 2) g;

WITH
-- Inlined where it is used: the first candidates in order come straight off
-- the (organization_id, transaction_date, id) index, and the lines of
-- candidates are only read when the screen above found an imbalance.
candidates AS NOT MATERIALIZED (
    SELECT t.id, t.smart_code, t.transaction_date
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
       AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
       AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata)
),
periods AS (
    SELECT e.id,
           e.metadata ->> 'period_code' AS period_code,
           upper(coalesce(e.metadata ->> 'status', 'OPEN')) AS status,
           (e.metadata ->> 'start_date')::date AS start_date,
           (e.metadata ->> 'end_date')::date AS end_date
      FROM core_entities e
     WHERE e.organization_id = p_organization_id
       AND e.entity_type = 'FISCAL_PERIOD'
),
groups AS (
    SELECT g.smart_code, g.period_id, g.transactions, g.amount, g.state
      FROM jsonb_to_recordset(v_groups)
           AS g (smart_code text, period_id uuid, transactions bigint, amount numeric, state bigint)
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
           END AS reason
      FROM (SELECT DISTINCT smart_code FROM groups) c
      LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)
),
mapped AS (
    SELECT g.*, cm.source, cm.target, cm.reason
      FROM groups g JOIN code_map cm USING (smart_code)
),
migratable AS (
    SELECT * FROM mapped WHERE target IS NOT NULL
),
balances AS ( -- GL lines of the candidates, per transaction
    SELECT l.transaction_id,
           coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'DR'), 0) AS dr,
           coalesce(sum(l.line_amount) FILTER (WHERE l.line_data ->> 'side' = 'CR'), 0) AS cr
      FROM universal_transaction_lines l
     WHERE v_suspect
       AND l.organization_id = p_organization_id
       AND l.transaction_id IN (SELECT id FROM candidates)
       AND l.smart_code LIKE '%.GL.%'
     GROUP BY l.transaction_id
),
unbalanced AS (
    SELECT c.id, c.transaction_date
      FROM candidates c
      JOIN balances b ON b.transaction_id = c.id
     WHERE v_suspect
       AND abs(b.dr - b.cr) >= 0.0001
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
calibration AS ( -- only while nothing is recorded: time a read of the first candidates
    SELECT hera_migration_calibrate_v2(
               p_organization_id,
               ARRAY(SELECT id FROM candidates ORDER BY transaction_date, id LIMIT 500)) AS result
      FROM recorded
     WHERE recorded.batches = 0
),
estimate AS (
    SELECT CASE
             WHEN r.batches > 0 THEN
                 jsonb_build_object(
                     'ms', ceil(t.candidates * r.ms / r.transactions),
                     'basis', format('measured: %s ms per transaction over the latest %s batches',
                                     round(r.ms / r.transactions, 3), r.batches))
             WHEN (cal.result ->> 'transactions')::numeric > 0 THEN
                 -- A batch writes, per transaction read, a reversal and a repost
                 -- (header and lines each) and updates the original.
                 jsonb_build_object(
                     'ms', ceil(t.candidates
                                * ((cal.result ->> 'read_ms')::numeric
                                   / ((cal.result ->> 'transactions')::numeric + (cal.result ->> 'lines')::numeric))
                                * (3 + 2 * (cal.result ->> 'lines')::numeric / (cal.result ->> 'transactions')::numeric)),
                     'basis', format('calibration: read %s transactions with %s lines in %s ms, '
                                     'scaled by the rows a batch writes for each row it reads; '
                                     'the first executed batches replace it',
                                     cal.result ->> 'transactions', cal.result ->> 'lines', cal.result ->> 'read_ms'))
             ELSE jsonb_build_object('ms', 0, 'basis', 'no candidates')
           END AS value
      FROM totals t
      CROSS JOIN recorded r
      LEFT JOIN calibration cal ON true
),
risk AS (
    SELECT
        CASE WHEN (SELECT count(*) FROM unbalanced) > 0 THEN 'HIGH'
             WHEN t.in_closed > 0 OR t.unassigned > 0 THEN 'MEDIUM'
             ELSE 'LOW' END AS data_integrity,
        CASE WHEN t.candidates > 250000 THEN 'HIGH'
             WHEN t.candidates > 10000 THEN 'MEDIUM'
             ELSE 'LOW' END AS performance,
        CASE WHEN (SELECT count(*) FROM unbalanced) > 0 OR t.candidates > 1000000 THEN 'HIGH'
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
            format('%s candidates to reverse and repost', t.candidates)
        ], NULL) AS reasons
      FROM totals t
)
SELECT jsonb_build_object(
    'organization_id', p_organization_id,
    'from_date', p_from_date,
    'to_date', p_to_date,
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
    'fiscal_period_status', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'period_code', coalesce(p.period_code, ''),
                   'status', CASE WHEN p.id IS NULL THEN 'UNASSIGNED'
                                  WHEN p.status IN ('OPEN', 'CLOSED', 'LOCKED') THEN p.status
                                  ELSE 'OPEN' END,
                   'affected_transactions', f.transactions)
                 ORDER BY p.start_date NULLS LAST, p.period_code), '[]'::jsonb)
          FROM (SELECT period_id, sum(transactions) AS transactions FROM migratable GROUP BY period_id) f
          LEFT JOIN periods p ON p.id = f.period_id),
    'unbalanced_transactions', jsonb_build_object(
        'count', (SELECT count(*) FROM unbalanced),
        'transaction_ids', (SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
                              FROM (SELECT id, transaction_date FROM unbalanced
                                     ORDER BY transaction_date, id LIMIT 100) u)),
    'estimated_processing_time_ms', (SELECT (value ->> 'ms')::bigint FROM estimate),
    'estimate_basis', (SELECT value ->> 'basis' FROM estimate),
    'risk_assessment', (
        SELECT jsonb_build_object('data_integrity_risk', data_integrity,
                                  'performance_impact', performance,
                                  'rollback_complexity', rollback,
                                  'reasons', to_jsonb(reasons))
          FROM risk),
    'plan_fingerprint', md5(concat_ws('|',
        p_organization_id, p_from_date, p_to_date,
        (SELECT string_agg(concat_ws(':', smart_code, coalesce(period_id::text, '-'), coalesce(target, '-'),
                                     transactions, state), ',' ORDER BY smart_code, period_id)
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
