-- hera-migrate faults: what must hold of an organization ($1) after a phase
-- run under faults, read from outside the engine (the login role, no row
-- security). One row of counts, each of which the campaign compares with
-- what an uninterrupted run leaves:
--   originals_reversed   originals marked reversed (migrated, not restored)
--   live_reversals       reversals not voided; live_reposts likewise
--   doubled              originals with more than one reversal or repost
--   half_written         copies whose line count differs from their original's
--   unbalanced           business transactions whose GL lines do not balance
--   aliased              headers carrying a reporting alias
--   audit_chain_broken   entries of the organization's audit chain that do
--                        not verify (0 or 1: the first one is named)
WITH business AS (
    SELECT t.*
      FROM universal_transactions t
     WHERE t.organization_id = $1
       AND t.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION')),
copies AS (
    SELECT b.id,
           coalesce(b.metadata ->> 'reversal_of', b.metadata ->> 'original_transaction_id') AS original,
           b.metadata ? 'reversal_of' AS reversal,
           b.transaction_status <> 'voided' AS live
      FROM business b
     WHERE b.metadata ? 'reversal_of' OR b.metadata ? 'original_transaction_id'),
line_counts AS (
    SELECT l.transaction_id, count(*) AS n
      FROM universal_transaction_lines l
     WHERE l.organization_id = $1
     GROUP BY l.transaction_id),
gl AS (
    SELECT b.id,
           coalesce(sum(l.line_amount) FILTER (WHERE upper(l.line_data ->> 'side') = 'DR'), 0) AS dr,
           coalesce(sum(l.line_amount) FILTER (WHERE upper(l.line_data ->> 'side') = 'CR'), 0) AS cr
      FROM business b
      JOIN universal_transaction_lines l ON l.transaction_id = b.id AND l.smart_code LIKE '%.GL.%'
     GROUP BY b.id)
SELECT (SELECT count(*) FROM business WHERE transaction_status = 'reversed') AS originals_reversed,
       (SELECT count(*) FROM copies WHERE reversal AND live) AS live_reversals,
       (SELECT count(*) FROM copies WHERE NOT reversal AND live) AS live_reposts,
       (SELECT count(*) FROM (SELECT original, reversal FROM copies
                               GROUP BY original, reversal HAVING count(*) > 1) d) AS doubled,
       (SELECT count(*) FROM copies c
          LEFT JOIN line_counts mine ON mine.transaction_id = c.id
          LEFT JOIN line_counts theirs ON theirs.transaction_id::text = c.original
         WHERE coalesce(mine.n, 0) <> coalesce(theirs.n, 0)) AS half_written,
       (SELECT count(*) FROM gl WHERE abs(dr - cr) >= 0.0001) AS unbalanced,
       (SELECT count(*) FROM business WHERE metadata ? 'alias_batch_id') AS aliased,
       (SELECT CASE WHEN (hera_migration_verify_audit_chain_v2($1) ->> 'verified')::boolean
                    THEN 0 ELSE 1 END)::bigint AS audit_chain_broken
