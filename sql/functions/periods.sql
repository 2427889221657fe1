-- Fiscal periods as HERA records them, in one place: the preview, each batch,
-- the trial balance, validation and aliases all read them through
-- hera_migration_fiscal_periods_v2.
--
-- A period is a core_entities row of the organization whose entity_type is
--   'period'         HERA production's own (v_period_close_dashboard and
--                    validate_journal_posting_to_period read these), or
--   'FISCAL_PERIOD'  hera-migrate's seed-demo and earlier HERA installs,
-- whose entity status is 'active' (or unset): an archived period entity no
-- longer speaks for its dates. Its metadata holds status, start_date,
-- end_date, and period_code or fiscal_year + period_number.
--
-- status is normalized to what a migration needs to know, whether the period
-- takes postings:
--   OPEN    metadata status OPEN or CURRENT, or none recorded;
--   LOCKED  LOCKED, HARD_CLOSED, ARCHIVED or FROZEN;
--   CLOSED  any other value (CLOSED, SOFT_CLOSED, CLOSING, PENDING_CLOSE,
--           FUTURE, ...): a period not known to be open takes no postings.
-- period_code is metadata.period_code, else fiscal_year-period_number
-- ('2024-03'), else the entity's code.
--
-- A plain SQL set-returning function: PostgreSQL inlines it into the query
-- that uses it, so the (organization_id, entity_type) index serves it.
CREATE OR REPLACE FUNCTION hera_migration_fiscal_periods_v2(p_organization_id uuid)
RETURNS TABLE (
    id            uuid,
    period_code   text,
    status        text,
    start_date    date,
    end_date      date,
    fiscal_year   integer,
    period_number integer
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.id,
           coalesce(nullif(btrim(e.metadata ->> 'period_code'), ''),
                    CASE WHEN e.metadata ->> 'fiscal_year' ~ '^\d{4}$'
                          AND e.metadata ->> 'period_number' ~ '^\d{1,2}$'
                         THEN (e.metadata ->> 'fiscal_year') || '-' || lpad(e.metadata ->> 'period_number', 2, '0')
                    END,
                    e.entity_code,
                    e.id::text),
           CASE upper(btrim(coalesce(e.metadata ->> 'status', '')))
               WHEN '' THEN 'OPEN'
               WHEN 'OPEN' THEN 'OPEN'
               WHEN 'CURRENT' THEN 'OPEN'
               WHEN 'LOCKED' THEN 'LOCKED'
               WHEN 'HARD_CLOSED' THEN 'LOCKED'
               WHEN 'ARCHIVED' THEN 'LOCKED'
               WHEN 'FROZEN' THEN 'LOCKED'
               ELSE 'CLOSED'
           END,
           (e.metadata ->> 'start_date')::date,
           (e.metadata ->> 'end_date')::date,
           CASE WHEN e.metadata ->> 'fiscal_year' ~ '^\d{4}$' THEN (e.metadata ->> 'fiscal_year')::int
                ELSE extract(year FROM (e.metadata ->> 'start_date')::date)::int END,
           CASE WHEN e.metadata ->> 'period_number' ~ '^\d{1,3}$' THEN (e.metadata ->> 'period_number')::int
                WHEN e.metadata ->> 'fiscal_period' ~ '^\d{1,3}$' THEN (e.metadata ->> 'fiscal_period')::int
                ELSE extract(month FROM (e.metadata ->> 'start_date')::date)::int END
      FROM core_entities e
     WHERE e.organization_id = p_organization_id
       AND e.entity_type IN ('period', 'FISCAL_PERIOD')
       AND coalesce(lower(e.status), 'active') = 'active'
$$;
