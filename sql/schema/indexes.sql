-- Indexes hera-migrate relies on, created only in a schema it owns.
-- In attach mode they are reported as advice instead (CheckEnvironment).
-- Each only when it is missing: CREATE INDEX IF NOT EXISTS takes its table's
-- SHARE lock before it finds the index in place, so every server start would
-- wait behind (and block) the business's writes, and deadlock with a batch.
DO $$
DECLARE
    wanted text[][] := ARRAY[
        ['ut_org_date_idx', 'universal_transactions (organization_id, transaction_date, id)'],
        ['ut_org_type_idx', 'universal_transactions (organization_id, transaction_type)'],
        ['utl_org_idx', 'universal_transaction_lines (organization_id)'],
        ['ce_org_type_idx', 'core_entities (organization_id, entity_type)'],
        ['cr_org_from_type_idx', 'core_relationships (organization_id, from_entity_id, relationship_type)']];
    i int;
BEGIN
    FOR i IN 1 .. array_length(wanted, 1) LOOP
        IF to_regclass(wanted[i][1]) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON %s', wanted[i][1], wanted[i][2]);
        END IF;
    END LOOP;
END;
$$;
