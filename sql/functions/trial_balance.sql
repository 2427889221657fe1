-- The ledger invariant: per account and currency, DR minus CR over the GL lines
-- of an organization's transactions that are not voided. A migration and its
-- rollback must leave it exactly as it was.
CREATE OR REPLACE FUNCTION hera_migration_trial_balance_v2(p_organization_id uuid)
RETURNS TABLE (account_code text, currency_code text, net_amount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT l.line_data ->> 'account_code'                  AS account_code,
           coalesce(t.transaction_currency_code, '')::text AS currency_code,
           sum(CASE l.line_data ->> 'side'
                   WHEN 'DR' THEN l.line_amount
                   WHEN 'CR' THEN -l.line_amount
                   ELSE 0 END)                             AS net_amount
      FROM universal_transaction_lines l
      JOIN universal_transactions t ON t.id = l.transaction_id
     WHERE t.organization_id = p_organization_id
       AND l.organization_id = p_organization_id
       AND l.smart_code LIKE '%.GL.%'
       AND coalesce(t.transaction_status, '') <> 'voided'
     GROUP BY 1, 2
     ORDER BY 1, 2
$$;
