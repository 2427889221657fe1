-- The caller's membership of an organization ($1) as user entity $2: an active
-- MEMBER_OF relationship from the user entity to the organization's entity,
-- within its effective dates. The role comes from relationship_data.role, or
-- else from an active HAS_ROLE relationship's relationship_data.role_code.
WITH member_of AS (
    SELECT r.relationship_data ->> 'role' AS role
      FROM core_relationships r
      JOIN core_entities o
        ON o.id = r.to_entity_id
       AND o.organization_id = $1
       AND upper(o.entity_type) = 'ORGANIZATION'
     WHERE r.organization_id = $1
       AND r.from_entity_id = $2
       AND r.relationship_type = 'MEMBER_OF'
       AND r.is_active
       AND (r.effective_date IS NULL OR r.effective_date <= now())
       AND (r.expiration_date IS NULL OR r.expiration_date > now())
     ORDER BY r.effective_date DESC NULLS LAST
     LIMIT 1
), has_role AS (
    SELECT r.relationship_data ->> 'role_code' AS role
      FROM core_relationships r
     WHERE r.organization_id = $1
       AND r.from_entity_id = $2
       AND r.relationship_type = 'HAS_ROLE'
       AND r.is_active
       AND (r.effective_date IS NULL OR r.effective_date <= now())
       AND (r.expiration_date IS NULL OR r.expiration_date > now())
     ORDER BY r.effective_date DESC NULLS LAST
     LIMIT 1
)
SELECT EXISTS (SELECT 1 FROM member_of)                                        AS is_member,
       coalesce((SELECT role FROM member_of), (SELECT role FROM has_role))     AS role
