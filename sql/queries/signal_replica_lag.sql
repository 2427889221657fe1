-- Pace signal REPLICA_LAG: the largest replay lag of the streaming replicas,
-- in milliseconds (0 without replicas; a replica whose replay_lag is NULL has
-- nothing left to replay). A replica whose state this role may not see
-- (without pg_read_all_stats or pg_monitor: state reads NULL) is counted as
-- hidden, which makes the signal unreadable.
SELECT coalesce(max(extract(epoch FROM replay_lag) * 1000), 0)::float8 AS lag_ms,
       count(*) FILTER (WHERE state IS NULL)::bigint AS hidden,
       count(*)::bigint AS replicas,
       coalesce(string_agg(format('%s %s', coalesce(application_name, '?'),
                                  coalesce(replay_lag::text, 'caught up')), ', '), '') AS detail
  FROM pg_stat_replication
