-- What a run records as it begins, for ValidateMigration to compare against:
-- the trial balance, and every table that exists (none may appear later).
UPDATE universal_transactions
   SET metadata = metadata || jsonb_build_object('snapshot', hera_migration_run_snapshot_v2($2))
 WHERE id = $1
