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
-- recorded yet: the sample batch of hera_migration_sample_batch_v2 (see
-- sql/functions/operations.sql: a real batch of the first p_sample candidates,
-- written and rolled back inside a subtransaction, timed). Returns
-- {transactions, written, batch_ms}, or NULL when timings are recorded
-- already, there are no candidates, or the transaction is read-only (it cannot
-- write its sample); {error} when the sample batch failed.
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
AS $fn$
DECLARE
    v_batch jsonb;
BEGIN
    IF current_setting('transaction_read_only') = 'on'
       OR EXISTS (SELECT 1 FROM universal_transactions
                   WHERE organization_id = p_organization_id
                     AND transaction_type = 'MIGRATION_OPERATION'
                     AND metadata ->> 'phase' = 'EXECUTION'
                     -- the estimate's own test of recorded timings: an empty
                     -- batch measured nothing
                     AND (metadata ->> 'transactions')::numeric > 0) THEN
        RETURN NULL;
    END IF;
    v_batch := hera_migration_sample_batch_v2(p_organization_id, p_from_date, p_to_date, p_candidate_statuses,
                                              p_smart_code_mappings, p_actor, p_sample);
    RETURN CASE WHEN v_batch ? 'error' OR (v_batch ->> 'transactions')::int > 0 THEN v_batch END;
END;
$fn$;

-- What reading the trial balance the run records before its first write
-- adds to a run the server drives, from how long the preview took to read
-- every GL line once. The server reads it beside the run's first batches, in
-- one process, which slows them while it lasts: the read takes about five
-- times the preview's (it joins the lines' transactions and groups them by
-- account, currency and period), and the batches meanwhile go about 15 %
-- slower, so the run takes about one preview read longer (measured on
-- seed-demo data at a million: the GL read 0.65 s, the trial balance 3.1 s,
-- the first batches 13-17 % slower than the steady ones for about 3 s). A
-- run driven from psql pays the whole read in its first batch instead.
CREATE OR REPLACE FUNCTION hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ceil(p_gl_read_ms) $$;

-- The preview's pieces, each callable alone from psql, in the order
-- hera_migration_preview_candidates_v2 (at the end of this file) calls them.
-- They hand each other jsonb, never a table or a type of their own: the
-- groups of the one pass over the candidates (hera_migration_preview_groups_v2),
-- the candidates' groups with their targets (hera_migration_preview_mapped_v2)
-- and the summary of the unbalanced (hera_migration_preview_unbalanced_v2).
--
-- The pieces that read the business's transactions or lines are PL/pgSQL and
-- carry the preview's planner settings, so that they are planned alike
-- whether the preview or a person in psql calls them:
--   plan_cache_mode = force_custom_plan: plan with the actual organization
--     and dates (a generic plan guesses a handful of rows and probes millions
--     by index);
--   work_mem = 256MB: aggregate a million candidates in memory, not on disk;
--   enable_nestloop = off: every join here is set against set; the filters'
--     selectivities are beyond the planner's statistics, and a misjudged
--     nested loop probes lines per candidate (tens of seconds at a million);
--   enable_sort = off: the candidates' statistics are beyond the planner too:
--     it would sort a million of them to group them (hashing is cheaper), or
--     to pick the first few (the index gives them in order);
--   jit = off: compiling these statements with LLVM costs far more than it
--     saves.

