-- hera-migrate bench, figure c (the guide's way), call 1 of 2 per
-- transaction: the reversal's header and negated lines, and the original
-- marked reversed, in one statement. Same columns as the batch's copies,
-- under the same time-ordered ids (the client's UUID v7 for the header,
-- hera_migration_uuid_v7 for the lines).
-- $1 the original, $2 the reversal's id.
WITH reversal AS (
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by
        /*@header_copy_columns*//*@*/)
    SELECT $2, s.organization_id, s.transaction_type, s.transaction_code || '-G1',
           s.transaction_date, s.source_entity_id, s.target_entity_id, s.total_amount, 'bench_copy',
           s.smart_code, s.business_context, s.metadata || jsonb_build_object('reversal_of', s.id),
           s.fiscal_period_entity_id, s.fiscal_year, s.fiscal_period, s.posting_period_code,
           s.transaction_currency_code, s.created_by, s.updated_by
           /*@header_copy_values*//*@*/
      FROM universal_transactions s
     WHERE s.id = $1
    RETURNING 1),
negated AS (
    INSERT INTO universal_transaction_lines (
        id, organization_id, transaction_id, line_number, entity_id, line_type, description,
        quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
        created_by, updated_by
        /*@line_copy_columns*//*@*/)
    SELECT hera_migration_uuid_v7(), l.organization_id, $2, l.line_number, l.entity_id, l.line_type, l.description,
           -l.quantity, -l.unit_amount, -l.line_amount, -l.discount_amount, -l.tax_amount,
           l.smart_code, l.line_data, l.created_by, l.updated_by
           /*@line_copy_values*//*@*/
      FROM universal_transaction_lines l
     WHERE l.transaction_id = $1
    RETURNING 1)
UPDATE universal_transactions t
   SET transaction_status = 'reversed',
       metadata = t.metadata || jsonb_build_object('reversal_id', $2::uuid)
 WHERE t.id = $1
