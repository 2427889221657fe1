-- A run's event history: every state change and every batch of a run is one
-- event, a line of the run's own MIGRATION_RUN row in
-- universal_transaction_lines (zero tables): line_number is the event's
-- sequence (HERA's UNIQUE (transaction_id, line_number) makes it unique),
-- line_type MIGRATION_EVENT, amount zero, and line_data the event exactly as
-- every reader gets it (the stream, WatchMigration, GetMigration,
-- ListMigrations): written once, never updated, so one sequence always
-- carries one content.
--
-- An event (src/migration/progress.rs reads it):
--   {migration_id, organization_id, sequence, kind, phase, state, dry_run,
--    processed, remaining, migrated, skipped_closed, skipped_unmapped,
--    quarantined, refused, batch_number, batch_transactions,
--    current_batch_ms, average_batch_ms, transactions_per_second,
--    estimated_completion, health, errors, warnings, lock_backoffs,
--    pacing: {throttled, reason, operator_chosen, detail, throttled_ms, sizing},
--    message, actor, emitted_at}
-- kind: STARTED, PLANNED, BATCH, PAUSED, RESUMED, UPDATED, CANCELLED,
-- THROTTLE_STARTED, THROTTLE_ENDED, LOCK_BACKOFF, TAKEN_OVER,
-- DATABASE_UNAVAILABLE, INTERRUPTED, ROLLBACK_STARTED, ENDED.

-- The counts of a run as its record holds them, per phase: an execution and
-- an application of aliases against the candidates they counted first (for
-- aliases: migrated = aliased, skipped_unmapped = already aliased), a
-- rollback against what the execution migrated (migrated = restored).
-- Nothing is left once the run succeeded or was rolled back.
CREATE OR REPLACE FUNCTION hera_migration_event_counts_v2(p_meta jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    WITH phase AS (
        SELECT coalesce(p_meta ->> 'phase', 'EXECUTION') = 'ROLLBACK' AS rollback,
               coalesce(p_meta -> 'counters', '{}') AS c,
               coalesce(p_meta #> '{rollback,counters}', '{}') AS r),
    counts AS (
        SELECT CASE WHEN rollback THEN coalesce((r ->> 'processed')::bigint, 0)
                    ELSE coalesce((c ->> 'processed')::bigint, 0) END AS processed,
               CASE WHEN rollback THEN coalesce((c ->> 'migrated')::bigint, 0)
                    -- what the batches look at: the candidates and the
                    -- transactions they skip for having no v2 target
                    ELSE coalesce((p_meta ->> 'total_candidates')::bigint
                                    + coalesce((p_meta #>> '{prediction,skipped_unmapped}')::bigint, 0),
                                  (c ->> 'processed')::bigint, 0) END AS total,
               CASE WHEN rollback THEN coalesce((r ->> 'restored')::bigint, 0)
                    ELSE coalesce((c ->> 'migrated')::bigint, 0) END AS migrated,
               CASE WHEN rollback THEN 0 ELSE coalesce((c ->> 'skipped_closed')::bigint, 0) END AS skipped_closed,
               CASE WHEN rollback THEN 0 ELSE coalesce((c ->> 'skipped_unmapped')::bigint, 0) END AS skipped_unmapped,
               CASE WHEN rollback THEN 0 ELSE coalesce((c ->> 'quarantined')::bigint, 0) END AS quarantined,
               CASE WHEN rollback THEN coalesce((r ->> 'refused')::bigint, 0)
                    ELSE coalesce((c ->> 'refused')::bigint, 0) END AS refused,
               CASE WHEN rollback THEN coalesce((r ->> 'batches')::bigint, 0)
                    ELSE coalesce((c ->> 'batches')::bigint, 0) END AS batches
          FROM phase)
    SELECT jsonb_build_object(
               'processed', processed,
               'remaining', CASE WHEN p_meta ->> 'state' IN ('SUCCEEDED', 'ROLLED_BACK') THEN 0
                                 ELSE greatest(total - processed, 0) END,
               'migrated', migrated,
               'skipped_closed', skipped_closed,
               'skipped_unmapped', skipped_unmapped,
               'quarantined', quarantined,
               'refused', refused,
               'batch_number', batches)
      FROM counts
$$;

-- An event of run p_run_id now, built from its record (p_meta), the event
-- before it (p_last: what is measured between batches carries over: rates,
-- pace, lock backoffs) and what the writer says (p_event: kind, message,
-- health, and for a batch its timings and pace). The record is the truth for
-- state and counts. Health is CRITICAL for a failed run; an end is a WARNING
-- when a person must look (quarantined, refused); else what p_event says
-- (HEALTHY by default: an operator's own limits are not a warning). The ETA
-- follows from the rate while the run is RUNNING. A dry run's messages say so.
CREATE OR REPLACE FUNCTION hera_migration_event_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_meta jsonb,
    p_last jsonb,
    p_event jsonb,
    p_at timestamptz
)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    v_counts jsonb := hera_migration_event_counts_v2(p_meta);
    v_state  text := coalesce(p_meta ->> 'state', 'RUNNING');
    v_dry    boolean := coalesce((p_meta #>> '{parameters,dry_run}')::boolean, false);
    v_kind   text := coalesce(p_event ->> 'kind', 'BATCH');
    v_rate   numeric := coalesce((p_event ->> 'transactions_per_second')::numeric,
                                 (p_last ->> 'transactions_per_second')::numeric, 0);
    v_backoffs bigint := coalesce((p_last ->> 'lock_backoffs')::bigint, 0)
                         + CASE WHEN v_kind = 'LOCK_BACKOFF' THEN 1 ELSE 0 END;
    v_health text;
    v_message text := coalesce(p_event ->> 'message', '');
    v_pacing jsonb := coalesce(p_event -> 'pacing', p_last -> 'pacing',
                               '{"throttled": false, "reason": "NONE", "operator_chosen": false, "detail": "", "throttled_ms": 0}');
BEGIN
    v_health := CASE
        WHEN v_state = 'FAILED' THEN 'CRITICAL'
        WHEN v_kind = 'ENDED' AND ((v_counts ->> 'quarantined')::bigint > 0 OR (v_counts ->> 'refused')::bigint > 0)
            THEN 'WARNING'
        ELSE coalesce(p_event ->> 'health', 'HEALTHY') END;
    IF v_state NOT IN ('RUNNING', 'PAUSED') THEN
        v_pacing := v_pacing || '{"throttled": false, "reason": "NONE", "operator_chosen": false, "detail": ""}';
    END IF;
    IF v_dry AND v_message NOT ILIKE 'dry run%' THEN
        v_message := 'dry run: ' || v_message;
    END IF;
    RETURN jsonb_build_object(
               'migration_id', p_run_id,
               'organization_id', p_organization_id,
               'kind', v_kind,
               'phase', coalesce(p_meta ->> 'phase', 'EXECUTION'),
               'state', v_state,
               'dry_run', v_dry,
               'batch_transactions', coalesce((p_event ->> 'batch_transactions')::bigint, 0),
               'current_batch_ms', coalesce((p_event ->> 'current_batch_ms')::numeric,
                                            (p_last ->> 'current_batch_ms')::numeric, 0),
               'average_batch_ms', coalesce((p_event ->> 'average_batch_ms')::numeric,
                                            (p_last ->> 'average_batch_ms')::numeric, 0),
               'transactions_per_second', v_rate,
               'estimated_completion',
                   CASE WHEN v_state = 'RUNNING' AND v_rate > 0
                        THEN to_jsonb(p_at + make_interval(secs => (v_counts ->> 'remaining')::numeric / v_rate)) END,
               'health', v_health,
               'errors', CASE WHEN v_state = 'FAILED' THEN 1 ELSE 0 END,
               'warnings', (v_counts ->> 'quarantined')::bigint + (v_counts ->> 'refused')::bigint + v_backoffs,
               'lock_backoffs', v_backoffs,
               'pacing', v_pacing,
               'message', v_message,
               'actor', p_event -> 'actor',
               'emitted_at', p_at)
           || v_counts;
END;
$fn$;

-- Appends an event to run p_run_id's history (p_event as for
-- hera_migration_event_v2) in the caller's transaction, under the run row's
-- lock (which every writer of the run holds, so sequences never collide and
-- an event commits with the change it records, or not at all). p_actor
-- names the writer for HERA's actor audit (else the run's starter).
-- Each event records who wrote it and when its transaction began: the run's
-- lease ({generation, server, since}) as the writer found it under that lock,
-- and now(). A batch's event thus spans its batch, [transaction_began_at,
-- emitted_at], under its executor's generation: the evidence that no two
-- servers ever write one run's batches at once (hera-migrate faults checks it).
-- Returns the event as stored, with its sequence.
CREATE OR REPLACE FUNCTION hera_migration_append_event_v2(
    p_run_id uuid,
    p_event jsonb,
    p_actor uuid DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_run   record;  -- hera_migration_lock_run_v2
    v_actor uuid;
    v_last  record;
    v_event jsonb;
    v_line  uuid := gen_random_uuid();
    v_seq   integer;
BEGIN
    v_run := hera_migration_lock_run_v2(p_run_id);
    v_actor := coalesce(p_actor, (v_run.metadata ->> 'started_by')::uuid);
    SELECT l.line_number, l.line_data INTO v_last
      FROM universal_transaction_lines l
     WHERE l.transaction_id = p_run_id AND l.organization_id = v_run.organization_id
     ORDER BY l.line_number DESC
     LIMIT 1;
    v_seq := coalesce(v_last.line_number, 0) + 1;
    v_event := hera_migration_event_v2(p_run_id, v_run.organization_id, v_run.metadata,
                                       v_last.line_data, p_event, clock_timestamp())
               || jsonb_build_object('sequence', v_seq,
                                     'executor', v_run.metadata -> 'lease',
                                     'transaction_began_at', now());
    -- An entry of the organization's audit chain (audit_chain.sql).
    v_event := v_event || jsonb_build_object('audit_chain', hera_migration_audit_link_v2(
        v_run.organization_id, 'event', v_line,
        hera_migration_audit_event_content_v2(p_run_id, v_seq, 'MIGRATION_EVENT',
                                              'HERA.ACCOUNTING.MIGRATION.RUN.EVENT.v2', v_actor, v_event),
        v_actor));
    INSERT INTO universal_transaction_lines (
        id, organization_id, transaction_id, line_number, line_type, description,
        quantity, unit_amount, line_amount, smart_code, line_data, created_by, updated_by)
    VALUES (v_line, v_run.organization_id, p_run_id, v_seq, 'MIGRATION_EVENT',
            left(v_event ->> 'kind' || ': ' || (v_event ->> 'message'), 500),
            0, 0, 0, 'HERA.ACCOUNTING.MIGRATION.RUN.EVENT.v2', v_event, v_actor, v_actor);
    RETURN v_event;
END;
$fn$;

-- Run p_run_id's latest event; a run recorded before events existed (no
-- line) answers one built from its record, sequence 0.
CREATE OR REPLACE FUNCTION hera_migration_latest_event_v2(
    p_run_id uuid,
    p_organization_id uuid,
    p_meta jsonb,
    p_updated_at timestamptz
)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        (SELECT l.line_data FROM universal_transaction_lines l
          WHERE l.transaction_id = p_run_id AND l.organization_id = p_organization_id
          ORDER BY l.line_number DESC LIMIT 1),
        hera_migration_event_v2(p_run_id, p_organization_id, p_meta, NULL,
                                jsonb_build_object('kind', 'STARTED', 'message', coalesce(p_meta ->> 'message', '')),
                                p_updated_at)
            || '{"sequence": 0}')
$$;
