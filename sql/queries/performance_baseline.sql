-- The organization's ($1) latest MeasurePerformance baseline: its audit
-- row's id and metadata (hera_migration_record_performance_v2 wrote it).
SELECT t.id, t.metadata
  FROM universal_transactions t
 WHERE t.organization_id = $1
   AND t.transaction_type = 'MIGRATION_PERFORMANCE_BASELINE'
 ORDER BY t.created_at DESC, t.id DESC
 LIMIT 1
