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

-- The form smart codes are compared in: all but the version suffix upper-cased,
-- the suffix lower-cased ("HERA.SALON.POS.TXN.SALE.V1" -> "...SALE.v1").
CREATE OR REPLACE FUNCTION hera_smart_code_normalize(p_code text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT upper(regexp_replace(p_code, '\.[vV][0-9]+$', ''))
           || coalesce(lower(substring(p_code FROM '\.[vV][0-9]+$')), '')
$$;

-- The same code at another version: ("HERA.X.Y.Z.W.v1", 2) -> "HERA.X.Y.Z.W.v2".
CREATE OR REPLACE FUNCTION hera_smart_code_at_version(p_code text, p_version integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT upper(regexp_replace(p_code, '\.[vV][0-9]+$', '')) || '.v' || p_version
$$;

-- Whether a code is at version 1 (either case): a cheap test for hot scans.
CREATE OR REPLACE FUNCTION hera_smart_code_is_v1(p_code text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT lower(right(p_code, 3)) = '.v1'
$$;
