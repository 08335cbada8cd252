"""reviewpacks_scrub(jsonb, ...): the redaction rules of domain/redaction.py, inside PostgreSQL.

The COPY export path cannot call Python per row, so the rules run in the query.
The patterns are parameters, passed from domain/redaction.py on every call, so
the two implementations cannot drift apart in what they match; a parity test
checks they also agree in what they produce. SQLite has no such function: the
embedded default exports through the Python path.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION reviewpacks_mask(value jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
    CASE jsonb_typeof(value)
    WHEN 'object' THEN
        RETURN coalesce((SELECT jsonb_object_agg(key, reviewpacks_mask(val)) FROM jsonb_each(value) AS e(key, val)), '{}'::jsonb);
    WHEN 'array' THEN
        RETURN coalesce((SELECT jsonb_agg(reviewpacks_mask(val) ORDER BY ord) FROM jsonb_array_elements(value) WITH ORDINALITY AS e(val, ord)), '[]'::jsonb);
    WHEN 'null' THEN
        RETURN value;
    ELSE
        RETURN to_jsonb('[redacted]'::text);
    END CASE;
END
$fn$;

CREATE OR REPLACE FUNCTION reviewpacks_scrub(
    value jsonb, include_pii boolean, secret_re text, pii_re text, email_re text
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result jsonb;
    k text;
    v jsonb;
    name text;
    candidate text;
    n int;
BEGIN
    CASE jsonb_typeof(value)
    WHEN 'object' THEN
        result := '{}'::jsonb;
        -- jsonb_each walks keys in jsonb's own order, the order Python sees after decoding.
        FOR k, v IN SELECT key, val FROM jsonb_each(value) AS e(key, val) LOOP
            name := k;
            IF NOT include_pii THEN
                name := regexp_replace(k, email_re, '[redacted]', 'g');
                candidate := name;
                n := 2;
                WHILE result ? candidate LOOP
                    candidate := name || ' #' || n;
                    n := n + 1;
                END LOOP;
                name := candidate;
            END IF;
            IF k ~* secret_re AND jsonb_typeof(v) NOT IN ('null', 'boolean') THEN
                result := result || jsonb_build_object(name, '[removed]');
            ELSIF NOT include_pii AND k ~* pii_re THEN
                result := result || jsonb_build_object(name, reviewpacks_mask(v));
            ELSE
                result := result || jsonb_build_object(name, reviewpacks_scrub(v, include_pii, secret_re, pii_re, email_re));
            END IF;
        END LOOP;
        RETURN result;
    WHEN 'array' THEN
        RETURN coalesce(
            (SELECT jsonb_agg(reviewpacks_scrub(val, include_pii, secret_re, pii_re, email_re) ORDER BY ord)
             FROM jsonb_array_elements(value) WITH ORDINALITY AS e(val, ord)),
            '[]'::jsonb);
    WHEN 'string' THEN
        IF include_pii THEN
            RETURN value;
        END IF;
        RETURN to_jsonb(regexp_replace(value #>> '{}', email_re, '[redacted]', 'g'));
    ELSE
        RETURN value;
    END CASE;
END
$fn$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_scrub(jsonb, boolean, text, text, text)")
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_mask(jsonb)")