-- The preview's arguments with their defaults applied, once for every piece:
-- statuses, the transaction statuses the run migrates (NULL or empty:
-- 'posted'), and policy, the closed-period policy (NULL or empty: 'SKIP').
-- The result, the fingerprint and every count see these same values.
CREATE OR REPLACE FUNCTION hera_migration_preview_arguments_v2(
    p_candidate_statuses text[],
    p_closed_period_policy text,
    OUT statuses text[],
    OUT policy text
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(nullif(p_candidate_statuses, '{}'), ARRAY['posted']),
           coalesce(nullif(p_closed_period_policy, ''), 'SKIP')
$$;

-- Whether any transaction of the organization may have unbalanced GL lines
-- (suspect), and how long reading every GL line once took (gl_read_ms: a
-- run's first batch reads the same lines for its trial-balance snapshot, see
-- hera_migration_snapshot_estimate_ms_v2). One ungrouped pass answers: each
-- line adds its signed amount times a hash of its transaction, so a balanced
-- transaction adds exactly zero (NUMERIC, no rounding) and the sum is zero
-- when all balance. Imbalances could only cancel out against each other's
-- random multipliers by a fluke. Only when suspect does the preview pay for
-- grouping the candidates' lines by transaction to name the culprits
-- (hera_migration_preview_unbalanced_v2).
CREATE OR REPLACE FUNCTION hera_migration_preview_balance_screen_v2(
    p_organization_id uuid,
    OUT suspect boolean,
    OUT gl_read_ms numeric
)
LANGUAGE plpgsql VOLATILE -- it reads the clock
AS $fn$
DECLARE
    v_started timestamptz;
BEGIN
    v_started := clock_timestamp();
    SELECT q.suspect INTO suspect FROM hera_migration_preview_gl_pass_v2(p_organization_id) q;
    gl_read_ms := extract(epoch FROM clock_timestamp() - v_started) * 1000;
END;
$fn$;

-- The balance screen's pass over every GL line (see above). A RETURN QUERY
-- of its own because that is how PL/pgSQL lets PostgreSQL run a query in
-- parallel workers: a SELECT INTO (or an assignment) asks for a row or two
-- and always runs alone.
CREATE OR REPLACE FUNCTION hera_migration_preview_gl_pass_v2(p_organization_id uuid)
RETURNS TABLE (suspect boolean)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
BEGIN
    RETURN QUERY
    SELECT coalesce(sum(hera_migration_line_net_v2(l.line_data ->> 'side', l.line_amount)
                        * (uuid_hash_extended(l.transaction_id, 20241231) % 1000000007)), 0) <> 0
      FROM universal_transaction_lines l
     WHERE l.organization_id = p_organization_id
       AND l.smart_code LIKE '%.GL.%';
END;
$fn$;

-- The organization's fiscal periods as arrays, for placing candidates
-- without a join (hera_migration_preview_period_of_v2): period_ids, every
-- period's id; starts, start_ids and ends, the periods that have a start, in
-- order of start (a binary search by width_bucket); has_open, whether a
-- period with a start is OPEN (somewhere POST_TO_OPEN_PERIOD can post);
-- closed_ids, the periods that take no postings (CLOSED, LOCKED). One row,
-- empty arrays when the organization has no periods.
CREATE OR REPLACE FUNCTION hera_migration_preview_periods_v2(p_organization_id uuid)
RETURNS TABLE (
    period_ids uuid[],
    starts     date[],
    start_ids  uuid[],
    ends       date[],
    has_open   boolean,
    closed_ids uuid[]
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(p.id), '{}'),
           coalesce(array_agg(p.start_date ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
           coalesce(array_agg(p.id ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
           coalesce(array_agg(p.end_date ORDER BY p.start_date, p.id) FILTER (WHERE p.start_date IS NOT NULL), '{}'),
           coalesce(bool_or(p.status = 'OPEN' AND p.start_date IS NOT NULL), false),
           coalesce(array_agg(p.id) FILTER (WHERE p.status IN ('CLOSED', 'LOCKED')), '{}')
      FROM hera_migration_fiscal_periods_v2(p_organization_id) p
$$;

-- The fiscal period of one transaction, given the arrays of
-- hera_migration_preview_periods_v2: its fiscal period entity when that is
-- one of the organization's periods, else the period whose dates contain its
-- day (the last one starting on or before it), else NULL (unassigned). Per
-- row: a plain expression, which PostgreSQL inlines into the queries that
-- place candidates (the pass, the row screen, the unbalanced).
CREATE OR REPLACE FUNCTION hera_migration_preview_period_of_v2(
    p_fiscal_period_entity_id uuid,
    p_day date,
    p_period_ids uuid[],
    p_starts date[],
    p_start_ids uuid[],
    p_ends date[]
)
RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_fiscal_period_entity_id = ANY (p_period_ids) THEN p_fiscal_period_entity_id
                WHEN p_day <= p_ends[width_bucket(p_day, p_starts)]
                    THEN p_start_ids[width_bucket(p_day, p_starts)]
           END
$$;

-- The closed-period prediction for a candidate (or a group of them): whether
-- a batch skips it, given whether it lies in a CLOSED or LOCKED period
-- (p_in_closed), the closed-period policy and whether the organization has
-- an open period (p_has_open). SKIP skips it; POST_TO_OPEN_PERIOD posts it to
-- the open period, and skips it only when there is none. Plain boolean logic,
-- NULLs included (an unknown p_in_closed gives NULL unless the policy posts
-- to an open period); inlined where it is used.
CREATE OR REPLACE FUNCTION hera_migration_preview_skips_closed_v2(
    p_in_closed boolean,
    p_policy text,
    p_has_open boolean
)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_in_closed AND (p_policy <> 'POST_TO_OPEN_PERIOD' OR NOT p_has_open)
$$;

-- The one pass over the organization's v1 transactions in the range
-- (inclusive UTC dates): a jsonb array of groups by smart_code, period_id
-- (hera_migration_preview_period_of_v2), status (NULL for a candidate, else
-- the status that keeps it from being one, '' when it has none), and what
-- HERA's rules need per row: keys (its metadata clashes with the migration's
-- keys), fx (a posted foreign-currency transaction without exchange-rate
-- fields). Each group counts its transactions, those with a positive and a
-- negative total, sums their amount, and XORs a hash of each one's state
-- (id, version, updated_at, total, date) for the plan's fingerprint. The
-- totals, breakdowns, period counts, prediction and fingerprint are all read
-- from these groups, never from the table again. A statement of its own,
-- referring to no CTE, so that PostgreSQL can run it in parallel workers.
-- Read the groups as rows with hera_migration_preview_group_rows_v2.
CREATE OR REPLACE FUNCTION hera_migration_preview_groups_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[] DEFAULT ARRAY['posted']
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_period_ids uuid[];
    v_starts     date[];
    v_start_ids  uuid[];
    v_ends       date[];
    v_groups     jsonb;
BEGIN
    SELECT p.period_ids, p.starts, p.start_ids, p.ends
      INTO v_period_ids, v_starts, v_start_ids, v_ends
      FROM hera_migration_preview_periods_v2(p_organization_id) p;

    SELECT q.groups INTO v_groups
      FROM hera_migration_preview_group_pass_v2(p_organization_id, p_from_date, p_to_date, p_statuses,
                                                v_period_ids, v_starts, v_start_ids, v_ends) q;
    RETURN v_groups;
END;
$fn$;

-- The one pass of hera_migration_preview_groups_v2, given the periods as
-- arrays: a RETURN QUERY, so that it can run in parallel workers (see
-- hera_migration_preview_gl_pass_v2), each grouping its share of the rows.
-- The planner cannot tell how many rows the version test keeps (it guesses
-- a few hundred of a million) and would rather ship every row to one
-- process to group there, which doubles the pass: passing a row between
-- processes is priced as what it costs here.
CREATE OR REPLACE FUNCTION hera_migration_preview_group_pass_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[],
    p_period_ids uuid[],
    p_starts date[],
    p_start_ids uuid[],
    p_ends date[]
)
RETURNS TABLE (groups jsonb)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET parallel_tuple_cost = 10
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
BEGIN
    RETURN QUERY
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'smart_code', g.smart_code, 'period_id', g.period_id, 'status', g.status,
               'keys', g.keys, 'fx', g.fx, 'transactions', g.transactions,
               'positive', g.positive, 'negative', g.negative, 'amount', g.amount, 'state', g.state)), '[]')
      FROM (SELECT c.smart_code,
                   hera_migration_preview_period_of_v2(c.fiscal_period_entity_id, c.day,
                                                       p_period_ids, p_starts, p_start_ids, p_ends) AS period_id,
                   c.status, c.keys, c.fx,
                   count(*) AS transactions,
                   count(*) FILTER (WHERE c.total_amount > 0) AS positive,
                   count(*) FILTER (WHERE c.total_amount < 0) AS negative,
                   sum(c.total_amount) AS amount, bit_xor(c.state_hash) AS state
              FROM (SELECT t.smart_code, t.total_amount, t.fiscal_period_entity_id,
                           (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
                           CASE WHEN t.transaction_status = ANY (p_statuses) THEN NULL
                                ELSE coalesce(t.transaction_status, '') END AS status,
                           hera_migration_has_original_keys_v2(t.metadata) AS keys,
                           hera_migration_fx_blocked_v2(t) AS fx,
                           uuid_hash_extended(t.id, coalesce(t.version, 0))
                             # timestamp_hash_extended(t.updated_at AT TIME ZONE 'UTC', 1)
                             # hash_numeric_extended(t.total_amount, 2)
                             # timestamp_hash_extended(t.transaction_date AT TIME ZONE 'UTC', 3) AS state_hash
                      FROM universal_transactions t
                     WHERE t.organization_id = p_organization_id
                       AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
                       AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
                       AND hera_migration_is_v1_business_row_v2(t.smart_code, t.metadata)
                   ) c
             GROUP BY 1, 2, 3, 4, 5) g;
END;
$fn$;

-- The groups of hera_migration_preview_groups_v2 (or of
-- hera_migration_preview_mapped_v2) as typed rows. The code map's columns,
-- source to target_negative, are NULL until the groups are mapped.
CREATE OR REPLACE FUNCTION hera_migration_preview_group_rows_v2(p_groups jsonb)
RETURNS TABLE (
    smart_code      text,
    period_id       uuid,
    status          text,
    keys            boolean,
    fx              boolean,
    transactions    bigint,
    positive        bigint,
    negative        bigint,
    amount          numeric,
    state           bigint,
    source          text,
    target          text,
    reason          text,
    own_negative    boolean,
    financial       boolean,
    target_negative boolean
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT g.*
      FROM jsonb_to_recordset(coalesce(p_groups, '[]'))
           AS g (smart_code text, period_id uuid, status text, keys boolean, fx boolean, transactions bigint,
                 positive bigint, negative bigint, amount numeric, state bigint,
                 source text, target text, reason text, own_negative boolean, financial boolean,
                 target_negative boolean)
$$;

-- Per distinct smart code of the candidates' groups (status NULL): its
-- source form (normalized, .v1), its v2 target (an explicit mapping's, when
-- that is a valid smart code; else the code at v2, when the code is valid),
-- or NULL and the reason it has none; and what HERA's sign rule and FX gate
-- need of it (own_negative, financial, target_negative). String work runs
-- here, once per code, never per row.
CREATE OR REPLACE FUNCTION hera_migration_preview_code_map_v2(
    p_groups jsonb,
    p_smart_code_mappings jsonb DEFAULT '[]'
)
RETURNS TABLE (
    smart_code      text,
    source          text,
    target          text,
    reason          text,
    own_negative    boolean,
    financial       boolean,
    target_negative boolean
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH mappings AS (
        SELECT hera_smart_code_normalize(m ->> 'source_smart_code') AS source,
               nullif(btrim(m ->> 'target_smart_code'), '') AS target
          FROM jsonb_array_elements(coalesce(p_smart_code_mappings, '[]'::jsonb)) AS m
    )
    SELECT x.*, hera_migration_is_negative_type_v2(x.target)
      FROM (SELECT c.smart_code,
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
              FROM (SELECT DISTINCT g.smart_code FROM hera_migration_preview_group_rows_v2(p_groups) g
                     WHERE g.status IS NULL) c
              LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)) x
$$;

-- The candidates' groups (status NULL) of hera_migration_preview_groups_v2,
-- each with its code map (hera_migration_preview_code_map_v2): a jsonb array
-- of the same objects with source, target, reason, own_negative, financial
-- and target_negative added. The input of every count of candidates:
-- those whose target is not NULL are migratable, the others are not.
CREATE OR REPLACE FUNCTION hera_migration_preview_mapped_v2(
    p_groups jsonb,
    p_smart_code_mappings jsonb DEFAULT '[]'
)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]')
      FROM (SELECT g.smart_code, g.period_id, g.status, g.keys, g.fx, g.transactions, g.positive, g.negative,
                   g.amount, g.state, cm.source, cm.target, cm.reason, cm.own_negative, cm.financial,
                   cm.target_negative
              FROM hera_migration_preview_group_rows_v2(p_groups) g
              JOIN hera_migration_preview_code_map_v2(p_groups, p_smart_code_mappings) cm
                ON cm.smart_code = g.smart_code
             WHERE g.status IS NULL) m
$$;

-- The candidates whose GL lines do not balance (DR <> CR by 0.0001 or more),
-- summarized: {count, transaction_ids (the first 100 by date and id),
-- quarantine_ids (the first 100 of those whose smart code is one of
-- p_migratable_codes, which a batch quarantines), groups (per smart_code,
-- period_id, keys and fx: transactions, positive, negative; the groups' terms,
-- so that the prediction can take them out of the groups first, as a batch
-- does)}. Reads the candidates and their lines; with p_suspect false (the
-- balance screen found every transaction balanced) it reads nothing and
-- reports none.
CREATE OR REPLACE FUNCTION hera_migration_preview_unbalanced_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[],
    p_migratable_codes text[],
    p_suspect boolean DEFAULT true
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
    v_period_ids uuid[];
    v_starts     date[];
    v_start_ids  uuid[];
    v_ends       date[];
    v_result     jsonb;
BEGIN
    IF NOT coalesce(p_suspect, true) THEN
        RETURN jsonb_build_object('count', 0, 'transaction_ids', '[]'::jsonb,
                                  'quarantine_ids', '[]'::jsonb, 'groups', '[]'::jsonb);
    END IF;
    SELECT p.period_ids, p.starts, p.start_ids, p.ends
      INTO v_period_ids, v_starts, v_start_ids, v_ends
      FROM hera_migration_preview_periods_v2(p_organization_id) p;

    WITH
    candidates AS NOT MATERIALIZED (
        SELECT t.id, t.smart_code, t.transaction_date, t.total_amount, t.fiscal_period_entity_id,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
               hera_migration_has_original_keys_v2(t.metadata) AS keys,
               hera_migration_fx_blocked_v2(t) AS fx
          FROM universal_transactions t
         WHERE t.organization_id = p_organization_id
           AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
           AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
           AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, p_statuses)
    ),
    balances AS ( -- GL lines of the candidates, per transaction
        SELECT l.transaction_id,
               sum(hera_migration_line_net_v2(l.line_data ->> 'side', l.line_amount)) AS net
          FROM universal_transaction_lines l
         WHERE l.organization_id = p_organization_id
           AND l.transaction_id IN (SELECT id FROM candidates)
           AND l.smart_code LIKE '%.GL.%'
         GROUP BY l.transaction_id
    ),
    unbalanced AS (
        SELECT c.id, c.transaction_date, c.smart_code, c.keys, c.fx, c.total_amount,
               hera_migration_preview_period_of_v2(c.fiscal_period_entity_id, c.day,
                                                   v_period_ids, v_starts, v_start_ids, v_ends) AS period_id
          FROM candidates c
          JOIN balances b ON b.transaction_id = c.id
         WHERE abs(b.net) >= 0.0001
    )
    SELECT jsonb_build_object(
        'count', (SELECT count(*) FROM unbalanced),
        'transaction_ids', (SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
                              FROM (SELECT id, transaction_date FROM unbalanced
                                     ORDER BY transaction_date, id LIMIT 100) u),
        'quarantine_ids', (SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
                             FROM (SELECT id, transaction_date FROM unbalanced
                                    WHERE smart_code = ANY (p_migratable_codes)
                                    ORDER BY transaction_date, id LIMIT 100) u),
        'groups', (SELECT coalesce(jsonb_agg(to_jsonb(ug)), '[]'::jsonb)
                     FROM (SELECT u.smart_code, u.period_id, u.keys, u.fx, count(*) AS transactions,
                                  count(*) FILTER (WHERE u.total_amount > 0) AS positive,
                                  count(*) FILTER (WHERE u.total_amount < 0) AS negative
                             FROM unbalanced u
                            GROUP BY 1, 2, 3, 4) ug))
      INTO v_result;
    RETURN v_result;
