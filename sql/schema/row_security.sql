-- Row-level security, only in a schema hera-migrate owns. The service works as
-- hera_migrate_app, a role that does not bypass RLS and sees only the
-- organization its transaction names in app.current_org; so a query that
-- forgets its organization filter still cannot cross organizations.
CREATE OR REPLACE FUNCTION hera_current_org()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.current_org', true), '')::uuid $$;

DO $$
BEGIN
    CREATE ROLE hera_migrate_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database of this cluster created it first
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    IF NOT pg_has_role(current_user, 'hera_migrate_app', 'MEMBER') THEN
        EXECUTE format('GRANT hera_migrate_app TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hera_migrate_app', current_schema());
    FOREACH t IN ARRAY ARRAY['core_organizations', 'core_entities', 'core_dynamic_data',
                             'core_relationships', 'universal_transactions',
                             'universal_transaction_lines']
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO hera_migrate_app', t);
        -- Only when off: ALTER TABLE takes an ACCESS EXCLUSIVE lock, which
        -- would stop the business (and deadlock with a batch) at every start.
        IF NOT (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = t::regclass) THEN
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policy
                        WHERE polname = 'hera_migrate_org_isolation'
                          AND polrelid = t::regclass) THEN
            EXECUTE format(
                'CREATE POLICY hera_migrate_org_isolation ON %I
                     USING (%2$s = hera_current_org())
                     WITH CHECK (%2$s = hera_current_org())',
                t, CASE t WHEN 'core_organizations' THEN 'id' ELSE 'organization_id' END);
        END IF;
    END LOOP;
END;
$$;
