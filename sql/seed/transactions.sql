-- seed-demo, step 2 of 2: one chunk of v1 transactions with their GL lines,
-- in one statement (so each chunk is its own database transaction).
--
-- The transactions of all demo organizations form one global sequence
-- g = 0 .. organizations * per_org - 1: organization org_no = g / per_org + 1,
-- its n-th transaction n = g % per_org + 1. A chunk is the range
-- g_first .. g_last and may span organizations.
--
-- Every pseudo-random choice is hashint8extended(key, seed) with
-- key = (org_no << 40) | (n << 12) | (line << 6) | stream, so the data depend
-- only on (seed, org_no, n, line), never on the chunking, and never on random().
--
-- Line 1 carries the total on one side (DR cash for a SALE, DR receivables for
-- a CUSTOMER_INVOICE, CR payables for a VENDOR_BILL, CR cash for a
-- JOURNAL_ENTRY); lines 2..L take the other side with 2-decimal amounts,
-- cycling over the kind's three accounts; line 1's amount, and the header's
-- total_amount, are their sum.
--
-- The plan must not depend on row estimates (the CTEs are estimated badly):
-- organizations, GL accounts and fiscal periods are looked up by array index
-- (the caller passes the ids made by setup.sql), never joined, and lines are
-- expanded from their own header row with a LATERAL, never joined back to it.
-- The only joins are with the tiny kind (4 rows) and slot (16 rows) tables.
--
-- $1  organization ids (uuid[], by org_no)
-- $2  owner user ids (uuid[], by org_no)
-- $3  run tag (text)
-- $4  g_first, $5 g_last (int8, inclusive)
-- $6  transactions per organization (int8)
-- $7  lines per transaction (int, >= 2)
-- $8  date_from, $9 date_to (date, inclusive)
-- $10 seed (int8)
-- $11 fiscal period ids (uuid[], org-major: months_per_org per organization,
--     month 1 = the month of date_from)
-- $12 GL account ids (uuid[], org-major: in the order of $13 per organization)
-- $13 GL account codes (text[]), $14 GL account names (text[])
-- $15, $16 id prefixes of this run for transactions and lines: the first 24
--     characters ('xxxxxxxx-xxxx-4xxx-yxxx-') of two random v4 uuids. An id is
--     the prefix and a 12-hex-digit counter (g, or g * 64 + line number): still
--     a well-formed v4 uuid, unique across runs by its 74 random bits, but
--     ascending within a run, so the primary keys and the (transaction_id,
--     line_number) index grow at their right edge instead of at random pages.
--
-- Returns, per organization touched: organization_id, transactions, lines and
-- the sum of total_amount inserted.
WITH
cfg AS MATERIALIZED (
    SELECT array_length($11::uuid[], 1) / array_length($1::uuid[], 1) AS months_per_org,
           array_length($13::text[], 1)                                AS accounts_per_org,
           extract(year FROM $8::date)::int * 12
               + extract(month FROM $8::date)::int                     AS first_month
),
kind (kind_no, transaction_type, smart_code, code_prefix, line_family) AS (
    VALUES (1, 'SALE',             'HERA.SALON.POS.TXN.SALE',                 'POS',  'HERA.SALON.POS.GL'),
           (2, 'CUSTOMER_INVOICE', 'HERA.ACCOUNTING.AR.TXN.CUSTOMER_INVOICE', 'INV',  'HERA.ACCOUNTING.AR.GL'),
           (3, 'VENDOR_BILL',      'HERA.ACCOUNTING.AP.TXN.VENDOR_BILL',      'BILL', 'HERA.ACCOUNTING.AP.GL'),
           (4, 'JOURNAL_ENTRY',    'HERA.ACCOUNTING.GL.TXN.JOURNAL_ENTRY',    'JE',   'HERA.ACCOUNTING.GL.JOURNAL')
),
-- Slot 0 is line 1 (the total); line k >= 2 uses slot (k - 2) % 3 + 1.
slot AS MATERIALIZED (
    SELECT v.*, array_position($13::text[], v.account_code) AS account_no
    FROM (
        VALUES (1, 0, '1100', 'CASH',            'DR', false),
               (1, 1, '4100', 'REVENUE',         'CR', false),
               (1, 2, '2200', 'SALES_TAX',       'CR', true),
               (1, 3, '4200', 'PRODUCT_REVENUE', 'CR', false),
               (2, 0, '1200', 'RECEIVABLE',      'DR', false),
               (2, 1, '4100', 'REVENUE',         'CR', false),
               (2, 2, '2200', 'SALES_TAX',       'CR', true),
               (2, 3, '4200', 'PRODUCT_REVENUE', 'CR', false),
               (3, 0, '2100', 'PAYABLE',         'CR', false),
               (3, 1, '5100', 'SUPPLIES',        'DR', false),
               (3, 2, '1300', 'INVENTORY',       'DR', false),
               (3, 3, '5400', 'UTILITIES',       'DR', false),
               (4, 0, '1100', 'CASH',            'CR', false),
               (4, 1, '5300', 'SALARIES',        'DR', false),
               (4, 2, '5200', 'RENT',            'DR', false),
               (4, 3, '5400', 'UTILITIES',       'DR', false)
    ) AS v (kind_no, slot_no, account_code, role, side, is_tax)
),
txn AS MATERIALIZED (
    SELECT s.g, s.org_no, s.n, s.key,
           ($15::text || lpad(to_hex(s.g), 12, '0'))::uuid AS id,
           CASE
               WHEN abs(hashint8extended(s.key | 1, $10::int8) % 100) < 40 THEN 1
               WHEN abs(hashint8extended(s.key | 1, $10::int8) % 100) < 65 THEN 2
               WHEN abs(hashint8extended(s.key | 1, $10::int8) % 100) < 85 THEN 3
               ELSE 4
           END AS kind_no,
           $8::date + abs(hashint8extended(s.key | 2, $10::int8) % ($9::date - $8::date + 1))::int
               AS day,
           -- Business hours, 08:00 to 20:00 UTC.
           28800 + abs(hashint8extended(s.key | 3, $10::int8) % 43200)::int AS secs,
           -- About 1 in 50 carries the upper-case version suffix, as real data does.
           CASE WHEN hashint8extended(s.key | 4, $10::int8) % 50 = 0 THEN '.V1' ELSE '.v1' END
               AS version,
           -- About 1 in 10 leaves fiscal_period_entity_id null.
           hashint8extended(s.key | 5, $10::int8) % 10 = 0 AS no_period
    FROM (
        SELECT g, g / $6::int8 + 1 AS org_no, g % $6::int8 + 1 AS n,
               ((g / $6::int8 + 1) << 40) | ((g % $6::int8 + 1) << 12) AS key
        FROM generate_series($4::int8, $5::int8) AS g
    ) s
),
-- Each transaction with the quantities, unit amounts and amounts of its
-- lines 2..L (as arrays, index 1 = line 2) and their sum.
priced AS MATERIALIZED (
    SELECT t.*, a.quantities, a.unit_amounts, a.amounts, a.total
    FROM txn t
    CROSS JOIN LATERAL (
        SELECT array_agg(x.quantity ORDER BY k)                 AS quantities,
               array_agg(x.unit_amount ORDER BY k)              AS unit_amounts,
               array_agg(x.quantity * x.unit_amount ORDER BY k) AS amounts,
               sum(x.quantity * x.unit_amount)                  AS total
        FROM generate_series(2, $7::int) AS k
        JOIN slot sl ON sl.kind_no = t.kind_no AND sl.slot_no = (k - 2) % 3 + 1
        CROSS JOIN LATERAL (
            SELECT CASE WHEN sl.is_tax THEN 1
                        ELSE 1 + abs(hashint8extended(t.key | (k::int8 << 6) | 6, $10::int8) % 4)::int
                   END AS quantity,
                   CASE WHEN sl.is_tax
                        -- 8.25% of a 10.00 .. 999.99 base: 0.83 .. 82.50
                        THEN round((1000 + abs(hashint8extended(t.key | (k::int8 << 6) | 7, $10::int8) % 99000))
                                   * 0.000825, 2)
                        -- 5.00 .. 499.99
                        ELSE (500 + abs(hashint8extended(t.key | (k::int8 << 6) | 7, $10::int8) % 49500)) * 0.01
                   END AS unit_amount
        ) x
    ) a
),
ins_header AS (
    INSERT INTO universal_transactions
        (id, organization_id, transaction_type, transaction_code, transaction_date, total_amount,
         transaction_status, smart_code, business_context, metadata, fiscal_period_entity_id,
         fiscal_year, fiscal_period, posting_period_code, transaction_currency_code,
         created_by, updated_by)
    SELECT p.id, ($1::uuid[])[p.org_no], kind.transaction_type,
           kind.code_prefix || '-' || $3::text || '-' || lpad(p.org_no::text, 4, '0') || '-'
               || lpad(p.n::text, 9, '0'),
           p.day::timestamp AT TIME ZONE 'UTC' + p.secs * interval '1 second',
           p.total, 'posted', kind.smart_code || p.version,
           jsonb_build_object('source', 'hera-migrate seed-demo'),
           jsonb_build_object('seeded', true, 'seed', $10::int8, 'run_tag', $3::text,
                              'sequence', p.n),
           CASE WHEN NOT p.no_period
                THEN ($11::uuid[])[(p.org_no - 1) * cfg.months_per_org + m.month_no]
           END,
           m.fiscal_year, m.fiscal_period, to_char(p.day, 'YYYY-MM'), 'USD',
           ($2::uuid[])[p.org_no], ($2::uuid[])[p.org_no]
    FROM priced p
    CROSS JOIN cfg
    JOIN kind ON kind.kind_no = p.kind_no
    CROSS JOIN LATERAL (
        SELECT extract(year FROM p.day)::int  AS fiscal_year,
               extract(month FROM p.day)::int AS fiscal_period,
               extract(year FROM p.day)::int * 12 + extract(month FROM p.day)::int
                   - cfg.first_month + 1      AS month_no
    ) m
    RETURNING organization_id, total_amount
),
ins_line AS (
    INSERT INTO universal_transaction_lines
        (id, organization_id, transaction_id, line_number, entity_id, line_type, description,
         quantity, unit_amount, line_amount, smart_code, line_data, created_by, updated_by)
    SELECT ($16::text || lpad(to_hex(p.g * 64 + l.line_number), 12, '0'))::uuid,
           ($1::uuid[])[p.org_no], p.id, l.line_number,
           ($12::uuid[])[(p.org_no - 1) * cfg.accounts_per_org + sl.account_no], 'GL',
           ($14::text[])[sl.account_no],
           l.quantity, l.unit_amount, l.line_amount,
           kind.line_family || '.' || sl.role || p.version,
           jsonb_build_object('side', sl.side, 'account_code', sl.account_code),
           ($2::uuid[])[p.org_no], ($2::uuid[])[p.org_no]
    FROM priced p
    CROSS JOIN cfg
    JOIN kind ON kind.kind_no = p.kind_no
    CROSS JOIN LATERAL (
        SELECT 1 AS line_number, 0 AS slot_no, 1 AS quantity,
               p.total AS unit_amount, p.total AS line_amount
        UNION ALL
        SELECT i + 1, (i - 1) % 3 + 1, p.quantities[i], p.unit_amounts[i], p.amounts[i]
        FROM generate_subscripts(p.amounts, 1) AS i
    ) l
    JOIN slot sl ON sl.kind_no = p.kind_no AND sl.slot_no = l.slot_no
    RETURNING organization_id
),
header_count AS (
    SELECT organization_id, count(*) AS transactions, sum(total_amount) AS amount
    FROM ins_header
    GROUP BY organization_id
),
line_count AS (
    SELECT organization_id, count(*) AS lines
    FROM ins_line
    GROUP BY organization_id
)
SELECT h.organization_id          AS organization_id,
       h.transactions::int8       AS transactions,
       coalesce(l.lines, 0)::int8 AS lines,
       h.amount::numeric(20, 2)   AS amount
FROM header_count h
LEFT JOIN line_count l USING (organization_id)
