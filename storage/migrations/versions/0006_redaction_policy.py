"""reviewpacks_redact_json(jsonb, policy): domain/redaction.py's policy, inside PostgreSQL, set-based.

The COPY export path cannot call Python per row, so the policy runs in the
query. Every pattern, list and placeholder arrives in one ``reviewpacks_policy``
value built from domain/redaction.py on each export (storage/export.py), so
the two implementations cannot drift apart in what they match; the parity
tests check they also agree in what they produce.

Each object is rebuilt in one set-based pass: ``jsonb_each`` with its ordinal,
keys renamed, collisions numbered with ``row_number()`` in that order, and one
``jsonb_object_agg``. Revision 0003 rebuilt objects key by key with ``||``,
which copies the growing object each time (20,000 keys took seconds). A depth
limit raises SQLSTATE RP001 before PostgreSQL's stack limit is reached, so
deep input fails as invalid source data instead of looking like an outage.
0003's functions are left in place for a downgrade.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FUNCTIONS = r"""
CREATE TYPE reviewpacks_policy AS (
    include_pii boolean,
    max_depth integer,
    cell_keep integer,
    cell_marker text,
    key_camel text,
    key_separator text,
    secret_key_parts text[],
    secret_key_last_parts text[],
    secret_key_pieces text[],
    weak_secret_keys text[],
    credential text,
    person_keys text[],
    person_key_last_parts text[],
    safe_keys text[],
    safe_key_last_parts text[],
    safe_value text,
    safe_values text[],
    uuid text,
    secret_patterns text[],
    secret_replacements text[],
    pii_patterns text[],
    pii_replacements text[],
    secret_placeholder text,
    person_placeholder text,
    text_placeholder text,
    secret_chars text,
    secret_value_hints text[],
    pii_hints text[],
    pii_any text
);

-- Small SQL functions are inlined into the queries that call them; only texts that hold a hint
-- reach the PL/pgSQL loop over the patterns.
CREATE FUNCTION reviewpacks_cut(t text, p reviewpacks_policy) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN length(t) > p.cell_keep + length(p.cell_marker) THEN left(t, p.cell_keep) || p.cell_marker ELSE t END
$fn$;

CREATE FUNCTION reviewpacks_normal_key(k text, p reviewpacks_policy) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    -- A key with no upper-case letter has no camelCase to split.
    SELECT lower(btrim(regexp_replace(
        CASE WHEN k = lower(k) THEN k ELSE regexp_replace(k, p.key_camel, '\1_\2', 'g') END,
        p.key_separator, '_', 'g'), '_'))
$fn$;

CREATE FUNCTION reviewpacks_redact_text(t text, p reviewpacks_policy) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    IF t ~ p.secret_chars OR t LIKE ANY(p.secret_value_hints) THEN
        FOR i IN 1 .. coalesce(array_length(p.secret_patterns, 1), 0) LOOP
            t := regexp_replace(t, p.secret_patterns[i], p.secret_replacements[i], 'g');
        END LOOP;
    END IF;
    IF NOT p.include_pii THEN
        FOR i IN 1 .. coalesce(array_length(p.pii_patterns, 1), 0) LOOP
            IF t ~ p.pii_hints[i] THEN
                t := regexp_replace(t, p.pii_patterns[i], p.pii_replacements[i], 'g');
            END IF;
        END LOOP;
    END IF;
    RETURN t;
END
$fn$;

CREATE FUNCTION reviewpacks_scan(t text, p reviewpacks_policy) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN t ~ p.secret_chars OR t LIKE ANY(p.secret_value_hints) OR (NOT p.include_pii AND t ~ p.pii_any)
                THEN reviewpacks_redact_text(t, p) ELSE t END
$fn$;

