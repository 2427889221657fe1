-- HERA's smart-code rule: the code matches
--   ^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$
-- after upper-casing all but the version suffix, whose "v" may be either case
-- (real data holds both .v1 and .V1). Written as three cheap tests rather than
-- the pattern itself, whose bounded repetitions cost PostgreSQL's regex engine
-- several times more on every inserted row: segments of 2+ characters, 6 to 11
-- dot-separated parts (HERA, the module, 3 to 8 segments, the version), and no
-- part longer than 30. Never NULL, so a CHECK on it cannot be slipped past.
CREATE OR REPLACE FUNCTION hera_smart_code_is_valid(p_code text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
        upper(p_code) ~ '^HERA\.[A-Z0-9]{3,15}(\.[A-Z0-9_][A-Z0-9_]+)+\.V[0-9]+$'
        AND array_length(string_to_array(p_code, '.'), 1) BETWEEN 6 AND 11
        AND p_code !~ '[^.]{31}',
        false)
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
