-- Pace signal WAL_ARCHIVE_BACKLOG: WAL segments waiting to be archived (their
-- .ready files in pg_wal/archive_status), 0 while archive_mode is off.
-- pg_ls_archive_statusdir needs superuser or pg_monitor: without, the
-- statement fails and the signal is unreadable.
SELECT CASE WHEN current_setting('archive_mode') = 'off' THEN 0::bigint
            ELSE (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::bigint
       END AS waiting,
       current_setting('archive_mode') AS archive_mode
