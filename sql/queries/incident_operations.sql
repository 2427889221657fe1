-- What a run committed, as its MIGRATION_OPERATION audit rows record it ($1
-- the organization, $2 the run): REVERSE_REPOST batches and the originals
-- they migrated, ROLLBACK batches and the originals they restored (a batch
-- that took nothing, the one that finds the end, is not counted).
SELECT count(*) FILTER (WHERE t.metadata ->> 'operation_type' = 'REVERSE_REPOST')::bigint,
       coalesce(sum(jsonb_array_length(coalesce(t.metadata -> 'migrated_ids', '[]')))
                    FILTER (WHERE t.metadata ->> 'operation_type' = 'REVERSE_REPOST'), 0)::bigint,
       count(*) FILTER (WHERE t.metadata ->> 'operation_type' = 'ROLLBACK')::bigint,
       coalesce(sum(jsonb_array_length(coalesce(t.metadata -> 'restored_ids', '[]')))
                    FILTER (WHERE t.metadata ->> 'operation_type' = 'ROLLBACK'), 0)::bigint
  FROM universal_transactions t
 WHERE t.organization_id = $1
   AND t.transaction_type = 'MIGRATION_OPERATION'
   AND t.metadata ->> 'migration_id' = $2::text
   AND coalesce((t.metadata ->> 'transactions')::bigint, 1) > 0
