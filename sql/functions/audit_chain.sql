-- The audit chain: every audit row hera-migrate writes for an organization
-- (the MIGRATION_OPERATION rows of batches, rollbacks and aliases, its
-- validations, security validations, incidents and performance
-- measurements) and every event of its runs (their starts, control actions
-- with actor and old and new values, batches, ends: lines of the runs'
-- rows) is an entry of one chain per organization. Each carries, in
-- metadata.audit_chain (an event: line_data.audit_chain),
--   {seq, prev, hash, prev_entry}:
-- its place in the chain (1, 2, 3, ...), the hash of the entry before it
-- (the organization's genesis hash for the first), sha256(prev || its
-- canonical content) in hex, and where the entry before it is ({kind: row
-- or event, id}). The chain's head is one row per organization, its id
-- derived from the organization's (hera_migration_audit_head_id_v2),
-- MIGRATION_AUDIT_CHAIN, holding {seq, hash, entry} of the latest entry.
-- An append locks the head row until its transaction ends, so appends of
-- one organization form one line whichever server makes them, and an entry
-- whose transaction rolls back takes its link with it.
--
-- Canonical content is a jsonb object of the entry's columns that never
-- change after it is written (its timestamps are left out: their text
-- follows the session's TimeZone), its metadata or line_data without
-- audit_chain; jsonb's text form orders keys the same way every time.
--
-- What this proves: an entry edited, deleted or re-chained since it was
-- written no longer verifies (hera_migration_verify_audit_chain_v2 names the
-- first one). Whoever can write the tables can also rewrite the whole chain
-- and its head; against that, keep an anchor ({seq, hash}, in every
-- validation report and incident document) outside the database: a chain
-- rewritten since no longer passes through it.

-- The head row's id: one per organization, found by primary key.
CREATE OR REPLACE FUNCTION hera_migration_audit_head_id_v2(p_organization_id uuid)
RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5('hera-migrate audit chain head ' || p_organization_id::text)::uuid $$;

-- The hash an organization's first entry links to.
CREATE OR REPLACE FUNCTION hera_migration_audit_genesis_v2(p_organization_id uuid)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT encode(sha256(convert_to('hera-migrate audit chain ' || p_organization_id::text, 'UTF8')), 'hex') $$;

-- An entry's hash: sha256 of the previous hash and its content.
CREATE OR REPLACE FUNCTION hera_migration_audit_hash_v2(p_prev text, p_content text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT encode(sha256(convert_to(p_prev || p_content, 'UTF8')), 'hex') $$;

-- The canonical content of an audit row of universal_transactions.
CREATE OR REPLACE FUNCTION hera_migration_audit_row_content_v2(
    p_id uuid,
    p_organization_id uuid,
    p_type text,
    p_code text,
    p_smart_code text,
    p_status text,
    p_actor uuid,
    p_metadata jsonb
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
               'id', p_id, 'organization_id', p_organization_id, 'transaction_type', p_type,
               'transaction_code', p_code, 'smart_code', p_smart_code, 'transaction_status', p_status,
               'created_by', p_actor, 'metadata', coalesce(p_metadata, '{}') - 'audit_chain')::text
$$;

-- The canonical content of a run's event (a line of its row).
CREATE OR REPLACE FUNCTION hera_migration_audit_event_content_v2(
    p_run_id uuid,
    p_line_number integer,
    p_line_type text,
    p_smart_code text,
    p_actor uuid,
    p_line_data jsonb
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object(
               'transaction_id', p_run_id, 'line_number', p_line_number, 'line_type', p_line_type,
               'smart_code', p_smart_code, 'created_by', p_actor,
               'line_data', coalesce(p_line_data, '{}') - 'audit_chain')::text
$$;

-- Appends entry p_entry_id (p_kind 'row' or 'event', whose canonical content
-- is p_content) to p_organization_id's chain, in the caller's transaction:
-- locks the head (creating it at the first entry, by p_actor), advances it,
-- and returns the entry's {seq, prev, hash, prev_entry}, which the caller
-- writes into the entry.
CREATE OR REPLACE FUNCTION hera_migration_audit_link_v2(
    p_organization_id uuid,
    p_kind text,
    p_entry_id uuid,
    p_content text,
    p_actor uuid
)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_head uuid := hera_migration_audit_head_id_v2(p_organization_id);
    v_meta jsonb;
    v_link jsonb;
BEGIN
    SELECT metadata INTO v_meta FROM universal_transactions WHERE id = v_head FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO universal_transactions (
            id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
            transaction_status, smart_code, metadata, created_by, updated_by)
        VALUES (v_head, p_organization_id, 'MIGRATION_AUDIT_CHAIN', 'MIGCHAIN-' || p_organization_id, now(), 0,
                'completed', 'HERA.ACCOUNTING.MIGRATION.AUDIT.CHAIN.v2',
                jsonb_build_object('seq', 0, 'hash', hera_migration_audit_genesis_v2(p_organization_id)),
                p_actor, p_actor)
        ON CONFLICT (id) DO NOTHING;
        SELECT metadata INTO v_meta FROM universal_transactions WHERE id = v_head FOR UPDATE;
    END IF;
    v_link := jsonb_build_object(
        'seq', (v_meta ->> 'seq')::bigint + 1,
        'prev', v_meta ->> 'hash',
        'hash', hera_migration_audit_hash_v2(v_meta ->> 'hash', p_content),
        'prev_entry', v_meta -> 'entry');
    UPDATE universal_transactions
       SET metadata = metadata || jsonb_build_object(
               'seq', v_link -> 'seq', 'hash', v_link -> 'hash',
               'entry', jsonb_build_object('kind', p_kind, 'id', p_entry_id)),
           updated_at = now(),
           smart_code = smart_code
     WHERE id = v_head;
    RETURN v_link;
END;
$fn$;

-- Writes one audit row (zero total, today) and chains it: what every
-- audit row of hera-migrate is written through.
CREATE OR REPLACE FUNCTION hera_migration_write_audit_row_v2(
    p_id uuid,
    p_organization_id uuid,
    p_type text,
    p_code text,
    p_status text,
    p_smart_code text,
    p_metadata jsonb,
    p_actor uuid
)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_link jsonb := hera_migration_audit_link_v2(
        p_organization_id, 'row', p_id,
        hera_migration_audit_row_content_v2(p_id, p_organization_id, p_type, p_code, p_smart_code,
                                            p_status, p_actor, p_metadata),
        p_actor);
BEGIN
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
        transaction_status, smart_code, metadata, created_by, updated_by)
    VALUES (p_id, p_organization_id, p_type, p_code, now(), 0, p_status, p_smart_code,
            coalesce(p_metadata, '{}') || jsonb_build_object('audit_chain', v_link), p_actor, p_actor);
END;
$fn$;

-- The chain's head as an anchor, {seq, hash} (seq 0 and the genesis hash
-- before the first entry); read without a lock.
CREATE OR REPLACE FUNCTION hera_migration_audit_anchor_v2(p_organization_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        (SELECT jsonb_build_object('seq', (metadata ->> 'seq')::bigint, 'hash', metadata ->> 'hash')
           FROM universal_transactions
          WHERE id = hera_migration_audit_head_id_v2(p_organization_id)
            AND organization_id = p_organization_id),
        jsonb_build_object('seq', 0, 'hash', hera_migration_audit_genesis_v2(p_organization_id)))
$$;

-- One entry of the chain as it reads now: {chain, content, transaction_type}
-- (NULL when it is gone).
CREATE OR REPLACE FUNCTION hera_migration_audit_entry_v2(p_organization_id uuid, p_kind text, p_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN p_kind = 'event' THEN
               (SELECT jsonb_build_object(
                           'chain', l.line_data -> 'audit_chain',
                           'content', hera_migration_audit_event_content_v2(
                               l.transaction_id, l.line_number, l.line_type, l.smart_code::text,
                               l.created_by, l.line_data),
                           'transaction_type', 'MIGRATION_EVENT')
                  FROM universal_transaction_lines l
                 WHERE l.id = p_id AND l.organization_id = p_organization_id)
           ELSE
               (SELECT jsonb_build_object(
                           'chain', t.metadata -> 'audit_chain',
                           'content', hera_migration_audit_row_content_v2(
                               t.id, t.organization_id, t.transaction_type, t.transaction_code,
                               t.smart_code::text, t.transaction_status, t.created_by, t.metadata),
                           'transaction_type', t.transaction_type)
                  FROM universal_transactions t
                 WHERE t.id = p_id AND t.organization_id = p_organization_id)
           END
$$;

-- Recomputes p_organization_id's chain from its head back to its first
-- entry: each entry's hash from its recorded prev and its content as it
-- reads now, each recorded hash against the link the entry after it (or the
-- head) holds, and the first entry's prev against the genesis. Returns
--   {verified, entries, checked, head: {seq, hash},
--    first_broken: {seq, kind, entry_id, transaction_type, reason} | null}
-- where first_broken is the earliest entry that fails (an entry missing, a
-- row deleted or its audit_chain removed, ends the walk: what came before it
-- is not checked). Reads only; by primary key, one entry at a time.
CREATE OR REPLACE FUNCTION hera_migration_verify_audit_chain_v2(p_organization_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
DECLARE
    v_head    jsonb := hera_migration_audit_anchor_v2(p_organization_id);
    v_seq     bigint := (v_head ->> 'seq')::bigint;
    v_expect  text := v_head ->> 'hash';
    v_at      jsonb;
    v_entry   jsonb;
    v_chain   jsonb;
    v_checked bigint := 0;
    v_broken  jsonb;
    v_reason  text;
BEGIN
    SELECT metadata -> 'entry' INTO v_at
      FROM universal_transactions
     WHERE id = hera_migration_audit_head_id_v2(p_organization_id) AND organization_id = p_organization_id;
    WHILE v_seq > 0 LOOP
        v_entry := hera_migration_audit_entry_v2(p_organization_id, v_at ->> 'kind', (v_at ->> 'id')::uuid);
        v_chain := v_entry -> 'chain';
        IF v_entry IS NULL OR v_chain IS NULL OR jsonb_typeof(v_chain) <> 'object' THEN
            v_broken := jsonb_build_object(
                'seq', v_seq, 'kind', v_at ->> 'kind', 'entry_id', v_at ->> 'id',
                'transaction_type', v_entry ->> 'transaction_type',
                'reason', CASE WHEN v_entry IS NULL THEN 'missing: the entry was deleted'
                               ELSE 'its audit_chain was removed' END);
            EXIT;
        END IF;
        v_checked := v_checked + 1;
        v_reason := CASE
            WHEN (v_chain ->> 'seq')::bigint IS DISTINCT FROM v_seq OR v_chain ->> 'hash' IS DISTINCT FROM v_expect
                THEN 'its recorded link is not the one the entry after it holds (its audit_chain was rewritten)'
            WHEN hera_migration_audit_hash_v2(v_chain ->> 'prev', v_entry ->> 'content') <> v_chain ->> 'hash'
                THEN 'edited since it was written: its content no longer hashes to its recorded hash'
            WHEN v_seq = 1 AND v_chain ->> 'prev' <> hera_migration_audit_genesis_v2(p_organization_id)
                THEN 'the chain does not begin at the organization''s genesis'
            END;
        IF v_reason IS NOT NULL THEN
            -- Walking backwards: the last one found is the first broken.
            v_broken := jsonb_build_object(
                'seq', v_seq, 'kind', v_at ->> 'kind', 'entry_id', v_at ->> 'id',
                'transaction_type', v_entry ->> 'transaction_type', 'reason', v_reason);
        END IF;
        v_expect := v_chain ->> 'prev';
        v_at := v_chain -> 'prev_entry';
        v_seq := v_seq - 1;
    END LOOP;
    RETURN jsonb_build_object(
        'verified', v_broken IS NULL,
        'entries', (v_head ->> 'seq')::bigint,
        'checked', v_checked,
        'head', v_head,
        'first_broken', v_broken);
END;
$fn$;
