-- Every run recorded RUNNING, across organizations (the login role, so row
-- security does not apply). One index probe per organization: the
-- (organization_id, transaction_type) index cannot be entered by type alone.
SELECT r.id, r.organization_id
  FROM core_organizations o
 CROSS JOIN LATERAL (
       SELECT t.id, t.organization_id
         FROM universal_transactions t
        WHERE t.organization_id = o.id
          AND t.transaction_type = 'MIGRATION_RUN'
          AND t.metadata ->> 'state' = 'RUNNING') r
