-- hera-migrate bench, figure k: the posting's two balanced GL lines.
-- $1 organization, $2 the header, $3 the debited account (salaries),
-- $4 the credited account (cash), $5 the amount, $6 user.
INSERT INTO universal_transaction_lines (
    organization_id, transaction_id, line_number, entity_id, line_type, description,
    quantity, unit_amount, line_amount, smart_code, line_data, created_by, updated_by)
VALUES ($1, $2, 1, $3, 'GL', 'Salaries', 1, $5, $5, 'HERA.ACCOUNTING.GL.JOURNAL.SALARIES.v2',
        '{"side": "DR", "account_code": "5300"}', $6, $6),
       ($1, $2, 2, $4, 'GL', 'Cash', 1, $5, $5, 'HERA.ACCOUNTING.GL.JOURNAL.CASH.v2',
        '{"side": "CR", "account_code": "1100"}', $6, $6)
