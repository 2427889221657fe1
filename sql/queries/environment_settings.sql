-- The server's settings and activity CheckEnvironment judges (any role may
-- read them): its version, connections in use against max_connections, WAL
-- and archiving settings, autovacuum (and the six tables, $1, that turn it
-- off for themselves).
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int
           AS connections_in_use,
       current_setting('wal_level') AS wal_level,
       current_setting('archive_mode') AS archive_mode,
       current_setting('autovacuum') AS autovacuum,
       current_setting('track_counts') AS track_counts,
       ARRAY(SELECT c.relname::text
               FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace
                AND c.relname = ANY ($1)
                AND EXISTS (SELECT 1 FROM unnest(c.reloptions) o
                             WHERE o ~* '^autovacuum_enabled=(false|off|no|0)$')
              ORDER BY 1) AS autovacuum_off_tables
