-- hera-migrate bench, figure c: the next originals the guide's client
-- migrates one at a time (the floor's copies, status 'bench_copy', are none).
-- $1 the organization, $2 how many.
SELECT id
  FROM universal_transactions
 WHERE organization_id = $1 AND transaction_status = 'posted' AND hera_smart_code_is_v1(smart_code)
 ORDER BY organization_id, transaction_date, id
 LIMIT $2
