-- Incidents: a run's incident report, recorded as a MIGRATION_INCIDENT audit
-- row of universal_transactions (zero tables; smart code
-- HERA.ACCOUNTING.MIGRATION.INCIDENT.REPORT.v2, zero total, no lines, so no
-- ledger, candidate rule, rollback or validation ever meets it).

-- Records incident p_id of run p_migration_id in p_organization_id, unless
-- the organization already has an incident recorded under p_request_id:
-- then nothing is written and that one is answered (the caller compares what
-- it was asked with what was recorded). One request id at a time per
-- organization (a transaction-scoped advisory lock), so that a retry racing
-- its first attempt finds it instead of writing it twice.
-- p_incident: {title, severity, description, report_markdown, ...}, kept as
-- the row's metadata with migration_id, request_id and operation_type added.
-- Returns {incident_id, recorded_at, already_recorded, incident: <metadata>}.
CREATE OR REPLACE FUNCTION hera_migration_record_incident_v2(
    p_id uuid,
    p_organization_id uuid,
    p_migration_id uuid,
    p_request_id text,
    p_incident jsonb,
    p_actor uuid
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_found record;
    v_meta  jsonb;
    v_at    timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        'hera-migrate:incident:' || p_organization_id::text || ':' || p_request_id, 0));
    SELECT t.id, t.created_at, t.metadata INTO v_found
      FROM universal_transactions t
     WHERE t.organization_id = p_organization_id
       AND t.transaction_type = 'MIGRATION_INCIDENT'
       AND t.metadata ->> 'request_id' = p_request_id
     ORDER BY t.created_at
     LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('incident_id', v_found.id, 'recorded_at', v_found.created_at,
                                  'already_recorded', true, 'incident', v_found.metadata);
    END IF;
    v_meta := p_incident || jsonb_build_object(
        'incident_id', p_id,
        'migration_id', p_migration_id,
        'request_id', p_request_id,
        'recorded_by', p_actor,
        'operation_type', 'INCIDENT',
        -- The audit chain as it stood before this incident: what an auditor
        -- keeps, outside the database, to check the chain against later.
        'audit_anchor', hera_migration_audit_anchor_v2(p_organization_id));
    PERFORM hera_migration_write_audit_row_v2(
        p_id, p_organization_id, 'MIGRATION_INCIDENT', 'MIGINC-' || p_id, 'recorded',
        'HERA.ACCOUNTING.MIGRATION.INCIDENT.REPORT.v2', v_meta, p_actor);
    SELECT created_at INTO v_at FROM universal_transactions WHERE id = p_id;
    RETURN jsonb_build_object('incident_id', p_id, 'recorded_at', v_at,
                              'already_recorded', false, 'incident', v_meta);
END;
$fn$;
