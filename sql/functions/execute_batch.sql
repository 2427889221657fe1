-- Phase 2: one batch of a migration run, as one database transaction's work.
--
-- A run is a universal_transactions row (MIGRATION_RUN) whose metadata holds
-- its parameters, state, keyset cursor and counters. A batch
-- (hera_migration_execute_batch_v2) runs these steps, one function each:
--   1. locks the run row (two workers never run the same run's batches at
--      once) and reads its parameters (hera_migration_batch_lock_run_v2);
--   2. before the run's first write, records its trial balance
--      (hera_migration_batch_snapshot_v2);
--   3. takes the next candidates after the cursor, in (transaction_date, id)
--      order, FOR UPDATE: PostgreSQL re-checks the candidate predicate on each
--      locked row, so a transaction is migrated at most once, ever
--      (hera_migration_batch_candidates_v2);
--   4. sets aside what it must not touch: unmapped codes and closed or locked
--      periods (policy SKIP) are skipped; originals that do not balance, or
--      that one of HERA's rules says could not be reversed, reposted and later
--      restored (hera_migration_screen_v2), are quarantined with the rule
--      (hera_migration_batch_classify_v2);
--   5. writes, set-based, a HERA reversal and a v2 repost of each and marks
--      each original reversed (hera_migration_write_copies_v2), proving what
--      it wrote balances (hera_migration_batch_verify_v2); whatever the
--      database or the proof refuses is quarantined one transaction at a time
--      with the database's own message (hera_migration_isolate_v2) and the
--      rest is written (hera_migration_batch_write_v2);
--   6. builds its answer and the run's counters (hera_migration_batch_result_v2);
--   7. records a MIGRATION_OPERATION audit row and advances the run's cursor,
--      counters and quarantine (hera_migration_batch_advance_v2).
-- It creates no table, temporary or not: the batch lives in arrays.

-- A UUID of version 7 (RFC 9562): 48 bits of Unix time in milliseconds, the
-- version and variant, random bits. The copies a batch writes, headers and
-- lines, get these instead of random (version 4) ids, so that consecutive
-- batches' ids sort together: the indexes on an id (the headers' and the
-- lines' primary keys, the lines' transaction_id) take them on a few leaf
-- pages already in memory, where random ids would land on a random leaf of
-- an index that outgrows shared_buffers as the ledger grows (a read, and
-- after each checkpoint the whole page again in the WAL). Existing rows keep
-- their ids; HERA takes any UUID.
CREATE OR REPLACE FUNCTION hera_migration_uuid_v7()
RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
               set_bit(set_bit(
                   overlay(uuid_send(gen_random_uuid())
                           PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                           FROM 1 FOR 6),
                   52, 1), 53, 1),
               'hex')::uuid
$$;

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
-- The slow path of hera_migration_original_changes_v2, for the few rows it
-- found changed.
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

-- The originals of p_before (their rows as read before an UPDATE that meant
-- to change only the marked columns, hera_migration_marked_columns_v2, and
-- the metadata keys p_keys) that now read otherwise: [{transaction_id, rule,
-- reason}] as HM001 wants them ([] when none), p_doing naming the UPDATE
-- ("marked reversed", "restored"). What a trigger did beyond the UPDATE
-- shows here, whichever column it touched, including ours' beyond the
-- contract.
-- The common case costs a row comparison: each row as read, with the
-- marked columns taken from the row as it now is, must be the row as it now
-- is, byte for byte (*=, which needs no equality operator of any column's
-- type and sees a change of form, 1.0 to 1.00, too), and its metadata
-- without p_keys the same. Only rows that differ pay for images in JSON,
-- which name the columns.
CREATE OR REPLACE FUNCTION hera_migration_original_changes_v2(
    p_before universal_transactions[],
    p_keys text[],
    p_doing text
)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_changed uuid[];
    v_named   jsonb;
