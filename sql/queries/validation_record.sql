-- A validation report, recorded as a MIGRATION_VALIDATION row of the run's
-- organization ($1 the row's id, $2 the organization, $3 the overall result,
-- $4 the report, $5 who asked), chained like every audit row. Its own
-- transaction type: a rollback, which walks the run's MIGRATION_OPERATION
-- rows, never meets it.
SELECT hera_migration_write_audit_row_v2(
    $1, $2, 'MIGRATION_VALIDATION', 'MIGVAL-' || $1, lower($3),
    'HERA.ACCOUNTING.MIGRATION.VALIDATION.REPORT.v2',
    $4::jsonb || jsonb_build_object('operation_type', 'VALIDATION', 'phase', 'VALIDATION'), $5)
