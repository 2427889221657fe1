-- What a session of the service's pool works with: its timeouts (in ms), the
-- role its statements run as (hera_migrate_app in an owned schema) and the
-- login role, whether that role bypasses row-level security, and the
-- longest batch the organization ($1) has on record (MIGRATION_OPERATION
-- rows' duration_ms), to judge statement_timeout against.
SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout') AS statement_timeout_ms,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout') AS lock_timeout_ms,
       current_user::text AS role,
       session_user::text AS login_role,
       coalesce((SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user), false)
           AS bypasses_rls,
       (SELECT max((t.metadata ->> 'duration_ms')::numeric)::float8
          FROM universal_transactions t
         WHERE t.organization_id = $1
           AND t.transaction_type = 'MIGRATION_OPERATION'
           AND t.metadata ? 'duration_ms') AS longest_batch_ms
