-- The latest validation recorded for a run ($1 the organization, $2 the
-- run): its MIGRATION_VALIDATION audit row (see validation_record.sql), as
-- (id, recorded at, by whom, the report).
SELECT t.id, t.created_at, t.created_by, t.metadata
  FROM universal_transactions t
 WHERE t.organization_id = $1
   AND t.transaction_type = 'MIGRATION_VALIDATION'
   AND t.metadata ->> 'migration_id' = $2::text
 ORDER BY t.created_at DESC, t.id
 LIMIT 1
