-- The replicas streaming from this server (pg_stat_replication; a role
-- without pg_read_all_stats sees their rows but not their state or lag), and
-- on a standby how far its replay is behind.
SELECT coalesce(pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
                OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false)
           AS may_read_details,
       ARRAY(SELECT coalesce(nullif(r.application_name, ''), 'pid ' || r.pid)
               FROM pg_stat_replication r ORDER BY r.pid) AS names,
       ARRAY(SELECT coalesce(r.state, '') FROM pg_stat_replication r ORDER BY r.pid) AS states,
       ARRAY(SELECT coalesce(extract(epoch FROM r.replay_lag)::float8, -1)
               FROM pg_stat_replication r ORDER BY r.pid) AS replay_lag_s,
       CASE WHEN pg_is_in_recovery()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
           AS standby_replay_age_s
