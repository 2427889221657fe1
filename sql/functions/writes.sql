-- How hera-migrate changes a row of HERA's: in one place, because HERA's
-- triggers make it delicate.
--
-- HERA production has two smart-code triggers on universal_transactions: one
-- upper-cases smart_code on every insert and update; a later one (BEFORE
-- INSERT OR UPDATE OF smart_code) puts the version marker back in lower case,
-- but only when the UPDATE's SET list names smart_code. So a code with a
-- lower-case marker ('.v1') survives an update only if the update names
-- smart_code, and an all-upper code ('.V1', what HERA's own updates leave)
-- only if it does not. Every change is therefore two UPDATEs, one per form,
-- and both leave every code byte for byte as it was, on HERA and on any
-- database without such triggers. What a trigger changes anyway is caught
-- by the callers' verification (hera_migration_image_changes_v2).
--
-- Every change also names its author (updated_by: HERA's actor audit refuses
-- an update without one), stamps updated_at and bumps version.
--
-- p_rows: {<id>: {status?, code?, metadata?, merge?, upper}}; an absent key
-- keeps the column as it is; metadata replaces the row's metadata, merge is
-- added to it (metadata || merge: the caller then sends only the keys it
-- writes, not a copy of every row's metadata); upper (the caller read it with the row: smart_code =
-- upper(smart_code)) says which UPDATE the row needs, so that a form no row
-- has costs nothing (HERA's headers are mostly all-upper, our own rows
-- never). Returns how many rows changed.
CREATE OR REPLACE FUNCTION hera_migration_update_rows_v2(p_rows jsonb, p_actor uuid)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    -- The ids of each form, as uuid arrays: "t.id = ANY (array)" is a lookup
    -- by key even under row-level security, where a join on a cast from the
    -- jsonb keys (not leakproof) would read the table whole.
    v_named_ids uuid[] := ARRAY(SELECT key::uuid FROM jsonb_each(p_rows) WHERE value -> 'upper' = 'false');
    v_upper_ids uuid[] := ARRAY(SELECT key::uuid FROM jsonb_each(p_rows) WHERE value -> 'upper' = 'true');
    v_named bigint := 0;
    v_upper bigint := 0;
BEGIN
    IF cardinality(v_named_ids) > 0 THEN
        UPDATE universal_transactions t
           SET transaction_status = coalesce(p_rows -> t.id::text ->> 'status', t.transaction_status),
               transaction_code = coalesce(p_rows -> t.id::text ->> 'code', t.transaction_code),
               metadata = coalesce(p_rows -> t.id::text -> 'metadata',
                                   coalesce(t.metadata, '{}') || (p_rows -> t.id::text -> 'merge'),
                                   t.metadata),
               version = coalesce(t.version, 1) + 1,
               updated_by = coalesce(p_actor, t.updated_by),
               updated_at = now(),
               smart_code = t.smart_code
         WHERE t.id = ANY (v_named_ids) AND t.smart_code IS DISTINCT FROM upper(t.smart_code);
        GET DIAGNOSTICS v_named = ROW_COUNT;
    END IF;
    IF cardinality(v_upper_ids) > 0 THEN
        UPDATE universal_transactions t
           SET transaction_status = coalesce(p_rows -> t.id::text ->> 'status', t.transaction_status),
               transaction_code = coalesce(p_rows -> t.id::text ->> 'code', t.transaction_code),
               metadata = coalesce(p_rows -> t.id::text -> 'metadata',
                                   coalesce(t.metadata, '{}') || (p_rows -> t.id::text -> 'merge'),
                                   t.metadata),
               version = coalesce(t.version, 1) + 1,
               updated_by = coalesce(p_actor, t.updated_by),
               updated_at = now()
         WHERE t.id = ANY (v_upper_ids) AND t.smart_code = upper(t.smart_code);
        GET DIAGNOSTICS v_upper = ROW_COUNT;
    END IF;
    RETURN v_named + v_upper;
END;
$fn$;

-- Of a migration's copies (p_copies[i] a reversal or repost of
-- p_originals[i]), the originals whose copies read otherwise than written:
-- copy_unbalanced, a copy whose GL lines do not balance (DR = CR); pair_off,
-- a pair that does not net to zero per account (every key HERA names one
-- by), currency and period fields. A pair that nets to zero leaves every
-- balance of the trial balance as it was, whether it is written or voided.
-- The copies' GL lines are read once, for both.
CREATE OR REPLACE FUNCTION hera_migration_copies_off_v2(p_copies uuid[], p_originals uuid[])
RETURNS TABLE (original uuid, copy_unbalanced boolean, pair_off boolean)
LANGUAGE sql STABLE
AS $$
    WITH gl AS MATERIALIZED (
        SELECT c.copy_id, c.original, l.entity_id, l.line_data ->> 'gl_account_code' AS gl_account_code,
               l.line_data ->> 'account_code' AS account_code, l.line_data ->> 'account' AS account,
               t.transaction_currency_code, t.fiscal_period_entity_id, t.fiscal_year, t.fiscal_period,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
               hera_migration_line_net_v2(l.line_data ->> 'side', l.line_amount) AS net
          FROM unnest(p_copies, p_originals) AS c (copy_id, original)
          JOIN universal_transactions t ON t.id = c.copy_id
          JOIN universal_transaction_lines l ON l.transaction_id = c.copy_id AND l.smart_code LIKE '%.GL.%'
    ),
    unbalanced AS (
        SELECT DISTINCT gl.original FROM gl GROUP BY gl.copy_id, gl.original HAVING abs(sum(gl.net)) >= 0.0001
    ),
    off AS (
        SELECT DISTINCT gl.original FROM gl
         GROUP BY gl.original, gl.entity_id, gl.gl_account_code, gl.account_code, gl.account,
                  gl.transaction_currency_code, gl.fiscal_period_entity_id, gl.fiscal_year, gl.fiscal_period, gl.day
        HAVING sum(gl.net) <> 0
    )
    SELECT o.original,
           o.original IN (SELECT u.original FROM unbalanced u),
           o.original IN (SELECT f.original FROM off f)
      FROM (SELECT u.original FROM unbalanced u UNION SELECT f.original FROM off f) o
$$;

-- Whether anything but our own statements could decide what the two
-- transaction tables hold after our writes: an enabled trigger of the
-- database's own (a foreign key's internal triggers only check) or a rewrite
-- rule on universal_transactions or universal_transaction_lines. Without
-- one, a row reads exactly as our INSERT or UPDATE wrote it, and the proofs
-- that re-read what a batch wrote can rest on how it was written (see
-- hera_migration_write_copies_v2). A catalog lookup, asked at each batch, so
-- a trigger created during a run takes effect from the next batch.
CREATE OR REPLACE FUNCTION hera_migration_writes_may_be_altered_v2()
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid IN (to_regclass('universal_transactions'), to_regclass('universal_transaction_lines'))
                      AND NOT tgisinternal AND tgenabled <> 'D')
        OR EXISTS (SELECT 1 FROM pg_rewrite
                    WHERE ev_class IN (to_regclass('universal_transactions'), to_regclass('universal_transaction_lines')))
$$;