BEGIN
    SELECT coalesce(array_agg(b.id), '{}') INTO v_changed
      FROM unnest(p_before) b
      LEFT JOIN universal_transactions t ON t.id = b.id
     WHERE t.id IS NULL
        OR NOT (jsonb_populate_record(b, jsonb_build_object(
                    'transaction_status', t.transaction_status, 'version', t.version,
                    'updated_by', t.updated_by, 'updated_at', t.updated_at, 'metadata', t.metadata)) *= t)
        OR (coalesce(t.metadata, '{}') - p_keys) IS DISTINCT FROM (coalesce(b.metadata, '{}') - p_keys);
    IF cardinality(v_changed) = 0 THEN
        RETURN '[]';
    END IF;
    v_named := hera_migration_image_changes_v2(
        (SELECT jsonb_object_agg(b.id, hera_migration_kept_image_v2(b, hera_migration_marked_columns_v2(), p_keys))
           FROM unnest(p_before) b
          WHERE b.id = ANY (v_changed)),
        hera_migration_marked_columns_v2(), p_keys, p_doing);
    -- Gone, or changed in form only (the same value as JSON sees it).
    RETURN v_named || coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'transaction_id', c, 'rule', 'trigger_changed_columns',
                   'reason', CASE WHEN EXISTS (SELECT 1 FROM universal_transactions t WHERE t.id = c)
                                  THEN format('the database changed how it stores a column when it was %s '
                                              '(the same value in another form), so it could not be '
                                              'restored byte for byte', p_doing)
                                  ELSE format('the database deleted it when it was %s', p_doing) END))
          FROM unnest(v_changed) c
         WHERE NOT v_named @> jsonb_build_array(jsonb_build_object('transaction_id', c))), '[]');
END;
$fn$;

-- Batch step: the balance proof of what a batch wrote. For each original
-- p_originals[i], its reversal p_reversals[i] and repost p_reposts[i] as the
-- database now holds them: every copy's GL lines balance (DR = CR), the pair
-- nets to zero per account, currency and period fields (so the trial balance
-- cannot have moved), and, when they do, no original reads otherwise than
-- intended against p_before (the originals' rows as read before they were
-- marked reversed; NULL skips that test). A trigger, a constraint's side
-- effect or any interference is caught here rather than left in the ledger.
-- Returns the failures, [{transaction_id, rule, reason}] ([] when the proof
-- holds); hera_migration_write_copies_v2 raises them as HM001. It writes
-- nothing, so it can be run from psql over a committed batch, e.g. with the
-- originals' metadata reversal_id and migrated_to as the copies.
-- Lookups by key only: planned like the write unit it belongs to.
CREATE OR REPLACE FUNCTION hera_migration_batch_verify_v2(
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
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_bad jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', x.original, 'rule', 'copies_unbalanced',
               'reason', 'its reversal and repost, as the database wrote them, do not balance or do not net '
                         'to zero per account and period (a trigger changed them)')), '[]')
      INTO v_bad
      FROM hera_migration_copies_off_v2(p_reversals || p_reposts, p_originals || p_originals) x;
    IF jsonb_array_length(v_bad) = 0 AND p_before IS NOT NULL THEN
        v_bad := hera_migration_original_changes_v2(p_before, hera_migration_original_keys_v2(), 'marked reversed');
    END IF;
    RETURN v_bad;