END;
$fn$;

-- The per-rule quarantine prediction's ids: {rule: [ids]}, the candidates a
-- batch would quarantine by one of HERA's rules (hera_migration_screen_v2:
-- metadata_keys, chk_txn_total_sign, fx_posting), at most 100 per rule,
-- oldest first, leaving out those the closed-period policy skips. Candidates
-- are looked up and screened row by row only when a group of p_groups
-- (hera_migration_preview_groups_v2) shows that a rule applies at all (a
-- clashing key, an FX gap, or a total whose sign the code's type or an
-- explicit mapping may refuse); otherwise '{}' without reading. The target a
-- row is screened against is the batch's: an explicit mapping's target as it
-- is, else the code at v2.
CREATE OR REPLACE FUNCTION hera_migration_preview_quarantine_ids_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[],
    p_smart_code_mappings jsonb,
    p_policy text,
    p_sign_rule boolean,
    p_groups jsonb
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
    v_period_ids uuid[];
    v_starts     date[];
    v_start_ids  uuid[];
    v_ends       date[];
    v_has_open   boolean;
    v_closed_ids uuid[];
    v_ids        jsonb := '{}';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hera_migration_preview_group_rows_v2(p_groups) g
                    WHERE g.status IS NULL
                      AND (g.keys OR g.fx
                           OR (p_sign_rule AND (g.positive > 0 AND hera_migration_is_negative_type_v2(g.smart_code)
                                                OR g.negative > 0 AND NOT hera_migration_is_negative_type_v2(g.smart_code)
                                                OR jsonb_array_length(coalesce(p_smart_code_mappings, '[]')) > 0)))) THEN
        RETURN v_ids;
    END IF;
    SELECT p.period_ids, p.starts, p.start_ids, p.ends, p.has_open, p.closed_ids
      INTO v_period_ids, v_starts, v_start_ids, v_ends, v_has_open, v_closed_ids
      FROM hera_migration_preview_periods_v2(p_organization_id) p;

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
          FROM (SELECT DISTINCT g.smart_code FROM hera_migration_preview_group_rows_v2(p_groups) g
                 WHERE g.status IS NULL) c
          LEFT JOIN mappings m ON m.source = hera_smart_code_normalize(c.smart_code)
    ),
    hits AS (
        SELECT t.id, t.transaction_date, sc.s ->> 'rule' AS rule,
               row_number() OVER (PARTITION BY sc.s ->> 'rule' ORDER BY t.transaction_date, t.id) AS nth
          FROM universal_transactions t
          JOIN code_map cm ON cm.smart_code = t.smart_code AND cm.target IS NOT NULL
         -- Once per row (OFFSET 0 keeps the planner from flattening it into
         -- a call per use).
         CROSS JOIN LATERAL (SELECT hera_migration_screen_v2(t, cm.target, p_sign_rule) AS s OFFSET 0) sc
         WHERE t.organization_id = p_organization_id
           AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
           AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
           AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, p_statuses)
           AND sc.s IS NOT NULL
           AND NOT coalesce(hera_migration_preview_skips_closed_v2(
                   hera_migration_preview_period_of_v2(t.fiscal_period_entity_id,
                                                       (t.transaction_date AT TIME ZONE 'UTC')::date,
                                                       v_period_ids, v_starts, v_start_ids, v_ends)
                       = ANY (v_closed_ids),
                   p_policy, v_has_open), false)
    )
    SELECT coalesce(jsonb_object_agg(rule, ids), '{}') INTO v_ids
      FROM (SELECT rule, jsonb_agg(id ORDER BY transaction_date, id) AS ids
              FROM hits WHERE nth <= 100 GROUP BY rule) r;
    RETURN v_ids;
