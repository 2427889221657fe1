-- hera-migrate faults: a run's event history ($1) as stored, in sequence:
-- each event's sequence, kind, phase and the instant it was emitted, so that
-- the campaign can tell it is complete (1, 2, 3, ... without a gap) and
-- ordered; and who wrote it (the executor's lease generation and server) and
-- when its transaction began, so that it can tell no two servers' batches
-- ever overlapped.
SELECT l.line_number::bigint AS sequence,
       l.line_data ->> 'kind' AS kind,
       l.line_data ->> 'phase' AS phase,
       (l.line_data ->> 'emitted_at')::timestamptz AS emitted_at,
       (l.line_data ->> 'transaction_began_at')::timestamptz AS began_at,
       (l.line_data #>> '{executor,generation}')::bigint AS generation,
       l.line_data #>> '{executor,server}' AS server
  FROM universal_transaction_lines l
 WHERE l.transaction_id = $1 AND l.line_type = 'MIGRATION_EVENT'
 ORDER BY l.line_number
