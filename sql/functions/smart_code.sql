-- HERA's smart-code rule: the code matches
--   ^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$
-- after upper-casing all but the version suffix, whose "v" may be either case
-- (real data holds both .v1 and .V1).
CREATE OR REPLACE FUNCTION hera_smart_code_is_valid(p_code text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_code IS NOT NULL
       AND upper(regexp_replace(p_code, '\.[vV][0-9]+$', ''))
           || substring(p_code FROM '\.[vV][0-9]+$')
           ~ '^HERA\.[A-Z0-9]{3,15}(\.[A-Z0-9_]{2,30}){3,8}\.[vV][0-9]+$'
$$;

-- The version suffix of a smart code, lower-cased ("v1" for both .v1 and .V1).
CREATE OR REPLACE FUNCTION hera_smart_code_version(p_code text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT lower(substring(p_code FROM '\.([vV][0-9]+)$'))
$$;