END;
$fn$;

-- What the batches will do with the candidates, counted from the groups
-- (p_mapped, of hera_migration_preview_mapped_v2) in a batch's order of
-- decisions: unmapped (skipped_unmapped), unbalanced (the groups of
-- p_unbalanced, hera_migration_preview_unbalanced_v2, are taken out first),
-- closed period (skipped_closed, hera_migration_preview_skips_closed_v2),
-- HERA's rules in hera_migration_screen_v2's order (metadata keys, the sign
-- rule on the code and on its target when p_sign_rule, FX), else migrated.
-- Returns {migrated, skipped_closed, skipped_unmapped, quarantined, by_rule:
-- {unbalanced, metadata_keys, chk_txn_total_sign, fx_posting}}.
CREATE OR REPLACE FUNCTION hera_migration_preview_outcomes_v2(
    p_organization_id uuid,
    p_mapped jsonb,
    p_unbalanced jsonb,
    p_policy text,
    p_sign_rule boolean
)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
WITH
periods AS (
    SELECT * FROM hera_migration_fiscal_periods_v2(p_organization_id)
),
mapped AS (
    SELECT * FROM hera_migration_preview_group_rows_v2(p_mapped)
),
migratable AS (
    SELECT * FROM mapped WHERE target IS NOT NULL
),
unbalanced_groups AS (
    SELECT *
      FROM jsonb_to_recordset(coalesce(p_unbalanced -> 'groups', '[]'))
           AS ug (smart_code text, period_id uuid, keys boolean, fx boolean, transactions bigint,
                  positive bigint, negative bigint)
),
predicted AS (
    SELECT m.*, coalesce(p.status, 'UNASSIGNED') AS period_status,
           coalesce(ug.transactions, 0) AS unbalanced,
           m.transactions - coalesce(ug.transactions, 0) AS n,
           m.positive - coalesce(ug.positive, 0) AS pos,
           m.negative - coalesce(ug.negative, 0) AS neg,
           -- A candidate in no period is not in a closed one: a batch migrates it.
           coalesce(hera_migration_preview_skips_closed_v2(
               p.status IN ('CLOSED', 'LOCKED'), p_policy,
               (SELECT o.has_open FROM hera_migration_preview_periods_v2(p_organization_id) o)), false) AS skipped
      FROM migratable m
      LEFT JOIN periods p ON p.id = m.period_id
      LEFT JOIN unbalanced_groups ug
             ON ug.smart_code = m.smart_code AND ug.period_id IS NOT DISTINCT FROM m.period_id
            AND ug.keys = m.keys AND ug.fx = m.fx
),
screened AS (
    SELECT pr.*,
           CASE WHEN pr.skipped OR NOT pr.keys THEN 0 ELSE pr.n END AS by_keys,
           CASE WHEN pr.skipped OR pr.keys OR NOT p_sign_rule THEN 0
                WHEN pr.own_negative THEN pr.pos ELSE pr.neg END AS by_own_sign,
           CASE WHEN pr.skipped OR pr.keys OR NOT p_sign_rule OR pr.own_negative = pr.target_negative THEN 0
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
)
SELECT jsonb_build_object(
           'migrated', pn.migrated,
           'skipped_closed', pn.skipped_closed,
           'skipped_unmapped', pn.skipped_unmapped,
           'quarantined', pn.unbalanced + pn.metadata_keys + pn.total_sign + pn.fx_posting,
           'by_rule', jsonb_build_object('unbalanced', pn.unbalanced, 'metadata_keys', pn.metadata_keys,
                                         'chk_txn_total_sign', pn.total_sign, 'fx_posting', pn.fx_posting))
  FROM prediction pn
