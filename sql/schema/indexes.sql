-- Indexes hera-migrate relies on, created only in a schema it owns.
-- In attach mode they are reported as advice instead (CheckEnvironment).
CREATE INDEX IF NOT EXISTS ut_org_date_idx
    ON universal_transactions (organization_id, transaction_date, id);
CREATE INDEX IF NOT EXISTS ut_org_type_idx
    ON universal_transactions (organization_id, transaction_type);
CREATE INDEX IF NOT EXISTS utl_org_idx
    ON universal_transaction_lines (organization_id);
CREATE INDEX IF NOT EXISTS ce_org_type_idx
    ON core_entities (organization_id, entity_type);
CREATE INDEX IF NOT EXISTS cr_org_from_type_idx
    ON core_relationships (organization_id, from_entity_id, relationship_type);
