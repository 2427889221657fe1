-- Replication slots and the WAL each holds back (bytes from its restart_lsn
-- to the current position; on a standby, to the last replayed one).
SELECT s.slot_name::text,
       s.slot_type,
       s.active,
       s.wal_status,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END,
                       s.restart_lsn)::float8 AS retained_bytes
  FROM pg_replication_slots s
 ORDER BY s.slot_name
