-- One SECURITY_VALIDATION audit row: who tried what in which organization,
-- with which role, and whether it was allowed. Never a migration candidate
-- (its type, its v2 smart code and its status all exclude it).
INSERT INTO universal_transactions (
    id, organization_id, transaction_type, transaction_code, transaction_date,
    total_amount, transaction_status, smart_code, metadata, created_by, updated_by
) VALUES (
    $1, $2, 'SECURITY_VALIDATION', 'SECVAL-' || $1::text, now(),
    0, 'completed', 'HERA.ACCOUNTING.MIGRATION.SECURITY.VALIDATION.v2', $3, $4, $4
)
