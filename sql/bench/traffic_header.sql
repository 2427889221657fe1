-- hera-migrate bench, figure k: a normal business posting's header (a v2
-- journal entry, so no migration takes it for a candidate), in an open period.
-- $1 organization, $2 code, $3 date, $4 total, $5 fiscal period entity,
-- $6 fiscal year, $7 fiscal period number, $8 period code, $9 user.
INSERT INTO universal_transactions (
    organization_id, transaction_type, transaction_code, transaction_date, total_amount,
    transaction_status, smart_code, business_context, metadata, fiscal_period_entity_id,
    fiscal_year, fiscal_period, posting_period_code, transaction_currency_code,
    created_by, updated_by)
VALUES ($1, 'JOURNAL_ENTRY', $2, $3, $4, 'posted', 'HERA.ACCOUNTING.GL.TXN.JOURNAL_ENTRY.v2',
        '{"source": "hera-migrate bench"}', '{}', $5, $6, $7, $8, 'USD', $9, $9)
RETURNING id
