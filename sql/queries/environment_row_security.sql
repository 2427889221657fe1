-- Row-level security on the six tables ($1) of the current schema: per
-- table whether it is enabled and forced, its owner, and its policies' names.
SELECT c.relname::text AS table_name,
       c.relrowsecurity AS enabled,
       c.relforcerowsecurity AS forced,
       pg_get_userbyid(c.relowner)::text AS owner,
       ARRAY(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace
   AND c.relkind IN ('r', 'p')
   AND c.relname = ANY ($1)
 ORDER BY array_position($1, c.relname::text)
