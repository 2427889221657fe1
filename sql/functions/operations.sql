-- Operations: the samples MeasurePerformance times and the audit rows it
-- records. Every sample that writes undoes itself: it writes inside a
-- subtransaction that it then rolls back by raising (SQLSTATE HM000, caught
-- here), so nothing it writes survives even when its caller commits; the
-- service also calls each in a transaction it rolls back.

-- A real batch of the first p_sample candidates of the range (reversals,
-- reposts, verification, audit row, its run row), written and rolled back
-- inside a subtransaction, timed from the batch's start to its end (the run
-- row's creation is not timed). Closed periods are posted to the open one for
-- the sample, so that it measures writing whatever the first candidates'
-- dates. Its row locks go with the subtransaction (it waits at most 200 ms on
-- the business's). The preview's calibration (hera_migration_calibrate_v2) and
-- MeasurePerformance's batch sample both time this.
-- Returns {transactions, written, batch_ms}, or {error} when the batch failed
-- (in a read-only transaction, say).
CREATE OR REPLACE FUNCTION hera_migration_sample_batch_v2(
    p_organization_id uuid,
    p_from_date date,
    p_to_date date,
    p_candidate_statuses text[] DEFAULT ARRAY['posted'],
    p_smart_code_mappings jsonb DEFAULT '[]'::jsonb,
    p_actor uuid DEFAULT NULL,
    p_sample integer DEFAULT 500
)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
-- The sample batch is planned as a run's batches are, whatever its caller
-- set: the preview, which calls it from psql, forbids nested loops for its
-- own set-against-set joins, which would make the batch's lookups by key
-- several times slower than a run's.
SET enable_nestloop = on
AS $fn$
DECLARE
    v_run     uuid;
    v_batch   jsonb;
    v_started timestamptz;
    v_detail  text;
BEGIN
    BEGIN
        PERFORM set_config('lock_timeout', '200ms', true);
        v_run := hera_migration_create_run_v2(
            p_organization_id,
            coalesce(p_actor, (SELECT created_by FROM core_organizations WHERE id = p_organization_id)),
            jsonb_build_object(
                'from_date', p_from_date, 'to_date', p_to_date, 'batch_size', p_sample,
                'smart_code_mappings', coalesce(p_smart_code_mappings, '[]'::jsonb),
                'candidate_statuses', to_jsonb(p_candidate_statuses),
                'closed_period_policy', 'POST_TO_OPEN_PERIOD', 'dry_run', true));
        v_started := clock_timestamp();
        v_batch := hera_migration_execute_batch_v2(v_run);
        v_batch := jsonb_build_object(
            'transactions', v_batch -> 'transactions',
            'written', v_batch -> 'migrated',
            'batch_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 3));
        RAISE EXCEPTION 'sample batch done' USING ERRCODE = 'HM000', DETAIL = v_batch::text;
    EXCEPTION
        WHEN SQLSTATE 'HM000' THEN
            GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
            v_batch := v_detail::jsonb;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_detail = MESSAGE_TEXT;
            RETURN jsonb_build_object('error', v_detail);
    END;
    RETURN v_batch;
END;
$fn$;

-- A normal business posting, undone: one balanced journal entry of the
-- organization (HERA's GL journal smart codes, posted, today, 100.00 USD)
-- with two GL lines, DR 5300 salaries and CR 1100 cash (each line's entity the
-- organization's GL_ACCOUNT entity of that code when it has one, as a posting
-- resolves its accounts), written by p_actor through every trigger and
-- constraint of the tables, then rolled back with its subtransaction.
-- Returns {transaction_id, lines, rolled_back: true} (that id never exists
-- afterwards), or {error, sqlstate} when the database refused the posting.
CREATE OR REPLACE FUNCTION hera_migration_sample_posting_v2(p_organization_id uuid, p_actor uuid)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $fn$
DECLARE
    v_id     uuid := gen_random_uuid();
    v_detail text;
    v_state  text;
BEGIN
    BEGIN
        INSERT INTO universal_transactions (
            id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
            transaction_status, smart_code, business_context, metadata, transaction_currency_code,
            created_by, updated_by)
        VALUES (v_id, p_organization_id, 'JOURNAL_ENTRY', 'PERF-' || v_id, now(), 100.00, 'posted',
                'HERA.ACCOUNTING.GL.TXN.JOURNAL_ENTRY.v1',
                jsonb_build_object('source', 'hera-migrate MeasurePerformance'),
                jsonb_build_object('performance_sample', true), 'USD', p_actor, p_actor);
        INSERT INTO universal_transaction_lines (
            organization_id, transaction_id, line_number, entity_id, line_type, description,
            quantity, unit_amount, line_amount, smart_code, line_data, created_by, updated_by)
        SELECT p_organization_id, v_id, l.line_number,
               (SELECT e.id FROM core_entities e
                 WHERE e.organization_id = p_organization_id AND e.entity_type = 'GL_ACCOUNT'
                   AND e.entity_code = l.account_code
                 LIMIT 1),
               'GL', l.description, 1, 100.00, 100.00, l.smart_code,
               jsonb_build_object('side', l.side, 'account_code', l.account_code), p_actor, p_actor
          FROM (VALUES (1, '5300', 'SALARIES', 'DR', 'HERA.ACCOUNTING.GL.JOURNAL.SALARIES.v1'),
                       (2, '1100', 'CASH', 'CR', 'HERA.ACCOUNTING.GL.JOURNAL.CASH.v1'))
               AS l (line_number, account_code, description, side, smart_code);
        RAISE EXCEPTION 'sample posting done' USING ERRCODE = 'HM000';
    EXCEPTION
        WHEN SQLSTATE 'HM000' THEN
            RETURN jsonb_build_object('transaction_id', v_id, 'lines', 2, 'rolled_back', true);
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_detail = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
            RETURN jsonb_build_object('error', v_detail, 'sqlstate', v_state);
    END;
END;
$fn$;

-- A MeasurePerformance audit row: a MIGRATION_PERFORMANCE_BASELINE or
-- MIGRATION_PERFORMANCE_TEST row of universal_transactions (completed, zero
-- total, smart code HERA.ACCOUNTING.MIGRATION.PERF.<kind>.v2), its
-- measurements in p_metadata, by p_actor. Never a migration candidate (its
-- code is v2 and hera-migrate's own). A TEST compares with the latest
-- BASELINE row of its organization.
CREATE OR REPLACE FUNCTION hera_migration_record_performance_v2(
    p_id uuid,
    p_organization_id uuid,
    p_kind text,
    p_metadata jsonb,
    p_actor uuid
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('BASELINE', 'TEST') THEN
        RAISE EXCEPTION 'kind: % is not BASELINE or TEST', coalesce(p_kind, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM hera_migration_write_audit_row_v2(
        p_id, p_organization_id, 'MIGRATION_PERFORMANCE_' || p_kind, 'MIGPERF-' || p_id, 'completed',
        'HERA.ACCOUNTING.MIGRATION.PERF.' || p_kind || '.v2',
        coalesce(p_metadata, '{}'::jsonb) || jsonb_build_object('kind', p_kind), p_actor);
END;
$fn$;
