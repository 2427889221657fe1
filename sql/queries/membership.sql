-- The caller's membership of an organization ($1) as user entity $2, the way
-- HERA resolves it (its _hera_resolve_org_role and hera_auth_introspect_v1):
-- * member: an active MEMBER_OF relationship of the organization from the
--   user entity, within its effective dates, pointing at the organization's
--   own id or at one of its ORGANIZATION (or ORG) entities;
-- * role: the user's active HAS_ROLE relationships first, the primary one
--   (relationship_data.is_primary) winning, then by HERA's rank (ORG_OWNER
--   down to MEMBER); its code is relationship_data.role_code, else the
--   entity_code of the ROLE entity it points at. Without one, the newest
--   MEMBER_OF relationship's relationship_data.role.
WITH member_of AS (
    SELECT r.relationship_data ->> 'role' AS role
      FROM core_relationships r
     WHERE r.organization_id = $1
       AND r.from_entity_id = $2
       AND r.relationship_type = 'MEMBER_OF'
       AND r.is_active
       AND (r.effective_date IS NULL OR r.effective_date <= now())
       AND (r.expiration_date IS NULL OR r.expiration_date > now())
       AND (r.to_entity_id = $1
            OR EXISTS (SELECT 1 FROM core_entities o
                        WHERE o.id = r.to_entity_id
                          AND o.organization_id = $1
                          AND upper(o.entity_type) IN ('ORGANIZATION', 'ORG')))
     ORDER BY r.updated_at DESC NULLS LAST, r.effective_date DESC NULLS LAST
     LIMIT 1
), has_role AS (
    SELECT coalesce(nullif(btrim(r.relationship_data ->> 'role_code'), ''), e.entity_code) AS role
      FROM core_relationships r
      LEFT JOIN core_entities e ON e.id = r.to_entity_id AND upper(e.entity_type) = 'ROLE'
     WHERE r.organization_id = $1
       AND r.from_entity_id = $2
       AND r.relationship_type = 'HAS_ROLE'
       AND r.is_active
       AND (r.effective_date IS NULL OR r.effective_date <= now())
       AND (r.expiration_date IS NULL OR r.expiration_date > now())
       AND coalesce(nullif(btrim(r.relationship_data ->> 'role_code'), ''), e.entity_code) IS NOT NULL
     ORDER BY CASE WHEN r.relationship_data ->> 'is_primary' IN ('true', 't', '1') THEN 0 ELSE 1 END,
              coalesce(array_position(ARRAY['ORG_OWNER', 'ORG_ADMIN', 'ORG_MANAGER', 'ORG_ACCOUNTANT',
                                            'ORG_EMPLOYEE', 'MEMBER'],
                                      upper(coalesce(nullif(btrim(r.relationship_data ->> 'role_code'), ''),
                                                     e.entity_code))), 999),
              1
     LIMIT 1
)
SELECT EXISTS (SELECT 1 FROM member_of)                                        AS is_member,
       coalesce((SELECT role FROM has_role), (SELECT role FROM member_of))     AS role