END;
$fn$;

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
-- Verification (hera_migration_batch_verify_v2; it raises HM001 naming the
-- originals, which the caller then quarantines): every copy balances, each
-- original's reversal and repost net to zero per account, currency and period
-- fields (so the trial balance cannot move), and no original reads
-- differently than intended. What the batch writes holds all of this by
-- construction (each copy's lines are its original's, which balance, negated
-- or as they are, and both copies share its currency and period fields);
-- only a trigger or a rule could make the tables hold something else (the
-- copies are new, the originals locked), so the proof reads back what was
-- written whenever the two tables have one (hera_migration_writes_may_be_altered_v2,
-- asked at each batch: HERA's production tables have several), and rests
-- on the construction when they have none.
--
-- p_args: {run_id, operation_id, actor, reason, smart_code_mappings,
--          items: {<original id>: {target, move}},
--          open_period: {id, date, code, year, number} (for move)}.
CREATE OR REPLACE FUNCTION hera_migration_write_copies_v2(p_ids uuid[], p_args jsonb)
RETURNS integer
LANGUAGE plpgsql
-- Not force_custom_plan: that also governs the foreign-key checks of these
-- inserts and updates, which PostgreSQL runs as cached plans, one per
-- row; forced custom, each of the batch's ~9,000 checks is planned again
-- (it doubled the batch). The statements below are lookups by key, planned
-- alike either way.
SET plan_cache_mode = auto
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
    v_targets  text[];
    v_moves    boolean[];
    v_before   universal_transactions[];
    v_lines    universal_transaction_lines[];
    v_codes    text[];
    v_code_targets text[];
    v_written  bigint;
    v_bad      jsonb;
BEGIN
    -- Per original, in p_ids' order: its copies' ids, its target code and
    -- whether it moves to the open period (arrays, read once: looked up in
    -- p_args inside the INSERT, they would be looked up once per use).
    SELECT coalesce(array_agg(hera_migration_uuid_v7() ORDER BY o.n), '{}'),
           coalesce(array_agg(hera_migration_uuid_v7() ORDER BY o.n), '{}'),
           coalesce(array_agg(i.item ->> 'target' ORDER BY o.n), '{}'),
           coalesce(array_agg(coalesce((i.item ->> 'move')::boolean, false) ORDER BY o.n), '{}')
      INTO v_revs, v_reps, v_targets, v_moves
      FROM unnest(p_ids) WITH ORDINALITY AS o (id, n)
     CROSS JOIN LATERAL (SELECT p_args -> 'items' -> o.id::text AS item) i;
    -- The originals as they are before anything is written: what the copies
    -- are made of, and what the proof compares them with afterwards.
    v_before := ARRAY(SELECT t FROM universal_transactions t WHERE t.id = ANY (p_ids));
    -- Their lines, read once: what the line copies are made of, how many
    -- there are (a trigger that skips one is caught below), and their codes.
    v_lines := ARRAY(SELECT l FROM universal_transaction_lines l WHERE l.transaction_id = ANY (p_ids));
    -- Each distinct line code's v2 form, computed once: an explicit
    -- mapping's target, else the code at v2 when it is a v1 code.
    SELECT coalesce(array_agg(c.smart_code), '{}'),
           coalesce(array_agg(coalesce(
               (SELECT nullif(btrim(m ->> 'target_smart_code'), '')
                  FROM jsonb_array_elements(coalesce(p_args -> 'smart_code_mappings', '[]')) m
                 WHERE hera_smart_code_normalize(m ->> 'source_smart_code')
                       = hera_smart_code_normalize(c.smart_code)
                 LIMIT 1),
               CASE WHEN hera_smart_code_is_v1(c.smart_code)
                    THEN hera_smart_code_at_version(c.smart_code, 2)
                    ELSE c.smart_code END)), '{}')
      INTO v_codes, v_code_targets
      FROM (SELECT DISTINCT l.smart_code::text AS smart_code FROM unnest(v_lines) l) c;

    -- The headers: each original's reversal and repost, by one INSERT.
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by
        /*@header_copy_columns*//*@*/)
    SELECT copy.id, s.organization_id, s.transaction_type, s.transaction_code || copy.suffix,
           CASE WHEN m.move THEN (v_open ->> 'date')::timestamptz ELSE s.transaction_date END,
           s.source_entity_id, s.target_entity_id, s.total_amount, 'posted', copy.smart_code,
           s.business_context,
           (coalesce(s.metadata, '{}') - ARRAY['rollback_history', 'reporting_smart_code', 'original_smart_code',
                                                'alias_created_at', 'alias_version', 'alias_batch_id',
                                                'alias_migration_id'])
               || copy.context,
           CASE WHEN m.move THEN (v_open ->> 'id')::uuid ELSE s.fiscal_period_entity_id END,
           CASE WHEN m.move THEN (v_open ->> 'year')::int ELSE s.fiscal_year END,
           CASE WHEN m.move THEN (v_open ->> 'number')::int ELSE s.fiscal_period END,
           CASE WHEN m.move THEN v_open ->> 'code' ELSE s.posting_period_code END,
           s.transaction_currency_code, v_actor, v_actor
           /*@header_copy_values*//*@*/
      FROM unnest(p_ids, v_revs, v_reps, v_targets, v_moves) AS m (id, rev_id, rep_id, target, move)
      JOIN unnest(v_before) s ON s.id = m.id
     CROSS JOIN LATERAL (VALUES
           (m.rev_id, '-REV', s.smart_code::text,
            jsonb_build_object(
                'reversal_of', s.id, 'reversal_reason', v_reason, 'reversal_at', now(),
                'migration_run_id', v_run, 'migration_batch_id', v_op)),
           (m.rep_id, '-V2', m.target,
            jsonb_build_object(
                'finance_dna_version', 'v2', 'original_transaction_id', s.id,
                'migration_id', v_run, 'migration_batch_id', v_op,
                'migration_timestamp', now()))
           ) AS copy (id, suffix, smart_code, context);

    -- The lines: the reversal's negated, the repost's under their v2 codes.
    INSERT INTO universal_transaction_lines (
        id, organization_id, transaction_id, line_number, entity_id, line_type, description,
        quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
        created_by, updated_by
        /*@line_copy_columns*//*@*/)
    SELECT hera_migration_uuid_v7(), l.organization_id, copy.id, l.line_number, l.entity_id, l.line_type, copy.description,
           copy.sign * l.quantity, copy.sign * l.unit_amount, copy.sign * l.line_amount,
           copy.sign * l.discount_amount, copy.sign * l.tax_amount,
           copy.smart_code, l.line_data, v_actor, v_actor
           /*@line_copy_values*//*@*/
      FROM unnest(p_ids, v_revs, v_reps) AS m (id, rev_id, rep_id)
      JOIN unnest(v_lines) l ON l.transaction_id = m.id
      JOIN unnest(v_codes, v_code_targets) AS lc (smart_code, target) ON lc.smart_code = l.smart_code
     CROSS JOIN LATERAL (VALUES
           (m.rev_id, -1, 'REVERSAL: ' || coalesce(l.description, ''), l.smart_code::text),
           (m.rep_id, 1, l.description, lc.target)
           ) AS copy (id, sign, description, smart_code);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written <> 2 * cardinality(v_lines) THEN
        -- A trigger skipped rows (a BEFORE trigger returning NULL): which
        -- original's, isolation finds out.
        RAISE EXCEPTION 'the database kept % of the % copied lines', v_written, 2 * cardinality(v_lines)
              USING ERRCODE = 'HM002';
    END IF;

    -- The originals, marked reversed (hera_migration_update_rows_v2 keeps
    -- their smart codes byte-identical under HERA's triggers).
    PERFORM hera_migration_update_rows_v2(
        (SELECT jsonb_object_agg(t.id, jsonb_build_object(
                    'upper', t.smart_code = upper(t.smart_code),
                    'status', 'reversed',
                    'merge', jsonb_build_object(
                        'reversal_id', m.rev_id, 'reversed_at', now(), 'reversal_reason', v_reason,
                        'migrated_to', m.rep_id, 'migration_run_id', v_run,
                        'status_before_migration', t.transaction_status)))
           FROM unnest(p_ids, v_revs, v_reps) AS m (id, rev_id, rep_id)
           JOIN unnest(v_before) t ON t.id = m.id),
        v_actor);

    -- Verify what it wrote (hera_migration_batch_verify_v2) wherever a
    -- trigger or rule could have changed it; whatever fails is named to the
    -- caller, which sets those originals aside.
    IF hera_migration_writes_may_be_altered_v2() THEN
        v_bad := hera_migration_batch_verify_v2(p_ids, v_revs, v_reps, v_before);
    ELSE
        v_bad := '[]';
    END IF;
    IF jsonb_array_length(v_bad) > 0 THEN
        RAISE EXCEPTION 'hera_migration_unverified: % original(s) of batch % failed verification',
              jsonb_array_length(v_bad), v_op
              USING ERRCODE = 'HM001', DETAIL = v_bad::text;
    END IF;
    RETURN cardinality(p_ids);
END;
$fn$;

-- The steps of a batch, in the order hera_migration_execute_batch_v2 runs
-- them. Each runs once per batch, set-based, inside the caller's transaction
-- (none commits), and each can be called alone from psql to see what it
-- would do; those that read the tables carry the batch's planner settings
-- (see hera_migration_execute_batch_v2), so that alone they are planned as
-- in a batch.

-- Batch step 1: the run, locked, and what its next batch is to do.
-- The run row is locked FOR UPDATE: two workers never run the same run's
-- batches at once, and its controls (PauseMigration, CancelMigration,
-- UpdateMigration) wait on this lock, so they take effect between batches.
-- A run that is not RUNNING in phase EXECUTION (paused, finished, or being
-- rolled back, whose executor then stops) does nothing: halted is then the
-- batch's whole answer,
--   {halted: <state, or PHASE_<phase>>, done: false, transactions: 0,
--    duration_ms: 0, counters},
-- and the parameters are left NULL. Otherwise halted is NULL, and the row
-- holds the run (organization_id, metadata as locked, parameters) and the
-- parameters as a batch reads them: the candidate statuses, the batch size
-- (p_batch_size, the engine's lock backoff, overrides the run's), the date
-- range as UTC instants [range_start, range_end), the keyset cursor
-- (after_date, after_id: where the previous batch stopped) and the user who
-- started the run (every write names them). Raises no_data_found for an
-- unknown run. From psql (the lock lasts until the transaction ends):
--   SELECT * FROM hera_migration_batch_lock_run_v2('<run id>');
CREATE OR REPLACE FUNCTION hera_migration_batch_lock_run_v2(
    p_run_id uuid,
    p_batch_size integer DEFAULT NULL,
    OUT halted jsonb,
    OUT organization_id uuid,
    OUT metadata jsonb,
    OUT parameters jsonb,
    OUT statuses text[],
    OUT batch_size integer,
    OUT range_start timestamptz,
    OUT range_end timestamptz,
    OUT after_date timestamptz,
    OUT after_id uuid,
    OUT started_by uuid
)
LANGUAGE plpgsql
AS $fn$
BEGIN
    SELECT r.organization_id, r.metadata INTO organization_id, metadata
      FROM hera_migration_lock_run_v2(p_run_id) r;
    IF coalesce(metadata ->> 'state', 'RUNNING') <> 'RUNNING'
       OR coalesce(metadata ->> 'phase', 'EXECUTION') <> 'EXECUTION' THEN
        halted := jsonb_build_object('halted', CASE WHEN coalesce(metadata ->> 'phase', 'EXECUTION') = 'EXECUTION'
                                                    THEN metadata ->> 'state'
                                                    ELSE 'PHASE_' || (metadata ->> 'phase') END,
                                     'done', false,
                                     'transactions', 0, 'duration_ms', 0,
                                     'counters', coalesce(metadata -> 'counters', '{}'));
        RETURN;
    END IF;
    parameters  := metadata -> 'parameters';
    statuses    := hera_migration_candidate_statuses_v2(parameters);
    batch_size  := coalesce(p_batch_size, (parameters ->> 'batch_size')::int, 1000);
    range_start := (parameters ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC';
    range_end   := ((parameters ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC';
    after_date  := coalesce((metadata #>> '{cursor,transaction_date}')::timestamptz, '-infinity');
    after_id    := coalesce((metadata #>> '{cursor,id}')::uuid, '00000000-0000-0000-0000-000000000000');
    started_by  := (metadata ->> 'started_by')::uuid;
END;
$fn$;

-- Batch step 2: before a run's first write, the trial balance. The run
-- recorded the catalog when it was created; ValidateMigration compares the
-- ledger against this snapshot, so it must be taken before anything moves,
-- and once: a run whose snapshot already holds a trial balance, or a dry run
-- (which writes nothing), is left as it is. So is a run the engine executes:
-- it reads the trial balance beside the batches, from a database snapshot
-- it took before the first of them (trial_balance_pending until it is
-- recorded, hera_migration_record_trial_balance_v2), so that no batch waits
-- for it. p_metadata is the run's metadata as its lock read it
-- (hera_migration_batch_lock_run_v2). Returns whether it took the snapshot.
-- A read of the whole ledger (seconds for a million transactions), paid by
-- the first batch of a run driven from psql.
CREATE OR REPLACE FUNCTION hera_migration_batch_snapshot_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_metadata jsonb
)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF coalesce(p_metadata -> 'snapshot' ?| ARRAY['trial_balance', 'trial_balance_pending'], false)
       OR coalesce((p_metadata #>> '{parameters,dry_run}')::boolean, false) THEN
        RETURN false;
    END IF;
    PERFORM hera_migration_update_run_v2(p_run_id, jsonb_build_object('snapshot',
                coalesce(p_metadata -> 'snapshot', '{}') || hera_migration_ledger_snapshot_v2(p_organization_id)));
    RETURN true;
END;
$fn$;

-- Batch step 3: the next candidates after the cursor, locked. At most
-- p_limit candidates (hera_migration_is_candidate_v2 over p_statuses) of
-- the organization dated in [p_range_start, p_range_end), after (p_after_date,
-- p_after_id), in (transaction_date, id) order, FOR UPDATE: PostgreSQL
-- re-checks the candidate rule on each row it locks, so a transaction a
-- concurrent batch (or HERA) changed meanwhile is passed over, and a
-- transaction is migrated at most once, ever. Returns their ids in order and
-- the last one's (date, id), the next cursor (NULL when none is left).
-- The keyset read walks the (organization_id, transaction_date, id) index in
-- order and stops at the limit, so a batch costs the same at the start of a
-- run and at its end: hence the planner settings (as the batch's).
CREATE OR REPLACE FUNCTION hera_migration_batch_candidates_v2(
    p_organization_id uuid,
    p_statuses text[],
    p_range_start timestamptz,
    p_range_end timestamptz,
    p_after_date timestamptz,
    p_after_id uuid,
    p_limit integer,
    OUT ids uuid[],
    OUT last_date timestamptz,
    OUT last_id uuid
)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $fn$
BEGIN
    SELECT coalesce(array_agg(c.id ORDER BY c.transaction_date, c.id), '{}'),
           (array_agg(c.transaction_date ORDER BY c.transaction_date DESC, c.id DESC))[1],
           (array_agg(c.id ORDER BY c.transaction_date DESC, c.id DESC))[1]
      INTO ids, last_date, last_id
      FROM (SELECT t.id, t.transaction_date
              FROM universal_transactions t
             WHERE t.organization_id = p_organization_id
               AND (t.transaction_date, t.id) > (p_after_date, p_after_id)
               AND t.transaction_date >= p_range_start
               AND t.transaction_date < p_range_end
               AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, p_statuses)
             ORDER BY t.transaction_date, t.id
             LIMIT p_limit
               FOR UPDATE) c;
END;
$fn$;

-- Batch step 4: what becomes of each candidate p_ids, decided before
-- anything is written, by the run's p_parameters (smart_code_mappings,
-- closed_period_policy):
--   skipped:     unmapped (no v2 target for its smart code), or closed (its
--                fiscal period CLOSED or LOCKED, under policy SKIP or with no
--                open period to post to);
--   quarantined: its GL lines do not balance, or one of HERA's rules says it
--                could not be reversed, reposted and later restored
--                (hera_migration_screen_v2): set aside with the rule, untouched;
--   migrated:    the rest, each with its v2 target and whether it moves to
--                the open period (POST_TO_OPEN_PERIOD).
-- The preview predicts the same decisions. Returns migrate (in (date, id)
-- order), items ({<id>: {target, move}}, what the write unit needs), closed,
-- unmapped, set_aside ([{transaction_id, rule, reason}]) and open_period
-- ({id, date, code, year, number} of the earliest open period, or NULL).
-- It writes nothing. Lookups by key only: the batch's planner settings.
CREATE OR REPLACE FUNCTION hera_migration_batch_classify_v2(
    p_organization_id uuid,
    p_ids uuid[],
    p_parameters jsonb,
    OUT migrate uuid[],
    OUT items jsonb,
    OUT closed uuid[],
    OUT unmapped uuid[],
    OUT set_aside jsonb,
    OUT open_period jsonb
)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
    v_policy    text := coalesce(p_parameters ->> 'closed_period_policy', 'SKIP');
    v_sign_rule boolean := hera_migration_enforces_total_sign_v2();
BEGIN
    SELECT to_jsonb(p) INTO open_period
      FROM (SELECT id, start_date::timestamp AT TIME ZONE 'UTC' AS date, period_code AS code,
                   fiscal_year AS year, period_number AS number
              FROM hera_migration_fiscal_periods_v2(p_organization_id)
             WHERE status = 'OPEN' AND start_date IS NOT NULL
             ORDER BY start_date LIMIT 1) p;
    WITH candidates AS (
        SELECT t, t.id, t.transaction_date, t.smart_code, t.fiscal_period_entity_id,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day
          FROM universal_transactions t
         WHERE t.id = ANY (p_ids)
    ),
    periods AS (
        SELECT * FROM hera_migration_fiscal_periods_v2(p_organization_id)
    ),
    mappings AS (
        SELECT hera_smart_code_normalize(m ->> 'source_smart_code') AS source,
               nullif(btrim(m ->> 'target_smart_code'), '') AS target
          FROM jsonb_array_elements(coalesce(p_parameters -> 'smart_code_mappings', '[]')) m
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
               sum(hera_migration_line_net_v2(l.line_data ->> 'side', l.line_amount)) AS net
          FROM universal_transaction_lines l
         WHERE l.transaction_id = ANY (p_ids)
           AND l.smart_code LIKE '%.GL.%'
         GROUP BY l.transaction_id
    ),
    decided AS MATERIALIZED (
        SELECT c.id, c.transaction_date, cm.target, pp.status AS period_status,
               CASE WHEN cm.target IS NULL THEN 'unmapped'
                    WHEN abs(coalesce(b.net, 0)) >= 0.0001 THEN 'unbalanced'
                    WHEN pp.status IN ('CLOSED', 'LOCKED')
                         AND (v_policy <> 'POST_TO_OPEN_PERIOD' OR open_period IS NULL) THEN 'closed'
                    WHEN sc.screen IS NOT NULL THEN 'screened'
                    ELSE 'migrate'
               END AS decision,
               sc.screen,
               b.net
          FROM candidates c
          JOIN code_map cm USING (smart_code)
          -- Once per candidate (OFFSET 0 keeps the planner from flattening
          -- it into a call per use).
          CROSS JOIN LATERAL (SELECT CASE WHEN hera_migration_may_screen_v2(c.t, cm.target, v_sign_rule)
                                          THEN hera_migration_screen_v2(c.t, cm.target, v_sign_rule) END AS screen
                              OFFSET 0) sc
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
      INTO migrate, items, closed, unmapped, set_aside
      FROM decided;
END;
$fn$;

-- Batch step 5: the writes. Runs the write unit, hera_migration_write_copies_v2
-- (for each of p_ids: its reversal and v2 repost, the original marked
-- reversed, the balance proof), through hera_migration_isolate_v2: whatever
-- the database or the proof refuses is set aside one transaction at a time
-- with the database's own message, and the rest is written, so one bad
-- transaction never fails a batch. p_items and p_open_period are
-- hera_migration_batch_classify_v2's; the copies name p_operation_id (the
-- batch's audit row) and p_actor. Returns migrated (the ids written, in
-- order) and refused ([{transaction_id, rule, reason, sqlstate, ...}]).
-- It writes: from psql, only inside a transaction that is rolled back.
CREATE OR REPLACE FUNCTION hera_migration_batch_write_v2(
    p_run_id uuid,
    p_operation_id uuid,
    p_actor uuid,
    p_parameters jsonb,
    p_ids uuid[],
    p_items jsonb,
    p_open_period jsonb,
    OUT migrated uuid[],
    OUT refused jsonb
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_written jsonb;
BEGIN
    v_written := hera_migration_isolate_v2('hera_migration_write_copies_v2', p_ids, jsonb_build_object(
        'run_id', p_run_id, 'operation_id', p_operation_id,
        'actor', p_actor, 'reason', 'Finance DNA v2 Migration',
        'smart_code_mappings', coalesce(p_parameters -> 'smart_code_mappings', '[]'),
        'items', p_items, 'open_period', p_open_period));
    migrated := ARRAY(SELECT jsonb_array_elements_text(v_written -> 'done')::uuid);
    refused := v_written -> 'refused';
END;
$fn$;

-- Batch step 6: the batch's answer (see hera_migration_execute_batch_v2),
-- and the run's counters after it: p_counters (the run's, before the batch)
-- plus what this batch did. The batch is counters.batches + 1; p_locked are
-- the candidates it took (in order, p_last_id the last), p_migrated those
-- written, p_closed and p_unmapped those skipped; what it quarantined is
-- p_set_aside (before writing) then p_refused (while writing), and
-- failed_verification_ids are p_refused's. duration_ms runs from p_started.
-- Writes nothing and reads no table: the answer's one definition.
CREATE OR REPLACE FUNCTION hera_migration_batch_result_v2(
    p_operation_id uuid,
    p_counters jsonb,
    p_locked uuid[],
    p_last_id uuid,
    p_migrated uuid[],
    p_closed uuid[],
    p_unmapped uuid[],
    p_set_aside jsonb,
    p_refused jsonb,
    p_started timestamptz
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_counters    jsonb := coalesce(p_counters, '{}');
    v_batch_no    bigint := coalesce((v_counters ->> 'batches')::bigint, 0) + 1;
    v_quarantined jsonb := p_set_aside || p_refused;
BEGIN
    v_counters := v_counters || jsonb_build_object(
        'batches', v_batch_no,
        'processed', coalesce((v_counters ->> 'processed')::bigint, 0) + cardinality(p_locked),
        'migrated', coalesce((v_counters ->> 'migrated')::bigint, 0) + cardinality(p_migrated),
        'skipped_closed', coalesce((v_counters ->> 'skipped_closed')::bigint, 0) + cardinality(p_closed),
        'skipped_unmapped', coalesce((v_counters ->> 'skipped_unmapped')::bigint, 0) + cardinality(p_unmapped),
        'quarantined', coalesce((v_counters ->> 'quarantined')::bigint, 0) + jsonb_array_length(v_quarantined));
    RETURN jsonb_build_object(
        'operation_id', p_operation_id,
        'batch_number', v_batch_no,
        'phase', 'EXECUTION',
        'transactions', cardinality(p_locked),
        'migrated', cardinality(p_migrated),
        'skipped_closed', cardinality(p_closed),
        'skipped_unmapped', cardinality(p_unmapped),
        'quarantined_ids', coalesce((SELECT jsonb_agg(e -> 'transaction_id')
                                       FROM jsonb_array_elements(v_quarantined) e), '[]'),
        'quarantined', v_quarantined,
        'failed_verification_ids', coalesce((SELECT jsonb_agg(e -> 'transaction_id')
                                               FROM jsonb_array_elements(p_refused) e), '[]'),
        'first_transaction_id', p_locked[1],
        'last_transaction_id', p_last_id,
        'balanced', true,
        'done', cardinality(p_locked) = 0,
        'duration_ms', round(extract(epoch FROM clock_timestamp() - p_started) * 1000, 3),
        'counters', v_counters);
END;
$fn$;

-- Batch step 7: the batch recorded and the run advanced, last, so that both
-- commit with the writes or not at all. The MIGRATION_OPERATION audit row
-- holds p_result (hera_migration_batch_result_v2's) and migrated_ids
-- (p_migrated: what a rollback of this batch restores); the run takes the
-- result's counters, the cursor (p_last_date, p_last_id; unchanged when the
-- batch took nothing) and its quarantined entries, appended to the lists in
-- p_metadata (the run's metadata as locked). Both name the run's starter.
CREATE OR REPLACE FUNCTION hera_migration_batch_advance_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_metadata jsonb,
    p_result jsonb,
    p_migrated uuid[],
    p_last_date timestamptz,
    p_last_id uuid
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_actor uuid := (p_metadata ->> 'started_by')::uuid;
BEGIN
    PERFORM hera_migration_record_operation_v2((p_result ->> 'operation_id')::uuid, p_organization_id,
        p_result || jsonb_build_object('migration_id', p_run_id, 'operation_type', 'REVERSE_REPOST',
                                       'migrated_ids', to_jsonb(p_migrated)),
        v_actor);

    PERFORM hera_migration_update_run_v2(p_run_id,
        jsonb_build_object('counters', p_result -> 'counters')
        || CASE WHEN p_last_id IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('cursor', jsonb_build_object(
                         'transaction_date', p_last_date, 'id', p_last_id)) END
        || CASE WHEN jsonb_array_length(p_result -> 'quarantined') = 0 THEN '{}'::jsonb
                ELSE jsonb_build_object(
                         'quarantined_ids', coalesce(p_metadata -> 'quarantined_ids', '[]')
                                            || (p_result -> 'quarantined_ids'),
                         'quarantined', coalesce(p_metadata -> 'quarantined', '[]')
                                        || (p_result -> 'quarantined')) END);
END;
$fn$;

-- One batch of run p_run_id, in the caller's transaction: the steps above,
-- in order, as one unit that commits whole or not at all. Returns
--   {operation_id, batch_number, phase: 'EXECUTION', transactions, migrated,
--    skipped_closed, skipped_unmapped, quarantined_ids, quarantined: [{transaction_id,
--    rule, reason, ...}], failed_verification_ids, first_transaction_id,
--    last_transaction_id, balanced, done, duration_ms, locking_ms, counters}
-- (locking_ms: of duration_ms, the time taking the run's lock and the
-- candidates' row locks, where a batch waits on other transactions; the
-- engine's batch sizing leaves it out of the batch's work) or, for a run that is not RUNNING in phase EXECUTION, {halted: <state>, ...}.
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
-- The steps inherit these settings (those that read the tables repeat them,
-- for a call from psql).
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
    v_started   timestamptz := clock_timestamp();
    v_operation uuid := gen_random_uuid();
    v_run       record;  -- hera_migration_batch_lock_run_v2
    v_next      record;  -- hera_migration_batch_candidates_v2
    v_plan      record;  -- hera_migration_batch_classify_v2
    v_written   record;  -- hera_migration_batch_write_v2
    v_result    jsonb;
    v_locking   interval;
    v_mark      timestamptz;
BEGIN
    -- 1. The run, locked; a paused or finished run does nothing.
    v_run := hera_migration_batch_lock_run_v2(p_run_id, p_batch_size);
    IF v_run.halted IS NOT NULL THEN
        RETURN v_run.halted;
    END IF;
    v_locking := clock_timestamp() - v_started;
    -- 2. Before the first write: the trial balance.
    PERFORM hera_migration_batch_snapshot_v2(p_run_id, v_run.organization_id, v_run.metadata);
    -- 3. The next candidates after the cursor, locked.
    v_mark := clock_timestamp();
    v_next := hera_migration_batch_candidates_v2(v_run.organization_id, v_run.statuses, v_run.range_start,
                                                 v_run.range_end, v_run.after_date, v_run.after_id,
                                                 v_run.batch_size);
    v_locking := v_locking + (clock_timestamp() - v_mark);
    -- 4. Migrate, skip (unmapped, closed period) or quarantine each.
    v_plan := hera_migration_batch_classify_v2(v_run.organization_id, v_next.ids, v_run.parameters);
    -- 5. The writes, each transaction's refusal set aside with its reason.
    v_written := hera_migration_batch_write_v2(p_run_id, v_operation, v_run.started_by, v_run.parameters,
                                               v_plan.migrate, v_plan.items, v_plan.open_period);
    -- 6. The answer and the run's counters.
    v_result := hera_migration_batch_result_v2(v_operation, v_run.metadata -> 'counters', v_next.ids,
                                               v_next.last_id, v_written.migrated, v_plan.closed,
                                               v_plan.unmapped, v_plan.set_aside, v_written.refused, v_started)
                || jsonb_build_object('locking_ms', round(extract(epoch FROM v_locking) * 1000, 3));
    -- 7. The audit row, and the run's cursor, counters and quarantine.
    PERFORM hera_migration_batch_advance_v2(p_run_id, v_run.organization_id, v_run.metadata, v_result,
                                            v_written.migrated, v_next.last_date, v_next.last_id);
    RETURN v_result;
END;
$fn$;
