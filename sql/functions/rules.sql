-- HERA's rules that decide whether a candidate can be reversed, reposted and
-- later restored, written as predicates so that the preview predicts what
-- each batch will set aside (and the batch sets it aside before writing).
-- Anything a database refuses beyond these rules is caught when the batch
-- writes (see hera_migration_write_copies_v2), never predicted.

-- HERA's negative transaction types, as its CHECK chk_txn_total_sign reads a
-- smart code (split on '.', counted from 1: HERA, the industry, ...):
-- segment 4 in CREDIT, REFUND, REVERSAL, RETURN, CREDIT_MEMO; segment 5 in
-- CREDIT, REFUND, REVERSAL, RETURN, ADJUST; or segment 6 naming a loss
-- (SPOILAGE, SHRINKAGE, WRITE_OFF, ...). The CHECK sees the code after HERA's
-- triggers upper-cased it, hence upper() here.
CREATE OR REPLACE FUNCTION hera_migration_is_negative_type_v2(p_code text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT split_part(upper(p_code), '.', 4) IN ('CREDIT', 'REFUND', 'REVERSAL', 'RETURN', 'CREDIT_MEMO')
        OR split_part(upper(p_code), '.', 5) IN ('CREDIT', 'REFUND', 'REVERSAL', 'RETURN', 'ADJUST')
        OR split_part(upper(p_code), '.', 6) IN ('SPOILAGE', 'SHRINKAGE', 'WRITE_OFF', 'WRITEOFF', 'DAMAGE',
                                                 'DAMAGED', 'LOSS', 'LOST', 'BREAKAGE', 'WASTE')
$$;

-- chk_txn_total_sign: a negative type's header total is <= 0, any other's >= 0.
CREATE OR REPLACE FUNCTION hera_migration_total_sign_ok_v2(p_code text, p_total numeric)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN hera_migration_is_negative_type_v2(p_code) THEN p_total <= 0 ELSE p_total >= 0 END
$$;

-- Whether this database enforces HERA's sign rule (HERA production adds
-- chk_txn_total_sign NOT VALID, so rows older than it may break it).
CREATE OR REPLACE FUNCTION hera_migration_enforces_total_sign_v2()
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = to_regclass('universal_transactions')
                      AND conname = 'chk_txn_total_sign' AND contype = 'c')
$$;

