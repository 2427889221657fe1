-- Setting aside what the database refuses, one transaction at a time, while
-- the rest of a batch goes through set-based.
--
-- A batch writes its transactions with a few set-based statements. When the
-- database refuses one of them (a CHECK such as HERA's chk_txn_total_sign, a
-- trigger raising, a foreign key), the statement fails as a whole and does not
-- say which row it was. hera_migration_isolate_v2 runs the batch's unit of
-- work in a subtransaction; on a refusal it splits the set in halves and
-- retries each, down to the single transaction that is refused, which it sets
-- aside with the database's own message, SQLSTATE and constraint (or the
-- trigger function that raised). The common case, nothing refused, costs one
-- attempt; k refusals cost about 2k log2(n) smaller attempts.
--
-- The unit, p_unit, is a function (uuid[], jsonb) -> integer that does all its
-- writes for the given ids and raises when it must not stand:
--   * SQLSTATE HM001 with DETAIL a JSON array of {transaction_id, rule,
--     reason}: the unit itself found these ids wrong (its verification); they
--     are set aside as named and the rest retried at once;
--   * any refusal of the database (classes 22 data exception, 23 integrity
--     constraint, 27 triggered data change, 2F/38/39 routine exceptions, 44
--     check option, P0 a trigger's RAISE, HM002 "refused, culprit unknown"):
--     bisected as above.
-- Anything else is not a transaction's fault (a lock wait, a deadlock, a
-- cancel, the server going away, our own bug) and is raised as it is, so the
-- whole batch rolls back and the engine decides (it backs off on lock waits).
--
-- Returns {done: uuid[] (written, in order), refused: [{transaction_id, rule,
-- reason, sqlstate, constraint, table}]}.
CREATE OR REPLACE FUNCTION hera_migration_isolate_v2(p_unit text, p_ids uuid[], p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_stack    integer[] := CASE WHEN cardinality(p_ids) > 0 THEN ARRAY[1, cardinality(p_ids)] ELSE '{}' END;
    v_lo       integer;
    v_hi       integer;
    v_mid      integer;
    v_slice    uuid[];
    v_done     uuid[] := '{}';
    v_excluded uuid[] := '{}';
    v_refused  jsonb := '[]';
    v_named    jsonb;
    v_state    text;
    v_message  text;
    v_detail   text;
    v_constraint text;
    v_table    text;
    v_context  text;
    v_rule     text;
BEGIN
    WHILE cardinality(v_stack) > 0 LOOP
        v_lo := v_stack[cardinality(v_stack) - 1];
        v_hi := v_stack[cardinality(v_stack)];
        v_stack := v_stack[1:cardinality(v_stack) - 2];
        v_slice := ARRAY(SELECT x FROM unnest(p_ids[v_lo:v_hi]) x WHERE x <> ALL (v_excluded));
        CONTINUE WHEN cardinality(v_slice) = 0;
        BEGIN
            EXECUTE format('SELECT %s($1, $2)', p_unit::regproc) USING v_slice, p_args;
            v_done := v_done || v_slice;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_constraint = CONSTRAINT_NAME,
                                    v_table = TABLE_NAME, v_context = PG_EXCEPTION_CONTEXT;
            IF v_state = 'HM001' THEN
                SELECT coalesce(jsonb_agg(e), '[]') INTO v_named
                  FROM jsonb_array_elements(v_detail::jsonb) e
                 WHERE (e ->> 'transaction_id')::uuid = ANY (v_slice);
                IF jsonb_array_length(v_named) = 0 THEN
                    RAISE; -- named nothing it was given: no progress is possible
                END IF;
                v_refused := v_refused || v_named;
                v_excluded := v_excluded || ARRAY(SELECT (e ->> 'transaction_id')::uuid
                                                    FROM jsonb_array_elements(v_named) e);
                v_stack := v_stack || ARRAY[v_lo, v_hi]; -- the same slice, without them
            ELSIF left(v_state, 2) NOT IN ('22', '23', '27', '2F', '38', '39', '44', 'P0')
                  AND v_state <> 'HM002' THEN
                RAISE;
            ELSIF cardinality(v_slice) = 1 THEN
                -- A trigger that raised is named by its function (the
                -- innermost PL/pgSQL function in the context that is not ours).
                v_rule := coalesce(nullif(v_constraint, ''),
                                   (SELECT m[1] FROM regexp_matches(coalesce(v_context, ''),
                                                                    'PL/pgSQL function ([^ (]+)\(', 'g') AS m
                                     WHERE m[1] NOT LIKE 'hera_migration_%' LIMIT 1),
                                   'database_refused');
                v_refused := v_refused || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                    'transaction_id', v_slice[1],
                    'rule', v_rule,
                    'reason', format('the database refused it: %s', v_message)
                              || CASE WHEN nullif(v_detail, '') IS NOT NULL THEN ' (' || v_detail || ')' ELSE '' END,
                    'sqlstate', v_state,
                    'constraint', nullif(v_constraint, ''),
                    'table', nullif(v_table, ''))));
                v_excluded := v_excluded || v_slice[1];
            ELSE
                v_mid := (v_lo + v_hi) / 2;
                v_stack := v_stack || ARRAY[v_mid + 1, v_hi, v_lo, v_mid]; -- the first half first
            END IF;
        END;
    END LOOP;
    RETURN jsonb_build_object('done', to_jsonb(v_done), 'refused', v_refused);
END;
$fn$;
