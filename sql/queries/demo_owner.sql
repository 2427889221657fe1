-- The embedded default's demo owner: the earliest active ORG_OWNER membership.
SELECT r.organization_id, r.from_entity_id
  FROM core_relationships r
 WHERE r.relationship_type = 'MEMBER_OF'
   AND r.is_active
   AND upper(r.relationship_data ->> 'role') = 'ORG_OWNER'
 ORDER BY r.created_at, r.id
 LIMIT 1