$$;

-- The per-rule quarantine prediction: a jsonb array, by rule, of each rule
-- that quarantines any candidate (p_outcomes -> by_rule, of
-- hera_migration_preview_outcomes_v2), with its count, the reason a person
-- reads, and its first ids (p_unbalanced -> quarantine_ids for unbalanced,
-- else p_screened_ids of hera_migration_preview_quarantine_ids_v2).
CREATE OR REPLACE FUNCTION hera_migration_preview_quarantine_v2(
    p_outcomes jsonb,
    p_unbalanced jsonb,
    p_screened_ids jsonb
)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'rule', q.rule, 'transaction_count', q.transaction_count, 'reason', q.reason,
               'transaction_ids', coalesce(CASE WHEN q.rule = 'unbalanced' THEN p_unbalanced -> 'quarantine_ids'
                                                ELSE p_screened_ids -> q.rule END, '[]'))
             ORDER BY q.rule), '[]'::jsonb)
      FROM (VALUES
           ('unbalanced', (p_outcomes #>> '{by_rule,unbalanced}')::bigint,
            'its GL lines do not balance (DR <> CR)'),
           ('metadata_keys', (p_outcomes #>> '{by_rule,metadata_keys}')::bigint,
            'its metadata already holds keys a migration writes, which a rollback would remove'),
           ('chk_txn_total_sign', (p_outcomes #>> '{by_rule,chk_txn_total_sign}')::bigint,
            'its total_amount breaks HERA''s sign rule for its smart code or its target''s'),
           ('fx_posting', (p_outcomes #>> '{by_rule,fx_posting}')::bigint,
            'a financial transaction in a foreign currency without exchange_rate, exchange_rate_date and '
            'exchange_rate_type: HERA refuses to set it back to posted (trg_txn_fx_on_post), so a rollback '
            'could not restore it')
           ) AS q (rule, transaction_count, reason)
     WHERE q.transaction_count > 0
$$;

-- The candidate counts of p_mapped (hera_migration_preview_mapped_v2):
-- {candidates, the migratable ones (a v2 target); in_closed, those of them in
-- CLOSED or LOCKED periods; unassigned, those in no fiscal period}.
CREATE OR REPLACE FUNCTION hera_migration_preview_totals_v2(p_organization_id uuid, p_mapped jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
               'candidates', coalesce(sum(m.transactions), 0)::bigint,
               'in_closed', coalesce(sum(m.transactions) FILTER (WHERE p.status IN ('CLOSED', 'LOCKED')), 0)::bigint,
               'unassigned', coalesce(sum(m.transactions) FILTER (WHERE m.period_id IS NULL), 0)::bigint)
      FROM hera_migration_preview_group_rows_v2(p_mapped) m
      LEFT JOIN hera_migration_fiscal_periods_v2(p_organization_id) p ON p.id = m.period_id
     WHERE m.target IS NOT NULL
$$;

-- The migratable candidates of p_mapped per source and target smart code,
-- with their count and total amount (NUMERIC as text): the preview's
-- smart_code_breakdown, by source.
CREATE OR REPLACE FUNCTION hera_migration_preview_breakdown_v2(p_mapped jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_smart_code', source, 'target_smart_code', target,
               'transaction_count', transactions, 'total_amount', amount::text)
             ORDER BY source), '[]'::jsonb)
      FROM (SELECT source, target, sum(transactions) AS transactions, sum(amount) AS amount
              FROM hera_migration_preview_group_rows_v2(p_mapped)
             WHERE target IS NOT NULL
             GROUP BY source, target) b
$$;

-- The candidates of p_mapped without a v2 target, per source smart code and
-- reason: the preview's not_migratable, by source. They stay as they are.
CREATE OR REPLACE FUNCTION hera_migration_preview_not_migratable_v2(p_mapped jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_smart_code', source, 'transaction_count', transactions, 'reason', reason)
             ORDER BY source), '[]'::jsonb)
      FROM (SELECT source, reason, sum(transactions) AS transactions
              FROM hera_migration_preview_group_rows_v2(p_mapped)
             WHERE target IS NULL
             GROUP BY source, reason) n
$$;

-- The v1 transactions in the range that are not candidates because of their
-- status, counted per status from p_groups (hera_migration_preview_groups_v2):
-- the preview's non_candidates, by status. candidate_statuses may add them.
CREATE OR REPLACE FUNCTION hera_migration_preview_non_candidates_v2(p_groups jsonb)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('status', status, 'transaction_count', transactions)
             ORDER BY status), '[]'::jsonb)
      FROM (SELECT status, sum(transactions) AS transactions
              FROM hera_migration_preview_group_rows_v2(p_groups)
             WHERE status IS NOT NULL
             GROUP BY status) s
