-- The candidate rule, in one place: a transaction is migrated when its status
-- is one the run migrates (HERA's 'posted' by default; an operator may add
-- 'completed', the status real HERA sales with GL lines often keep), it is at
-- smart-code version v1, not one of hera-migrate's own rows, not a reversal,
-- and not already a migration's repost. Date range and organization are the
-- caller's (they drive its index).
--
-- A plain SQL expression, so PostgreSQL inlines it into each query that uses
-- it (the preview, each batch's keyset read under FOR UPDATE, validation):
-- the planner sees the conditions themselves, exactly as if written there.
-- Everything but the status: a v1 transaction of the business's own (the
-- preview also counts those of other statuses, as non-candidates).
CREATE OR REPLACE FUNCTION hera_migration_is_v1_business_row_v2(p_smart_code text, p_metadata jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT hera_smart_code_is_v1(p_smart_code)
       AND p_smart_code NOT LIKE 'HERA.ACCOUNTING.MIGRATION.%'
       AND NOT coalesce(p_metadata ? 'reversal_of', false)
       AND NOT coalesce(p_metadata ? 'migration_id', false)
$$;

CREATE OR REPLACE FUNCTION hera_migration_is_candidate_v2(
    p_status text,
    p_smart_code text,
    p_metadata jsonb,
    p_statuses text[]
)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_status = ANY (p_statuses)
       AND hera_migration_is_v1_business_row_v2(p_smart_code, p_metadata)
$$;

-- The statuses a run migrates, from its parameters (candidate_statuses;
-- absent or empty: 'posted').
CREATE OR REPLACE FUNCTION hera_migration_candidate_statuses_v2(p_parameters jsonb)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(nullif(ARRAY(SELECT jsonb_array_elements_text(
                                     CASE WHEN jsonb_typeof(p_parameters -> 'candidate_statuses') = 'array'
                                          THEN p_parameters -> 'candidate_statuses' ELSE '[]' END)),
                           '{}'),
                    ARRAY['posted'])
$$;
