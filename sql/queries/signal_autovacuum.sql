-- Pace signal AUTOVACUUM: the VACUUMs (autovacuum's or anyone's) running now
-- on the six tables of this database, from pg_stat_progress_vacuum, with
-- their tables and phases in words. A VACUUM whose table this role may not
-- see (another role's backend, autovacuum's included, without
-- pg_read_all_stats or pg_monitor: relid reads NULL) is counted as hidden,
-- which makes the signal unreadable rather than quietly zero.
-- $1: the six tables' names, resolved on the service's search_path.
SELECT count(*) FILTER (WHERE p.relid = ANY (t.oids))::bigint AS running,
       count(*) FILTER (WHERE p.relid IS NULL)::bigint AS hidden,
       coalesce(string_agg(format('%s (%s)', p.relid::regclass, p.phase), ', ')
                    FILTER (WHERE p.relid = ANY (t.oids)), '') AS detail
  FROM pg_stat_progress_vacuum p
 CROSS JOIN (SELECT array_agg(to_regclass(n)::oid) AS oids FROM unnest($1::text[]) n) t
 WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