-- HERA's financial transactions, as its FX trigger (trg_txn_fx_on_post)
-- reads a smart code, case as stored: industry FIN, segment 3 in AP, AR, GL,
-- BANK, CASH, or segment 4 naming a financial document.
CREATE OR REPLACE FUNCTION hera_migration_is_financial_v2(p_code text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT split_part(p_code, '.', 2) = 'FIN'
        OR split_part(p_code, '.', 3) IN ('AP', 'AR', 'GL', 'BANK', 'CASH')
        OR split_part(p_code, '.', 4) IN ('INVOICE', 'BILL', 'JOURNAL', 'PAYMENT', 'RECEIPT', 'CREDIT', 'DEBIT',
                                          'CREDIT_MEMO', 'DEBIT_MEMO')
$$;

-- HERA's FX posting gate: a financial transaction whose transaction and base
-- currencies differ cannot be set to POSTED by an UPDATE unless its
-- exchange_rate, exchange_rate_date and exchange_rate_type are all present.
-- Inserts pass the gate, so such a transaction can be posted, reversed and
-- reposted, but a rollback could never put it back to posted.
-- The installer writes the test below when the table has HERA's FX columns
-- (hera-migrate's own schema has them too); without them there is no gate.
-- The test (sql/functions/rules_fx_gate.sql) opens with a byte comparison of
-- the two codes: codes equal byte for byte (or missing) cannot differ once
-- trimmed and upper-cased, and that one comparison is all most rows cost
-- (the preview asks it of every candidate).
CREATE OR REPLACE FUNCTION hera_migration_fx_incomplete_v2(t universal_transactions)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT /*@fx_incomplete*/false/*@*/
$$;

-- The metadata keys a migration writes into an original (and a rollback
-- removes): an original that already holds one could not be restored
-- exactly, so it is set aside.
CREATE OR REPLACE FUNCTION hera_migration_original_keys_v2()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY['reversal_id', 'migrated_to', 'migration_run_id', 'reversed_at', 'reversal_reason',
                 'status_before_migration']
$$;

-- Whether an original already holds a key a migration writes.
CREATE OR REPLACE FUNCTION hera_migration_has_original_keys_v2(p_metadata jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(p_metadata ?| hera_migration_original_keys_v2(), false)
$$;

-- Whether HERA's FX posting gate would refuse to set t back to posted after
-- a migration: its FX fields incomplete (the cheap test, first), and posted
-- now.
CREATE OR REPLACE FUNCTION hera_migration_fx_blocked_v2(t universal_transactions)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(hera_migration_fx_incomplete_v2(t), false)
       AND upper(coalesce(t.transaction_status, '')) = 'POSTED'
$$;

-- Why candidate t, to be reposted under p_target, cannot be migrated and
-- later restored: {rule, reason}, or NULL when nothing stands in the way.
-- p_sign_rule: whether the database enforces chk_txn_total_sign. A reversal
-- carries its original's smart code and header total, a repost the target
-- code and the same total, so each must satisfy the sign rule.
-- Not inlined (its ARRAY subquery prevents it): callers compute it once per
-- row, in a LATERAL subquery with OFFSET 0.
CREATE OR REPLACE FUNCTION hera_migration_screen_v2(t universal_transactions, p_target text, p_sign_rule boolean)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN hera_migration_has_original_keys_v2(t.metadata) THEN
            jsonb_build_object('rule', 'metadata_keys', 'reason',
                'its metadata already holds keys a migration writes (' ||
                array_to_string(ARRAY(SELECT k FROM unnest(hera_migration_original_keys_v2()) k
                                       WHERE t.metadata ? k), ', ') ||
                '), which a rollback would remove')
        WHEN p_sign_rule AND NOT hera_migration_total_sign_ok_v2(t.smart_code, t.total_amount) THEN
            jsonb_build_object('rule', 'chk_txn_total_sign', 'reason',
                format('total_amount %s breaks HERA''s sign rule for %s (%s); its reversal would be refused',
                       t.total_amount, t.smart_code,
                       CASE WHEN hera_migration_is_negative_type_v2(t.smart_code) THEN 'a negative type needs <= 0'
                            ELSE 'a positive type needs >= 0' END))
        WHEN p_sign_rule AND NOT hera_migration_total_sign_ok_v2(p_target, t.total_amount) THEN
            jsonb_build_object('rule', 'chk_txn_total_sign', 'reason',
                format('total_amount %s breaks HERA''s sign rule for the target %s (%s); its repost would be refused',
                       t.total_amount, p_target,
                       CASE WHEN hera_migration_is_negative_type_v2(p_target) THEN 'a negative type needs <= 0'
                            ELSE 'a positive type needs >= 0' END))
        WHEN hera_migration_fx_blocked_v2(t) THEN
            jsonb_build_object('rule', 'fx_posting', 'reason',
                'a financial transaction in a foreign currency without exchange_rate, exchange_rate_date and '
                'exchange_rate_type: HERA refuses to set it back to posted (trg_txn_fx_on_post), so a rollback '
                'could not restore it')
    END
$$;

-- Whether hera_migration_screen_v2 could set candidate t aside: its tests
-- alone, which PostgreSQL inlines (the screen itself it cannot), so that
-- the common case, nothing in the way, costs no function call. Callers
-- screen only the rows for which this holds.
CREATE OR REPLACE FUNCTION hera_migration_may_screen_v2(t universal_transactions, p_target text, p_sign_rule boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT hera_migration_has_original_keys_v2(t.metadata)
        OR (p_sign_rule AND NOT (hera_migration_total_sign_ok_v2(t.smart_code, t.total_amount)
                                 AND hera_migration_total_sign_ok_v2(p_target, t.total_amount)))
        OR hera_migration_fx_blocked_v2(t)
$$;
