-- Pace signal BUSINESS_PROBE, the default probe: what a user of the ledger
-- does all day, a read of the organization's latest 20 postings and their
-- lines. Run in the organization's scope (row-level security applies) on
-- the service's pool, timed from the client. $1: the organization.
SELECT count(*)
  FROM (SELECT t.id
          FROM universal_transactions t
         WHERE t.organization_id = $1
         ORDER BY t.transaction_date DESC
         LIMIT 20) latest
  JOIN universal_transaction_lines l ON l.transaction_id = latest.id