$$;

-- The migratable candidates of p_mapped per fiscal period, with its code and
-- status (UNASSIGNED, code '', for those in none): the preview's
-- fiscal_period_status, in order of the periods' starts.
CREATE OR REPLACE FUNCTION hera_migration_preview_period_status_v2(p_organization_id uuid, p_mapped jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'period_code', coalesce(p.period_code, ''),
               'status', coalesce(p.status, 'UNASSIGNED'),
               'affected_transactions', f.transactions)
             ORDER BY p.start_date NULLS LAST, p.period_code), '[]'::jsonb)
      FROM (SELECT period_id, sum(transactions) AS transactions
              FROM hera_migration_preview_group_rows_v2(p_mapped)
             WHERE target IS NOT NULL
             GROUP BY period_id) f
      LEFT JOIN hera_migration_fiscal_periods_v2(p_organization_id) p ON p.id = f.period_id
$$;

-- The time estimate of a run over p_candidates of which p_migrated will be
-- written: {ms, basis}, the trial balance's read beside the first batches
-- (from p_gl_read_ms, hera_migration_snapshot_estimate_ms_v2), then per candidate
-- what the organization's latest 20 executed batches took, or else what the
-- calibration's sample batch (p_calibration, hera_migration_calibrate_v2)
-- took per transaction it wrote, for those to be written (those only read,
-- skipped or quarantined, cost a tenth); ms 0 and why, when there is neither.
CREATE OR REPLACE FUNCTION hera_migration_preview_estimate_v2(
    p_organization_id uuid,
    p_candidates bigint,
    p_migrated bigint,
    p_gl_read_ms numeric,
    p_calibration jsonb
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
    v_estimate jsonb;
BEGIN
    WITH
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
    )
    SELECT CASE
             WHEN p_candidates = 0 THEN jsonb_build_object('ms', 0, 'basis', 'no candidates')
             WHEN r.batches > 0 THEN
                 jsonb_build_object(
                     'ms', ceil(hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms) + p_candidates * r.ms / r.transactions),
                     'basis', format('measured: %s ms per transaction over the latest %s batches, plus %s ms for '
                                     'reading the trial balance beside the first batches',
                                     round(r.ms / r.transactions, 3), r.batches,
                                     hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms)))
             WHEN (p_calibration ->> 'transactions')::numeric > 0 THEN
                 -- A candidate that is only read (skipped, quarantined) costs
                 -- about a tenth of one written: it is locked and classified,
                 -- not copied (measured: 582,205 skipped at a million took
                 -- 50 s of a 277 s run, 0.09 ms each against 0.53 ms).
                 jsonb_build_object(
                     'ms', ceil(hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms)
                                + (p_migrated + 0.1 * (p_candidates - p_migrated))
                                  * (p_calibration ->> 'batch_ms')::numeric
                                  / greatest((p_calibration ->> 'written')::numeric, 1)),
                     'basis', format('calibration: a sample batch of %s transactions was written and rolled '
                                     'back in %s ms; %s ms per transaction written for the %s to be migrated '
                                     '(a tenth of that for the %s only read), plus %s ms for reading the trial '
                                     'balance beside the first batches; the first executed batches replace it',
                                     p_calibration ->> 'transactions', p_calibration ->> 'batch_ms',
                                     round((p_calibration ->> 'batch_ms')::numeric
                                           / greatest((p_calibration ->> 'written')::numeric, 1), 3),
                                     p_migrated, p_candidates - p_migrated,
                                     hera_migration_snapshot_estimate_ms_v2(p_gl_read_ms)))
             ELSE jsonb_build_object('ms', 0, 'basis',
                      CASE WHEN p_calibration ? 'error'
                           THEN 'no estimate: the calibration batch failed: ' || (p_calibration ->> 'error')
                           ELSE 'no estimate: no batch timings are recorded, and a read-only transaction cannot '
                                'write the calibration''s sample batch (pass hera_migration_calibrate_v2(...) '
                                'as p_calibration)' END)
           END
      INTO v_estimate
      FROM recorded r;
    RETURN v_estimate;