CREATE FUNCTION reviewpacks_redact_json(
    value jsonb, p reviewpacks_policy, parent text, masked boolean, depth integer
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    t text;
BEGIN
    IF depth > p.max_depth THEN
        RAISE EXCEPTION 'a JSON value is nested deeper than % levels', p.max_depth USING ERRCODE = 'RP001';
    END IF;
    CASE jsonb_typeof(value)
    WHEN 'object' THEN
        -- One pass over the members: keys normalised and classified, scalars settled here,
        -- containers recursed into; keys that became equal numbered in their original order.
        RETURN (
            SELECT coalesce(
                jsonb_object_agg(CASE WHEN n = 1 THEN name ELSE name || ' #' || n END, item ORDER BY ord),
                '{}'::jsonb)
            FROM (
                SELECT ord, name, item, row_number() OVER (PARTITION BY name ORDER BY ord) AS n
                FROM (
                    SELECT e.ord,
                           reviewpacks_scan(reviewpacks_cut(e.key, p), p) AS name,
                           CASE
                           WHEN a.typ IN ('null', 'boolean') AND depth < p.max_depth THEN e.val
                           WHEN a.typ NOT IN ('null', 'boolean') AND (
                               b.parts && p.secret_key_parts
                               OR (c.n > 1 AND b.parts[c.n] = ANY(p.secret_key_last_parts))
                               OR a.k LIKE ANY(p.secret_key_pieces)) THEN to_jsonb(p.secret_placeholder)
                           WHEN a.typ = 'string' AND a.k = ANY(p.weak_secret_keys)
                               AND (e.val #>> '{}') ~ p.credential AND (e.val #>> '{}') ~ '[0-9]'
                               THEN to_jsonb(p.secret_placeholder)
                           WHEN a.typ = 'number' AND depth < p.max_depth THEN
                               CASE WHEN masked OR d.person THEN to_jsonb(p.person_placeholder) ELSE e.val END
                           WHEN a.typ = 'string' AND depth < p.max_depth THEN to_jsonb(CASE
                               WHEN p.include_pii THEN reviewpacks_scan(f.t, p)
                               WHEN masked OR d.person THEN
                                   CASE WHEN f.t = '' OR f.t ~ p.uuid THEN f.t ELSE p.person_placeholder END
                               WHEN f.t ~ p.safe_value
                                   OR (octet_length(f.t) = length(f.t) AND lower(f.t) = ANY(p.safe_values))
                                   OR a.k = ANY(p.safe_keys)
                                   OR (c.n > 1 AND b.parts[c.n] = ANY(p.safe_key_last_parts))
                                   THEN reviewpacks_scan(f.t, p)
                               ELSE p.text_placeholder END)
                           ELSE reviewpacks_redact_json(e.val, p, a.k, masked OR d.person, depth + 1)
                           END AS item
                    FROM jsonb_each(value) WITH ORDINALITY AS e(key, val, ord)
                    CROSS JOIN LATERAL (SELECT jsonb_typeof(e.val) AS typ, reviewpacks_normal_key(e.key, p) AS k) AS a
                    CROSS JOIN LATERAL (SELECT string_to_array(a.k, '_') AS parts) AS b
                    CROSS JOIN LATERAL (SELECT coalesce(array_length(b.parts, 1), 0) AS n) AS c
                    CROSS JOIN LATERAL (
                        SELECT NOT p.include_pii AND c.n > 0 AND (
                            ARRAY[b.parts[c.n], array_to_string(b.parts[c.n - 1:c.n], '_'),
                                  array_to_string(b.parts[c.n - 2:c.n], '_')] && p.person_keys
                            OR (c.n > 1 AND b.parts[c.n] = ANY(p.person_key_last_parts))) AS person
                    ) AS d
                    CROSS JOIN LATERAL (
                        SELECT CASE WHEN a.typ = 'string' THEN reviewpacks_cut(e.val #>> '{}', p) END AS t
                    ) AS f
                ) AS named
            ) AS numbered
        );
    WHEN 'array' THEN
        RETURN coalesce(
            (SELECT jsonb_agg(reviewpacks_redact_json(e.val, p, parent, masked, depth + 1) ORDER BY e.ord)
             FROM jsonb_array_elements(value) WITH ORDINALITY AS e(val, ord)),
            '[]'::jsonb);
    WHEN 'string' THEN
        t := reviewpacks_cut(value #>> '{}', p);
        IF p.include_pii THEN
            RETURN to_jsonb(reviewpacks_scan(t, p));
        END IF;
        IF masked THEN
            RETURN CASE WHEN t = '' OR t ~ p.uuid THEN to_jsonb(t) ELSE to_jsonb(p.person_placeholder) END;
        END IF;
        IF t ~ p.safe_value
           OR (octet_length(t) = length(t) AND lower(t) = ANY(p.safe_values))
           OR parent = ANY(p.safe_keys)
           OR (strpos(parent, '_') > 0 AND reverse(split_part(reverse(parent), '_', 1)) = ANY(p.safe_key_last_parts)) THEN
            RETURN to_jsonb(reviewpacks_scan(t, p));
        END IF;
        RETURN to_jsonb(p.text_placeholder);
    WHEN 'number' THEN
        IF masked AND NOT p.include_pii THEN
            RETURN to_jsonb(p.person_placeholder);
        END IF;
        RETURN value;
    ELSE
        RETURN value;
    END CASE;
END
$fn$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTIONS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_redact_json(jsonb, reviewpacks_policy, text, boolean, integer)")
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_scan(text, reviewpacks_policy)")
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_redact_text(text, reviewpacks_policy)")
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_normal_key(text, reviewpacks_policy)")
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_cut(text, reviewpacks_policy)")
        op.execute("DROP TYPE IF EXISTS reviewpacks_policy")
