-- One SECURITY_VALIDATION audit row: who tried what in which organization,
-- with which role, and whether it was allowed; chained like every audit row
-- (sql/functions/audit_chain.sql). Never a migration candidate (its type,
-- its v2 smart code and its status all exclude it).
SELECT hera_migration_write_audit_row_v2(
    $1, $2, 'SECURITY_VALIDATION', 'SECVAL-' || $1::text, 'completed',
    'HERA.ACCOUNTING.MIGRATION.SECURITY.VALIDATION.v2', $3, $4)
