-- hera-migrate faults: a run's event history ($1) as stored, in sequence:
-- each event's sequence, kind and the instant it was emitted, so that the
-- campaign can tell it is complete (1, 2, 3, ... without a gap) and ordered.
SELECT l.line_number::bigint AS sequence,
       l.line_data ->> 'kind' AS kind,
       (l.line_data ->> 'emitted_at')::timestamptz AS emitted_at
  FROM universal_transaction_lines l
 WHERE l.transaction_id = $1 AND l.line_type = 'MIGRATION_EVENT'
 ORDER BY l.line_number
