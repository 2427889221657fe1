-- What PostgreSQL knows of its WAL archiving (pg_stat_archiver), with the
-- segment being written now (NULL on a standby) and the segment size, so the
-- archiver's backlog can be counted in segments.
SELECT a.archived_count,
       a.last_archived_wal,
       a.last_archived_time,
       a.failed_count,
       a.last_failed_wal,
       a.last_failed_time,
       a.stats_reset,
       now() AS now,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END
           AS current_wal,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
       (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout') AS archive_timeout_s
  FROM pg_stat_archiver a
