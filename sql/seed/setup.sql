-- seed-demo, step 1 of 2: everything but the transactions, in one statement
-- (so it is atomic): the platform organization with its system user, then per
-- demo organization its core_organizations row, its ORGANIZATION entity,
-- three users (USER entities in the platform organization, each a MEMBER_OF
-- relationship into the demo organization), its chart of GL_ACCOUNT entities
-- and one FISCAL_PERIOD entity per calendar month of [date_from, date_to].
--
-- Only the columns of sql/schema/tables.sql are written, always by name.
-- Ids come from gen_random_uuid() in MATERIALIZED CTEs (computed once).
-- Names are picked by hashint8extended(key, seed), never random(), so a seed
-- gives the same names; codes carry the run tag so re-runs never collide.
--
-- $1 run tag (text), $2 organizations (int), $3 date_from, $4 date_to (date),
-- $5 seed (int8).
--
-- Returns one row per demo organization, in order, with its users, GL
-- accounts (by code) and fiscal periods (by month) as JSON arrays.
WITH
params AS MATERIALIZED (
    SELECT $1::text            AS tag,
           $2::int             AS org_count,
           $3::date            AS date_from,
           $4::date            AS date_to,
           $5::int8            AS seed,
           gen_random_uuid()   AS platform_org_id,
           gen_random_uuid()   AS system_user_id,
           least(now(), $3::date::timestamptz) AS member_since
),
org AS MATERIALIZED (
    SELECT i                 AS org_no,
           gen_random_uuid() AS id,
           gen_random_uuid() AS entity_id,
           format('HERA-DEMO-%s-%s', p.tag, lpad(i::text, 4, '0')) AS code,
           format('%s %s %s',
                  (ARRAY['Aurora', 'Bellevue', 'Cedar', 'Dahlia', 'Ember', 'Fern',
                         'Gilded', 'Harbor', 'Iris', 'Juniper', 'Kestrel', 'Lumen',
                         'Marigold', 'Nova', 'Opal', 'Pearl', 'Quartz', 'Rosewood',
                         'Sage', 'Tulip', 'Umber', 'Velvet', 'Willow', 'Zinnia'])
                      [1 + abs(hashint8extended(i::int8 << 8 | 1, p.seed) % 24)],
                  (ARRAY['Salon', 'Salon & Spa', 'Beauty Studio', 'Hair Lounge',
                         'Day Spa', 'Barbers'])
                      [1 + abs(hashint8extended(i::int8 << 8 | 2, p.seed) % 6)],
                  lpad(i::text, 4, '0')) AS name
    FROM params p
    CROSS JOIN generate_series(1, p.org_count) AS i
),
member_role (role_no, role_key, role, title) AS (
    VALUES (1, 'owner',         'ORG_OWNER',    'Owner'),
           (2, 'finance_admin', 'ORG_ADMIN',    'Finance Admin'),
           (3, 'staff',         'ORG_EMPLOYEE', 'Staff')
),
app_user AS MATERIALIZED (
    SELECT o.org_no,
           o.id              AS org_id,
           o.entity_id       AS org_entity_id,
           r.role_no, r.role_key, r.role, r.title,
           gen_random_uuid() AS id,
           n.first_name || ' ' || n.last_name AS name,
           lower(format('%s.%s.%s@demo.hera.local', r.role_key, lpad(o.org_no::text, 4, '0'), p.tag))
               AS email
    FROM org o
    CROSS JOIN member_role r
    CROSS JOIN params p
    CROSS JOIN LATERAL (
        SELECT (ARRAY['Olivia', 'Liam', 'Amara', 'Noah', 'Priya', 'Mateo', 'Sofia', 'Kenji',
                      'Leila', 'Omar', 'Hannah', 'Diego', 'Chloe', 'Arjun', 'Maya', 'Lucas'])
                   [1 + abs(hashint8extended(o.org_no::int8 << 8 | 16 | r.role_no, p.seed) % 16)]
                   AS first_name,
               (ARRAY['Smith', 'Garcia', 'Nguyen', 'Okafor', 'Rossi', 'Kim', 'Patel', 'Silva',
                      'Haddad', 'Novak', 'Tanaka', 'Moreau', 'Jensen', 'Costa', 'Khan', 'Ward'])
                   [1 + abs(hashint8extended(o.org_no::int8 << 8 | 32 | r.role_no, p.seed) % 16)]
                   AS last_name
    ) n
),
chart (account_code, account_name, account_type, normal_balance) AS (
    VALUES ('1100', 'Cash',                 'ASSET',     'DR'),
           ('1200', 'Accounts Receivable',  'ASSET',     'DR'),
           ('1300', 'Inventory',            'ASSET',     'DR'),
           ('1500', 'Equipment',            'ASSET',     'DR'),
           ('2100', 'Accounts Payable',     'LIABILITY', 'CR'),
           ('2200', 'Sales Tax Payable',    'LIABILITY', 'CR'),
           ('3100', 'Owner''s Equity',      'EQUITY',    'CR'),
           ('4100', 'Service Revenue',      'REVENUE',   'CR'),
           ('4200', 'Product Revenue',      'REVENUE',   'CR'),
           ('5100', 'Supplies Expense',     'EXPENSE',   'DR'),
           ('5200', 'Rent Expense',         'EXPENSE',   'DR'),
           ('5300', 'Salaries Expense',     'EXPENSE',   'DR'),
           ('5400', 'Utilities Expense',    'EXPENSE',   'DR')
),
account AS MATERIALIZED (
    SELECT o.org_no, o.id AS org_id, gen_random_uuid() AS id, c.*
    FROM org o
    CROSS JOIN chart c
),
month AS (
    SELECT row_number() OVER (ORDER BY s) AS month_no,
           count(*) OVER ()               AS month_count,
           s::date                        AS start_date,
           (s + interval '1 month' - interval '1 day')::date AS end_date
    FROM params p
    CROSS JOIN generate_series(date_trunc('month', p.date_from::timestamp),
                               date_trunc('month', p.date_to::timestamp),
                               interval '1 month') AS s
),
-- The earliest half of the months (at least one) is CLOSED, the month after
-- them LOCKED when at least one month stays OPEN after it, the rest OPEN.
month_status AS (
    SELECT m.*,
           CASE
               WHEN m.month_no <= greatest(1, m.month_count / 2) THEN 'CLOSED'
               WHEN m.month_no = greatest(1, m.month_count / 2) + 1
                    AND m.month_count - greatest(1, m.month_count / 2) >= 2 THEN 'LOCKED'
               ELSE 'OPEN'
           END AS status
    FROM month m
),
period AS MATERIALIZED (
    SELECT o.org_no, o.id AS org_id, gen_random_uuid() AS id,
           m.month_no, m.start_date, m.end_date, m.status,
           to_char(m.start_date, 'YYYY-MM') AS period_code
    FROM org o
    CROSS JOIN month_status m
),
ins_platform AS (
    INSERT INTO core_organizations
        (id, organization_name, organization_code, organization_type, settings, status,
         created_by, updated_by)
    SELECT p.platform_org_id, 'HERA Platform (demo ' || p.tag || ')', 'HERA-PLATFORM-' || p.tag,
           'platform', jsonb_build_object('seeded', true, 'seed', p.seed, 'run_tag', p.tag),
           'active', p.system_user_id, p.system_user_id
    FROM params p
),
ins_org AS (
    INSERT INTO core_organizations
        (id, organization_name, organization_code, organization_type, settings, status,
         created_by, updated_by)
    SELECT o.id, o.name, o.code, 'business',
           jsonb_build_object('seeded', true, 'seed', p.seed, 'run_tag', p.tag,
                              'base_currency', 'USD', 'fiscal_year_start_month', 1,
                              'industry', 'salon'),
           'active', p.system_user_id, p.system_user_id
    FROM org o
    CROSS JOIN params p
),
ins_entity AS (
    INSERT INTO core_entities
        (id, organization_id, entity_type, entity_name, entity_code, smart_code, metadata, status,
         created_by, updated_by)
    -- The system user: created_by of the seed's own rows, itself included.
    SELECT p.system_user_id, p.platform_org_id, 'USER', 'HERA Seed System', 'system.seed.' || lower(p.tag),
           'HERA.PLATFORM.USER.ENTITY.SYSTEM.v1',
           jsonb_build_object('system', true, 'seeded', true, 'run_tag', p.tag),
           'active', p.system_user_id, p.system_user_id
    FROM params p
    UNION ALL
    SELECT o.entity_id, o.id, 'ORGANIZATION', o.name, o.code,
           'HERA.UNIVERSAL.ORG.ENTITY.ORGANIZATION.v1',
           jsonb_build_object('seeded', true, 'run_tag', p.tag),
           'active', p.system_user_id, p.system_user_id
    FROM org o
    CROSS JOIN params p
    UNION ALL
    SELECT u.id, p.platform_org_id, 'USER', u.name, u.email,
           'HERA.PLATFORM.USER.ENTITY.PERSON.v1',
           jsonb_build_object('email', u.email, 'title', u.title, 'seeded', true, 'run_tag', p.tag),
           'active', p.system_user_id, p.system_user_id
    FROM app_user u
    CROSS JOIN params p
    UNION ALL
    SELECT a.id, a.org_id, 'GL_ACCOUNT', a.account_name, a.account_code,
           'HERA.ACCOUNTING.GL.ACCOUNT.' || a.account_type || '.v1',
           jsonb_build_object('account_code', a.account_code, 'account_type', a.account_type,
                              'normal_balance', a.normal_balance, 'seeded', true),
           'active', p.system_user_id, p.system_user_id
    FROM account a
    CROSS JOIN params p
    UNION ALL
    SELECT f.id, f.org_id, 'FISCAL_PERIOD', 'Fiscal period ' || f.period_code, 'FP-' || f.period_code,
           'HERA.ACCOUNTING.FISCAL.PERIOD.MONTH.v1',
           jsonb_build_object('period_code', f.period_code,
                              'start_date', to_char(f.start_date, 'YYYY-MM-DD'),
                              'end_date', to_char(f.end_date, 'YYYY-MM-DD'),
                              'status', f.status,
                              'fiscal_year', extract(year FROM f.start_date)::int,
                              'fiscal_period', extract(month FROM f.start_date)::int,
                              'seeded', true),
           'active', p.system_user_id, p.system_user_id
    FROM period f
    CROSS JOIN params p
),
ins_membership AS (
    INSERT INTO core_relationships
        (organization_id, from_entity_id, to_entity_id, relationship_type, relationship_data,
         smart_code, is_active, effective_date, created_by, updated_by)
    SELECT u.org_id, u.id, u.org_entity_id, 'MEMBER_OF', jsonb_build_object('role', u.role),
           'HERA.UNIVERSAL.REL.MEMBER.OF.v1', true, p.member_since,
           p.system_user_id, p.system_user_id
    FROM app_user u
    CROSS JOIN params p
),
user_json AS (
    SELECT u.org_no,
           jsonb_agg(jsonb_build_object('id', u.id, 'name', u.name, 'email', u.email,
                                        'role', u.role, 'role_key', u.role_key)
                     ORDER BY u.role_no) AS users,
           (array_agg(u.id ORDER BY u.role_no))[1] AS owner_id
    FROM app_user u
    GROUP BY u.org_no
),
account_json AS (
    SELECT a.org_no,
           jsonb_agg(jsonb_build_object('id', a.id, 'code', a.account_code, 'name', a.account_name,
                                        'account_type', a.account_type)
                     ORDER BY a.account_code) AS accounts
    FROM account a
    GROUP BY a.org_no
),
period_json AS (
    SELECT f.org_no,
           jsonb_agg(jsonb_build_object('id', f.id, 'period_code', f.period_code,
                                        'start_date', f.start_date, 'end_date', f.end_date,
                                        'status', f.status)
                     ORDER BY f.month_no) AS periods
    FROM period f
    GROUP BY f.org_no
)
SELECT o.org_no::int8                          AS org_no,
       o.id                                    AS id,
       o.code                                  AS code,
       o.name                                  AS name,
       o.entity_id                             AS entity_id,
       uj.owner_id                             AS owner_id,
       uj.users                                AS users,
       pj.periods                              AS periods,
       aj.accounts                             AS accounts,
       p.platform_org_id                       AS platform_org_id,
       'HERA-PLATFORM-' || p.tag               AS platform_code,
       p.system_user_id                        AS system_user_id
FROM org o
CROSS JOIN params p
JOIN user_json uj USING (org_no)
JOIN period_json pj USING (org_no)
JOIN account_json aj USING (org_no)
ORDER BY o.org_no
