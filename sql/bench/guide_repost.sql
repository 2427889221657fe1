-- hera-migrate bench, figure c (the guide's way), call 2 of 2 per
-- transaction: the v2 repost's header and lines. Same columns as the batch's
-- copies, under the same time-ordered ids (the client's UUID v7 for the header,
-- hera_migration_uuid_v7 for the lines).
-- $1 the original, $2 the repost's id.
WITH repost AS (
    INSERT INTO universal_transactions (
        id, organization_id, transaction_type, transaction_code, transaction_date,
        source_entity_id, target_entity_id, total_amount, transaction_status, smart_code,
        business_context, metadata, fiscal_period_entity_id, fiscal_year, fiscal_period,
        posting_period_code, transaction_currency_code, created_by, updated_by
        /*@header_copy_columns*//*@*/)
    SELECT $2, s.organization_id, s.transaction_type, s.transaction_code || '-G2',
           s.transaction_date, s.source_entity_id, s.target_entity_id, s.total_amount, 'bench_copy',
           hera_smart_code_at_version(s.smart_code, 2), s.business_context,
           s.metadata || jsonb_build_object('original_transaction_id', s.id),
           s.fiscal_period_entity_id, s.fiscal_year, s.fiscal_period, s.posting_period_code,
           s.transaction_currency_code, s.created_by, s.updated_by
           /*@header_copy_values*//*@*/
      FROM universal_transactions s
     WHERE s.id = $1
    RETURNING 1)
INSERT INTO universal_transaction_lines (
    id, organization_id, transaction_id, line_number, entity_id, line_type, description,
    quantity, unit_amount, line_amount, discount_amount, tax_amount, smart_code, line_data,
    created_by, updated_by
    /*@line_copy_columns*//*@*/)
SELECT hera_migration_uuid_v7(), l.organization_id, $2, l.line_number, l.entity_id, l.line_type, l.description,
       l.quantity, l.unit_amount, l.line_amount, l.discount_amount, l.tax_amount,
       hera_smart_code_at_version(l.smart_code, 2), l.line_data, l.created_by, l.updated_by
       /*@line_copy_values*//*@*/
  FROM universal_transaction_lines l
 WHERE l.transaction_id = $1
