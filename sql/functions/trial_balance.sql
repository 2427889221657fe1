-- A GL line's signed amount, HERA's way (hera_line_side): a debit counts as
-- it is, a credit negated, any other side 0. Plain SQL, inlined where used.
CREATE OR REPLACE FUNCTION hera_migration_line_net_v2(p_side text, p_amount numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- upper(p_side) = 'DR', without a case mapping per line (one of the
    -- passes' largest costs over millions of lines)
    SELECT CASE WHEN p_side IN ('DR', 'Dr', 'dR', 'dr') THEN coalesce(p_amount, 0)
                WHEN p_side IN ('CR', 'Cr', 'cR', 'cr') THEN -coalesce(p_amount, 0)
                ELSE 0 END
$$;

-- The ledger invariant, computed HERA's way (like its view
-- v_universal_transaction_lines_drcr): per account, currency and fiscal
-- period, debits minus credits over the GL lines of the organization's
-- transactions that are not voided. A migration and its rollback must leave
-- it exactly as it was.
--   GL line   its smart code contains '.GL.' (HERA's hera_line_side);
--   side      line_data.side, DR or CR in either case (others count 0); the
--             amount as it is (a negative debit stays a negative debit);
--   account   as HERA names it on a line: the line's entity_id (an account
--             entity), line_data.gl_account_code, account_code or account.
--             All four make up account_key, so an amount moved between
--             accounts by any of them shows; account is the one to show (the
--             account entity's code, else the first line_data key present);
--   currency  the transaction's transaction_currency_code;
--   period    the period code of its fiscal_period_entity_id, else of the
--             period containing its date (hera_migration_fiscal_periods_v2),
--             else '' (none).
-- Only non-zero balances are listed (a missing one is zero).
CREATE OR REPLACE FUNCTION hera_migration_trial_balance_v2(p_organization_id uuid)
RETURNS TABLE (
    account       text,
    account_key   text,
    currency_code text,
    fiscal_period text,
    net_amount    numeric
)
LANGUAGE sql STABLE
-- Hash the lines into their groups in memory: sorting millions of them on
-- seven keys (what a small work_mem makes the planner choose) spills to disk
-- and costs several times more. The planner expects a group per line (the
-- keys' statistics are independent to it), and so sorts even with the
-- memory to hash: at a million transactions, three processes sorting took
-- 4.8 s where one hashing takes 3.1 s, so sorting is off.
SET work_mem = '256MB'
SET enable_sort = off
SET jit = off
AS $$
    -- Two steps: the lines summed per account keys, currency, fiscal period
    -- entity and day (cheap keys, a few thousand groups), then those groups
    -- placed in their periods and summed again (placing each of millions of
    -- lines in a period costs four times the whole first step).
    WITH by_day AS (
        SELECT l.entity_id,
               l.line_data ->> 'gl_account_code' AS gl_account_code,
               l.line_data ->> 'account_code' AS account_code,
               l.line_data ->> 'account' AS account_ref,
               coalesce(t.transaction_currency_code, '')::text AS currency_code,
               t.fiscal_period_entity_id,
               (t.transaction_date AT TIME ZONE 'UTC')::date AS day,
               sum(hera_migration_line_net_v2(l.line_data ->> 'side', l.line_amount)) AS net_amount
          FROM universal_transaction_lines l
          JOIN universal_transactions t ON t.id = l.transaction_id
         WHERE t.organization_id = p_organization_id
           AND l.organization_id = p_organization_id
           AND l.smart_code LIKE '%.GL.%'
           AND coalesce(t.transaction_status, '') <> 'voided'
         GROUP BY 1, 2, 3, 4, 5, 6, 7
    ),
    periods AS (
        SELECT * FROM hera_migration_fiscal_periods_v2(p_organization_id)
    ),
    sums AS (
        SELECT d.entity_id, d.gl_account_code, d.account_code, d.account_ref, d.currency_code,
               -- the latest-starting period containing the day: an ordered
               -- aggregate, not ORDER BY ... LIMIT 1, whose sort (off) the
               -- planner would price once per expected group
               coalesce(pe.period_code,
                        (SELECT (array_agg(p.period_code ORDER BY p.start_date DESC, p.id))[1]
                           FROM periods p
                          WHERE d.day BETWEEN p.start_date AND p.end_date),
                        '') AS fiscal_period,
               sum(d.net_amount) AS net_amount
          FROM by_day d
          LEFT JOIN periods pe ON pe.id = d.fiscal_period_entity_id
         GROUP BY 1, 2, 3, 4, 5, 6
        -- Balances that net to zero are left out: a migration's pair of
        -- copies posted into another period (POST_TO_OPEN_PERIOD) nets to
        -- zero there, and the invariant is that every balance stays as it was.
        HAVING sum(d.net_amount) <> 0
    )
    SELECT coalesce(e.entity_code, s.gl_account_code, s.account_code, s.account_ref,
                    s.entity_id::text, '') AS account,
           concat_ws('|', coalesce(s.entity_id::text, ''), coalesce(s.gl_account_code, ''),
                     coalesce(s.account_code, ''), coalesce(s.account_ref, '')) AS account_key,
           s.currency_code, s.fiscal_period, s.net_amount
      FROM sums s
      LEFT JOIN core_entities e ON e.id = s.entity_id
     ORDER BY 2, 3, 4
$$;
