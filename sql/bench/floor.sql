-- hera-migrate bench, figure a (the floor): one batch's rows written by plain
-- INSERT ... SELECT and UPDATE, no logic, in the caller's transaction (which
-- commits). The rows are the batch's (sql/functions/execute_batch.sql): per
-- original a reversal (negated lines) and a repost (v2 codes), each with
-- every column of its original, the columns beyond our contract included
-- (the /*@...*/ placeholders, rendered by db::adapt::Adaptation), and the
-- originals marked reversed. The copies get the status 'bench_copy', so that
-- no later round (nor figure c) takes them for originals. Their ids come from
-- the batch's own generator (hera_migration_uuid_v7), as the batch's do.
--
-- $1 the organization, $2 how many originals (the batch size). Returns the
-- rows written: headers, lines, updated originals.
WITH picked AS MATERIALIZED (
    SELECT id, hera_migration_uuid_v7() AS reversal, hera_migration_uuid_v7() AS repost
      FROM universal_transactions
     WHERE organization_id = $1 AND transaction_status = 'posted' AND hera_smart_code_is_v1(smart_code)
     ORDER BY organization_id, transaction_date, id
     LIMIT $2),
headers AS (
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by
        /*@header_copy_columns*//*@*/)
    SELECT copy.id, s.organization_id, s.transaction_type, s.transaction_code || copy.suffix,
           s.transaction_date, s.source_entity_id, s.target_entity_id, s.total_amount, 'bench_copy',
           copy.smart_code, s.business_context, s.metadata, s.fiscal_period_entity_id, s.fiscal_year,
           s.fiscal_period, s.posting_period_code, s.transaction_currency_code, s.created_by, s.updated_by
           /*@header_copy_values*//*@*/
      FROM picked p
      JOIN universal_transactions s ON s.id = p.id
     CROSS JOIN LATERAL (VALUES
           (p.reversal, '-Y1', s.smart_code::text),
           (p.repost, '-Y2', left(s.smart_code, -1) || '2') -- .v1 to .v2, no function call per row
           ) AS copy (id, suffix, smart_code)
    RETURNING 1),
lines AS (
    INSERT INTO universal_transaction_lines (
        id, organization_id, transaction_id, line_number, entity_id, line_type, description,
        quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
        created_by, updated_by
        /*@line_copy_columns*//*@*/)
    SELECT hera_migration_uuid_v7(), l.organization_id, copy.id, l.line_number, l.entity_id, l.line_type, l.description,
           copy.sign * l.quantity, copy.sign * l.unit_amount, copy.sign * l.line_amount,
           copy.sign * l.discount_amount, copy.sign * l.tax_amount, copy.smart_code, l.line_data,
           l.created_by, l.updated_by
           /*@line_copy_values*//*@*/
      FROM picked p
      JOIN universal_transaction_lines l ON l.transaction_id = p.id
     CROSS JOIN LATERAL (VALUES
           (p.reversal, -1, l.smart_code::text),
           (p.repost, 1, left(l.smart_code, -1) || '2')
           ) AS copy (id, sign, smart_code)
    RETURNING 1),
updated AS (
    UPDATE universal_transactions t
       SET transaction_status = 'reversed',
           metadata = t.metadata || jsonb_build_object('reversal_id', p.reversal, 'migrated_to', p.repost)
      FROM picked p
     WHERE t.id = p.id
    RETURNING 1)
SELECT (SELECT count(*) FROM headers) AS headers,
       (SELECT count(*) FROM lines)   AS lines,
       (SELECT count(*) FROM updated) AS updates
