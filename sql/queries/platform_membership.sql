-- The platform organization of user entity $1: the organization its USER
-- entity lives in (HERA keeps users in the platform organization), when that
-- organization is a platform one (organization_type 'platform'). No row: the
-- user is no platform user.
SELECT o.id
  FROM core_entities e
  JOIN core_organizations o ON o.id = e.organization_id
 WHERE e.id = $1
   AND upper(e.entity_type) = 'USER'
   AND lower(coalesce(o.organization_type, '')) = 'platform'
