-- Every rollout RUNNING or PAUSED, across platform organizations (the login
-- role, so row security does not apply): what a server adopts when the one
-- driving it is gone. One index probe per platform organization.
SELECT r.id, r.organization_id
  FROM core_organizations o
 CROSS JOIN LATERAL (
       SELECT t.id, t.organization_id
         FROM universal_transactions t
        WHERE t.organization_id = o.id
          AND t.transaction_type = 'MIGRATION_ROLLOUT'
          AND t.metadata ->> 'state' IN ('RUNNING', 'PAUSED')) r
 WHERE lower(coalesce(o.organization_type, '')) = 'platform'