END;
$fn$;

-- The risk assessment, from the other pieces: p_totals
-- (hera_migration_preview_totals_v2), p_prediction (the outcomes with their
-- quarantine list), p_unbalanced (hera_migration_preview_unbalanced_v2) and
-- p_non_candidates (hera_migration_preview_non_candidates_v2). Returns
-- {data_integrity_risk, performance_impact, rollback_complexity} (LOW, MEDIUM
-- or HIGH each) and the reasons, one sentence each, quarantine rules last.
CREATE OR REPLACE FUNCTION hera_migration_preview_risk_v2(
    p_totals jsonb,
    p_prediction jsonb,
    p_unbalanced jsonb,
    p_non_candidates jsonb
)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH
facts AS (
    SELECT (p_totals ->> 'candidates')::bigint AS candidates,
           (p_totals ->> 'in_closed')::bigint AS in_closed,
           (p_totals ->> 'unassigned')::bigint AS unassigned,
           coalesce((p_unbalanced ->> 'count')::bigint, 0) AS unbalanced,
           (p_prediction ->> 'skipped_unmapped')::bigint AS unmapped,
           jsonb_array_length(coalesce(p_prediction -> 'quarantine', '[]')) AS quarantine_rules,
           (SELECT sum((s ->> 'transaction_count')::numeric)
              FROM jsonb_array_elements(coalesce(p_non_candidates, '[]')) s) AS non_candidates,
           (SELECT string_agg(format('%s %s', s ->> 'transaction_count', s ->> 'status'), ', '
                              ORDER BY s ->> 'status')
              FROM jsonb_array_elements(coalesce(p_non_candidates, '[]')) s) AS by_status
)
SELECT jsonb_build_object(
    'data_integrity_risk',
        CASE WHEN f.unbalanced > 0 OR f.quarantine_rules > 0 THEN 'HIGH'
             WHEN f.in_closed > 0 OR f.unassigned > 0 THEN 'MEDIUM'
             ELSE 'LOW' END,
    'performance_impact',
        CASE WHEN f.candidates > 250000 THEN 'HIGH'
             WHEN f.candidates > 10000 THEN 'MEDIUM'
             ELSE 'LOW' END,
    'rollback_complexity',
        CASE WHEN f.quarantine_rules > 0 OR f.candidates > 1000000 THEN 'HIGH'
             WHEN f.in_closed > 0 THEN 'MEDIUM'
             ELSE 'LOW' END,
    'reasons', to_jsonb(array_remove(ARRAY[
        CASE WHEN f.unbalanced > 0 THEN
            format('%s candidates do not balance today (DR <> CR on their GL lines)', f.unbalanced) END,
        CASE WHEN f.in_closed > 0 THEN
            format('%s candidates lie in CLOSED or LOCKED fiscal periods', f.in_closed) END,
        CASE WHEN f.unassigned > 0 THEN
            format('%s candidates belong to no fiscal period', f.unassigned) END,
        CASE WHEN f.unmapped > 0 THEN
            format('%s transactions have no v2 target and stay as they are', f.unmapped) END,
        CASE WHEN coalesce(f.non_candidates, 0) > 0 THEN
            format('%s v1 transactions are not candidates because of their status (%s); '
                   'candidate_statuses may add completed ones', f.non_candidates, f.by_status) END,
        format('%s candidates to reverse and repost', f.candidates)
    ] || ARRAY(SELECT format('%s candidates will be quarantined (%s): %s',
                             q ->> 'transaction_count', q ->> 'rule', q ->> 'reason')
                 FROM jsonb_array_elements(coalesce(p_prediction -> 'quarantine', '[]')) q
                ORDER BY q ->> 'rule'), NULL)))
  FROM facts f
$$;

-- The plan's fingerprint: md5 of the arguments (statuses and policy with
-- their defaults applied), of every candidates' group of p_mapped (smart
-- code, period, target, keys, fx, count and the XOR of its rows' state
-- hashes) and of every fiscal period's id and status. StartMigration compares
-- it with the one its caller previewed: any change to a candidate, a period
-- or the arguments changes it.
CREATE OR REPLACE FUNCTION hera_migration_preview_fingerprint_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[],
    p_policy text,
    p_mapped jsonb
)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT md5(concat_ws('|',
        p_organization_id, p_from_date, p_to_date, array_to_string(p_statuses, ','), p_policy,
        (SELECT string_agg(concat_ws(':', smart_code, coalesce(period_id::text, '-'), coalesce(target, '-'),
                                     keys, fx, transactions, state), ',' ORDER BY smart_code, period_id, keys, fx)
           FROM hera_migration_preview_group_rows_v2(p_mapped)),
        (SELECT string_agg(concat_ws(':', id, status), ',' ORDER BY id)
           FROM hera_migration_fiscal_periods_v2(p_organization_id))))
