-- What a run records as it begins, for ValidateMigration to compare against:
-- the trial balance, and every table that exists (none may appear later).
UPDATE universal_transactions
   SET metadata = metadata || jsonb_build_object('snapshot', jsonb_build_object(
           'taken_at', now(),
           'trial_balance', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                        'account_code', tb.account_code,
                                        'currency_code', tb.currency_code,
                                        'net_amount', tb.net_amount::text)), '[]')
                               FROM hera_migration_trial_balance_v2($2) tb),
           'tables', (SELECT coalesce(jsonb_agg(n.nspname || '.' || c.relname ORDER BY 1), '[]')
                        FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.relkind IN ('r', 'p')
                         AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                         AND n.nspname NOT LIKE 'pg_toast%'
                         AND n.nspname NOT LIKE 'pg_temp%')))
 WHERE id = $1
