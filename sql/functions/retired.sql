-- Signatures of earlier versions of our functions. CREATE OR REPLACE with new
-- parameters makes a second function beside the old one (and calls that fit
-- both become ambiguous), so the old ones are dropped first. Only our own
-- functions are named here.
DROP FUNCTION IF EXISTS hera_migration_is_candidate_v2(text, text, jsonb);
DROP FUNCTION IF EXISTS hera_migration_apply_reporting_aliases_batch_v2(uuid, jsonb, uuid, uuid, jsonb, integer);
DROP FUNCTION IF EXISTS hera_migration_preview_candidates_v2(uuid, date, date, integer, jsonb);
DROP FUNCTION IF EXISTS hera_migration_calibrate_v2(uuid, uuid[]);
DROP FUNCTION IF EXISTS hera_migration_remove_reporting_aliases_v2(uuid, uuid, integer, jsonb);
DROP FUNCTION IF EXISTS hera_migration_record_aliases_v2(uuid, uuid, uuid, jsonb, jsonb, integer, uuid, text);
-- No longer called: a run takes its catalog half when created, its ledger
-- half in its first batch.
DROP FUNCTION IF EXISTS hera_migration_run_snapshot_v2(uuid);
-- The trial balance's columns changed (account_key, fiscal_period): its
-- argument list did not, so only the old shape is dropped.
DO $$
BEGIN
    IF to_regprocedure('hera_migration_trial_balance_v2(uuid)') IS NOT NULL THEN
        IF pg_get_function_result(to_regprocedure('hera_migration_trial_balance_v2(uuid)')) NOT LIKE '%account_key%' THEN
            DROP FUNCTION hera_migration_trial_balance_v2(uuid);
        END IF;
    END IF;
END;
$$;
-- Validation learnt to judge a partial run (p_allow_partial): the
-- signatures without it are dropped, so each name has one function.
DROP FUNCTION IF EXISTS hera_migration_validate_v2(uuid);
DROP FUNCTION IF EXISTS hera_migration_check_completeness_v2(uuid, uuid, jsonb);
-- The batch and rollback proofs take the originals' rows as read before the
-- update (universal_transactions[]) rather than their JSON images.
DROP FUNCTION IF EXISTS hera_migration_batch_verify_v2(uuid[], uuid[], uuid[], jsonb);
DROP FUNCTION IF EXISTS hera_migration_rollback_verify_v2(uuid[], uuid[], uuid[], jsonb);
-- The pair check and the copies' balance are one function (one read).
DROP FUNCTION IF EXISTS hera_migration_pairs_off_v2(uuid[], uuid[]);
