-- A fleet rollout: a MIGRATION_ROLLOUT row of universal_transactions in the
-- platform organization (smart code HERA.ACCOUNTING.MIGRATION.ROLLOUT.STATE.v2)
-- whose metadata holds what it was asked (request: the stages as asked, the
-- migration's parameters, its concurrency, whether a failed stage is rolled
-- back), its organizations by stage as resolved when it began (stages), and
-- where it stands (state, stage, and per organization its standing, run and
-- verdict). Its events are its lines (MIGRATION_ROLLOUT_EVENT), each an entry
-- of the platform organization's audit chain (audit_chain.sql): who started,
-- paused, resumed or cancelled it, and every organization's step. Zero tables.

-- Creates a rollout of p_metadata ({request, stages, organizations}), RUNNING
-- at stage 0, and its STARTED event; its id.
CREATE OR REPLACE FUNCTION hera_migration_create_rollout_v2(
    p_platform uuid,
    p_actor uuid,
    p_metadata jsonb,
    p_request_id text DEFAULT NULL
)
RETURNS uuid
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        total_amount, transaction_status, smart_code, metadata, created_by, updated_by)
    VALUES (v_id, p_platform, 'MIGRATION_ROLLOUT', 'MIGROLL-' || v_id, now(), 0, 'running',
            'HERA.ACCOUNTING.MIGRATION.ROLLOUT.STATE.v2',
            p_metadata || jsonb_build_object('rollout_id', v_id, 'state', 'RUNNING', 'stage', 0,
                                             'started_by', p_actor, 'started_at', now(),
                                             'request_id', p_request_id),
            p_actor, p_actor);
    PERFORM hera_migration_rollout_step_v2(v_id, NULL, '{}', jsonb_build_object(
        'kind', 'STARTED',
        'message', format('rollout of %s organization(s) in %s stage(s)',
                          (SELECT count(*) FROM jsonb_object_keys(p_metadata -> 'organizations')),
                          jsonb_array_length(p_metadata -> 'stages'))), p_actor);
    RETURN v_id;
END;
$fn$;

-- Every change of a rollout goes through here, under its row's lock (so the
-- organizations of a stage, moving at once, never lose each other's
-- writes): p_patch merged into its metadata, or into organization p_org's
-- entry of metadata.organizations when p_org is given; its status follows
-- metadata.state, finished_at is set when the state becomes terminal; then
-- p_event (unless NULL or not an object) appended as its next line and chained. Returns the
-- event as recorded. no_data_found for an unknown rollout.
CREATE OR REPLACE FUNCTION hera_migration_rollout_step_v2(
    p_rollout_id uuid,
    p_org uuid,
    p_patch jsonb,
    p_event jsonb,
    p_actor uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_row   record;
    v_meta  jsonb;
    v_actor uuid;
    v_seq   integer;
    v_line  uuid := gen_random_uuid();
    v_event jsonb;
BEGIN
    SELECT t.id, t.organization_id, t.metadata INTO v_row
      FROM universal_transactions t
     WHERE t.id = p_rollout_id AND t.transaction_type = 'MIGRATION_ROLLOUT'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rollout_id: no rollout %', p_rollout_id USING ERRCODE = 'no_data_found';
    END IF;
    v_meta := CASE WHEN p_org IS NULL THEN v_row.metadata || p_patch
                   ELSE jsonb_set(v_row.metadata, ARRAY['organizations', p_org::text],
                                  coalesce(v_row.metadata #> ARRAY['organizations', p_org::text], '{}')
                                  || p_patch) END;
    IF v_meta ->> 'state' IN ('SUCCEEDED', 'FAILED', 'CANCELLED') AND NOT v_meta ? 'finished_at' THEN
        v_meta := v_meta || jsonb_build_object('finished_at', now());
    END IF;
    v_actor := coalesce(p_actor, (v_row.metadata ->> 'started_by')::uuid);
    UPDATE universal_transactions
       SET metadata = v_meta,
           transaction_status = lower(coalesce(v_meta ->> 'state', 'RUNNING')),
           updated_by = v_actor,
           updated_at = now(),
           version = coalesce(version, 1) + 1,
           smart_code = smart_code
     WHERE id = p_rollout_id;
    IF p_event IS NULL OR jsonb_typeof(p_event) <> 'object' THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(max(l.line_number), 0) + 1 INTO v_seq
      FROM universal_transaction_lines l
     WHERE l.transaction_id = p_rollout_id AND l.organization_id = v_row.organization_id;
    v_event := p_event || jsonb_build_object(
        'sequence', v_seq, 'at', clock_timestamp(), 'actor', v_actor, 'organization_id', p_org,
        'state', v_meta ->> 'state', 'stage', v_meta -> 'stage');
    v_event := v_event || jsonb_build_object('audit_chain', hera_migration_audit_link_v2(
        v_row.organization_id, 'event', v_line,
        hera_migration_audit_event_content_v2(p_rollout_id, v_seq, 'MIGRATION_ROLLOUT_EVENT',
                                              'HERA.ACCOUNTING.MIGRATION.ROLLOUT.EVENT.v2', v_actor, v_event),
        v_actor));
    INSERT INTO universal_transaction_lines (
        id, organization_id, transaction_id, line_number, line_type, description,
        quantity, unit_amount, line_amount, smart_code, line_data, created_by, updated_by)
    VALUES (v_line, v_row.organization_id, p_rollout_id, v_seq, 'MIGRATION_ROLLOUT_EVENT',
            left(v_event ->> 'kind' || ': ' || (v_event ->> 'message'), 500),
            0, 0, 0, 'HERA.ACCOUNTING.MIGRATION.ROLLOUT.EVENT.v2', v_event, v_actor, v_actor);
    RETURN v_event;
END;
$fn$;

-- The organizations that have a candidate of p_parameters (dates, statuses)
-- today, every organization but the platform ones, by code: what a rollout
-- of "all with candidates" covers. An index probe per organization
-- (universal_transactions by organization and date).
CREATE OR REPLACE FUNCTION hera_migration_rollout_organizations_v2(p_parameters jsonb)
RETURNS TABLE (organization_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT o.id
      FROM core_organizations o
     WHERE lower(coalesce(o.organization_type, '')) <> 'platform'
       AND EXISTS (
           SELECT 1 FROM universal_transactions t
            WHERE t.organization_id = o.id
              AND t.transaction_date >= (p_parameters ->> 'from_date')::date::timestamp AT TIME ZONE 'UTC'
              AND t.transaction_date < ((p_parameters ->> 'to_date')::date + 1)::timestamp AT TIME ZONE 'UTC'
              AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata,
                                                 hera_migration_candidate_statuses_v2(p_parameters)))
     ORDER BY o.organization_code, o.id
$$;