$$;

-- The sample ids: the first p_batch_limit candidates (0 or NULL: 1000) whose
-- smart code is one of p_migratable_codes, by date and id, as a jsonb array:
-- the ids a run's first batch would read. They come straight off the
-- (organization_id, transaction_date, id) index: the codes are a filter, not
-- a join, and the scan stops at the limit.
CREATE OR REPLACE FUNCTION hera_migration_preview_sample_ids_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_statuses text[],
    p_migratable_codes text[],
    p_batch_limit integer DEFAULT 1000
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
    v_ids jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(id ORDER BY transaction_date, id), '[]'::jsonb)
      INTO v_ids
      FROM (SELECT t.id, t.transaction_date
              FROM universal_transactions t
             WHERE t.organization_id = p_organization_id
               AND t.transaction_date >= (p_from_date::timestamp AT TIME ZONE 'UTC')
               AND t.transaction_date < ((p_to_date + 1)::timestamp AT TIME ZONE 'UTC')
               AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, p_statuses)
               AND t.smart_code = ANY (p_migratable_codes)
             ORDER BY t.transaction_date, t.id
             LIMIT greatest(coalesce(nullif(p_batch_limit, 0), 1000), 0)) ids;
    RETURN v_ids;
END;
$fn$;

-- The preview: the pieces above, in order, assembled into one jsonb. Its
-- settings (see the pieces' note above) also hold for the pieces it calls.
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
SET plan_cache_mode = force_custom_plan
SET work_mem = '256MB'
SET enable_nestloop = off
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
    v_statuses     text[];
    v_policy       text;
    v_sign_rule    boolean := hera_migration_enforces_total_sign_v2();
    v_suspect      boolean;
    v_gl_read_ms   numeric;
    v_groups       jsonb;
    v_mapped       jsonb;
    v_codes        text[];
    v_unbalanced   jsonb;
    v_screened_ids jsonb;
    v_calibration  jsonb := p_calibration;
    v_totals       jsonb;
    v_outcomes     jsonb;
    v_prediction   jsonb;
    v_non_candidates jsonb;
    v_estimate     jsonb;
BEGIN
    SELECT a.statuses, a.policy INTO v_statuses, v_policy
      FROM hera_migration_preview_arguments_v2(p_candidate_statuses, p_closed_period_policy) a;
    SELECT s.suspect, s.gl_read_ms INTO v_suspect, v_gl_read_ms
      FROM hera_migration_preview_balance_screen_v2(p_organization_id) s;
    v_groups := hera_migration_preview_groups_v2(p_organization_id, p_from_date, p_to_date, v_statuses);
    v_mapped := hera_migration_preview_mapped_v2(v_groups, p_smart_code_mappings);
    v_codes := ARRAY(SELECT DISTINCT m.smart_code FROM hera_migration_preview_group_rows_v2(v_mapped) m
                      WHERE m.target IS NOT NULL);
    v_unbalanced := hera_migration_preview_unbalanced_v2(p_organization_id, p_from_date, p_to_date, v_statuses,
                                                         v_codes, v_suspect);
    v_screened_ids := hera_migration_preview_quarantine_ids_v2(p_organization_id, p_from_date, p_to_date, v_statuses,
                                                               p_smart_code_mappings, v_policy, v_sign_rule, v_groups);
    -- Without recorded batch timings, calibrate (when this transaction may write).
    IF v_calibration IS NULL THEN
        v_calibration := hera_migration_calibrate_v2(p_organization_id, p_from_date, p_to_date, v_statuses,
                                                     p_smart_code_mappings);
    END IF;
    v_totals := hera_migration_preview_totals_v2(p_organization_id, v_mapped);
    v_outcomes := hera_migration_preview_outcomes_v2(p_organization_id, v_mapped, v_unbalanced, v_policy, v_sign_rule);
    v_prediction := (v_outcomes - 'by_rule')
                    || jsonb_build_object('quarantine',
                                          hera_migration_preview_quarantine_v2(v_outcomes, v_unbalanced, v_screened_ids));
    v_non_candidates := hera_migration_preview_non_candidates_v2(v_groups);
    v_estimate := hera_migration_preview_estimate_v2(p_organization_id, (v_totals ->> 'candidates')::bigint,
                                                     (v_prediction ->> 'migrated')::bigint, v_gl_read_ms,
                                                     v_calibration);

    RETURN jsonb_build_object(
        'organization_id', p_organization_id,
        'from_date', p_from_date,
        'to_date', p_to_date,
        'candidate_statuses', to_jsonb(v_statuses),
        'closed_period_policy', v_policy,
        'total_candidates', v_totals -> 'candidates',
        'smart_code_breakdown', hera_migration_preview_breakdown_v2(v_mapped),
        'not_migratable', hera_migration_preview_not_migratable_v2(v_mapped),
        'non_candidates', v_non_candidates,
        'fiscal_period_status', hera_migration_preview_period_status_v2(p_organization_id, v_mapped),
        'unbalanced_transactions', jsonb_build_object('count', v_unbalanced -> 'count',
                                                      'transaction_ids', v_unbalanced -> 'transaction_ids'),
        'prediction', v_prediction,
        'estimated_processing_time_ms', (v_estimate ->> 'ms')::bigint,
        'estimate_basis', v_estimate ->> 'basis',
        'risk_assessment', hera_migration_preview_risk_v2(v_totals, v_prediction, v_unbalanced, v_non_candidates),
        'plan_fingerprint', hera_migration_preview_fingerprint_v2(p_organization_id, p_from_date, p_to_date,
                                                                  v_statuses, v_policy, v_mapped),
        'candidate_ids', hera_migration_preview_sample_ids_v2(p_organization_id, p_from_date, p_to_date, v_statuses,
                                                              v_codes, p_batch_limit),
        'generated_at', now()
    );
END;
$fn$;
