"""The SCD type 2 merge procedures, rendered from the model (`model.SCD2_DIMS`).

One shape serves every SCD2 dimension, so it is written once, here, and rendered per
dimension into `sql/scd2.sql` (committed, like the DDL; `python -m pipeline.warehouse.ddl`
rewrites it and a unit test fails when it drifts). `warehouse init` applies it after
procedures.sql.

Per key of staging, a merge does this:

- new key: a first version, valid from 0001-01-01 (it covers every earlier order);
- a tracked attribute changed by a change *later in the binlog* than the one that opened the
  current version (`change_seq`): the current version is closed where the next one opens,
  when the change took effect. That is its `updated_at` when it agrees with its commit time
  (the database's `ON UPDATE`, within `UPDATED_AT_SLACK_S`), else its commit time, with a
  warning: an application may leave `updated_at` as it was (`SET city = ..., updated_at =
  updated_at`), set it back or ahead, and an `ALTER TABLE` changes rows without touching it,
  and none of that may move a version away from when the log says it changed. A version is
  never overwritten, and a change that would not start after the current version's start
  opens a microsecond after it, with a warning; so no history is lost;
- staging older in the binlog than the current version (a restored silver, say): left as
  it is, with a warning;
- gone from staging: the current version is closed at load time (deleted at the source);
- back after a deletion: a new version from max(updated_at, the last version's end).

A staging table that holds another bronze full load (`sales.load_state.generation`) than the
dimension's versions (a re-snapshot: `shoplake cdc reset`, or LocalStack forgetting bronze)
rebuilds the dimension from it, as a fresh load would, with a warning: versions of an earlier
dataset never stay beside the new one.

Warnings are `RAISE WARNING`s; `warehouse.call` returns them and the run shows them.
"""

from __future__ import annotations

from pipeline.warehouse.model import FIRST_START, OPEN_END, SCD2_DIMS, SCHEMA, Scd2

HEADER = ("-- Generated from pipeline/warehouse/procedures.py and model.py by\n"
          "-- `python -m pipeline.warehouse.ddl`; edit those, not this file (a unit test fails\n"
          "-- when they drift). PostgreSQL 15 (the Redshift stand-in), PL/pgSQL.\n")

EXAMPLES = 3
"""Keys named in a warning; the warning counts all of them."""

UPDATED_AT_SLACK_S = 60
"""How long before its commit a change's `updated_at` may lie and still be when it took
effect (the statement ran that long before the transaction committed). The commit time the
binlog gives has whole seconds, so `updated_at` may lie up to 1 s after it too."""


def _hash_expr(dim: Scd2, prefix: str = "") -> str:
    """The call of the dimension's hash function on `prefix`-qualified attributes."""
    args = ", ".join(f"{prefix}{c.name}" for c in dim.attributes)
    return f"{SCHEMA}.{dim.hash_function}({args})"


def render_hash_function(dim: Scd2) -> str:
    # JSON keeps the encoding unambiguous: a NULL is `null`, never the string 'null', and no
    # separator can collide with a value. A numeric enters without trailing zeros
    # (trim_scale), so widening its scale (12.30 -> 12.3000) changes no hash.
    params = ", ".join(f"{c.name} {_pg_type(c.type)}" for c in dim.attributes)
    values = ", ".join(f"trim_scale({c.name})" if c.type.startswith("numeric") else c.name
                       for c in dim.attributes)
    return (f"-- md5 of the tracked attributes of a {dim.entity}.\n"
            f"CREATE OR REPLACE FUNCTION {SCHEMA}.{dim.hash_function}({params}) RETURNS text\n"
            "LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            f"AS $$ SELECT md5(json_build_array({values})::text) $$;\n")


def _pg_type(portable: str) -> str:
    kind = portable.split("(")[0]
    return {"string": "text", "ascii": "text", "int": "integer", "numeric": "numeric"
            }.get(kind, kind)


def render_procedure(dim: Scd2) -> str:
    d, stg, key, noun = f"{SCHEMA}.{dim.dim}", f"{SCHEMA}.{dim.staging}", dim.key, dim.entity
    attrs = [c.name for c in dim.attributes]
    cols = ", ".join(attrs)
    s_cols = ", ".join(f"s.{a}" for a in attrs)
    newer = "(d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)"
    changed = f"d.attr_hash <> {_hash_expr(dim, 's.')}"
    took_effect = f"{SCHEMA}.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts)"
    def examples(fmt: str, *args: str) -> str:
        return (f"string_agg(format('{noun} %s ({fmt})',\n"
                f"                             k, {', '.join(args)}), '; ' ORDER BY k)\n"
                f"               FILTER (WHERE rn <= {EXAMPLES})")
    return f"""\
-- SCD2 {noun}s on {', '.join(attrs)} (see pipeline/warehouse/procedures.py).
CREATE OR REPLACE PROCEDURE {SCHEMA}.{dim.procedure}(p_run_id text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_load_ts timestamp := now() AT TIME ZONE 'UTC';
    v_generation text;
    v_count bigint;
    v_other bigint;
    v_old text;
    v_examples text;
BEGIN
    -- Two loaders at once would both open versions; serialize them (readers are not blocked).
    LOCK TABLE {d} IN SHARE ROW EXCLUSIVE MODE;
    -- An empty staging table is a failed hand-off far more often than a source that lost
    -- every row; closing every version on it would be wrong and noisy to undo.
    IF NOT EXISTS (SELECT 1 FROM {stg})
       AND EXISTS (SELECT 1 FROM {d} WHERE is_current) THEN
        RAISE EXCEPTION 'staging table `{stg}` is empty; refusing to close every '
                        'current row of `{d}`'
            USING HINT = 'load staging before calling {dim.procedure}';
    END IF;

    -- Staging from another bronze full load than the versions: start over from it.
    SELECT generation INTO v_generation FROM {SCHEMA}.load_state WHERE staging = '{dim.staging}';
    IF v_generation IS NOT NULL THEN
        SELECT count(*), count(*) FILTER (WHERE generation IS NULL), max(generation)
        INTO v_count, v_other, v_old
        FROM {d} WHERE generation IS DISTINCT FROM v_generation;
        IF v_count > 0 THEN
            DELETE FROM {d};
            RAISE WARNING '`{d}` rebuilt from a new bronze full load (generation %): its % '
                          'version(s) came from %, so its SCD2 history starts afresh, as a '
                          'fresh load''s would',
                          v_generation, v_count,
                          CASE WHEN v_other = v_count THEN 'before generations were recorded'
                               ELSE 'an earlier load (generation ' || v_old || ')' END;
        END IF;
    END IF;

    -- Changes whose updated_at is not when they took effect: warned of, and opened at
    -- their commit time instead.
    SELECT count(*),
           {examples("updated_at %s, committed %s", "u", "c")}
    INTO v_count, v_examples
    FROM (SELECT s.{key} AS k, s.updated_at AS u, s.commit_ts AS c,
                 row_number() OVER (ORDER BY s.{key}) AS rn
          FROM {stg} AS s JOIN {d} AS d ON d.{key} = s.{key} AND d.is_current
          WHERE {changed}
            AND {newer}
            AND s.commit_ts IS NOT NULL
            AND {took_effect} = s.commit_ts
            AND s.updated_at IS DISTINCT FROM s.commit_ts) AS off;
    IF v_count > 0 THEN
        RAISE WARNING '% {noun} change(s) carry an updated_at that is not when they were '
                      'committed: %; each new version starts at the commit time the binlog '
                      'gives', v_count, v_examples;
    END IF;
    -- Changes that would not start after the version they replace: opened just after it.
    SELECT count(*),
           {examples("took effect %s, current version from %s", "u", "st")}
    INTO v_count, v_examples
    FROM (SELECT s.{key} AS k, {took_effect} AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.{key}) AS rn
          FROM {stg} AS s JOIN {d} AS d ON d.{key} = s.{key} AND d.is_current
          WHERE {changed}
            AND {newer}
            AND {took_effect} <= d.record_start_ts) AS back;
    IF v_count > 0 THEN
        RAISE WARNING '% {noun} change(s) took effect at or before the start of the version '
                      'they replace: %; the history is kept: each new version starts a '
                      'microsecond after it', v_count, v_examples;
    END IF;
    -- Staging behind the current version in the binlog: nothing to apply.
    SELECT count(*),
           {examples("updated_at %s, current version from %s", "u", "st")}
    INTO v_count, v_examples
    FROM (SELECT s.{key} AS k, s.updated_at AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.{key}) AS rn
          FROM {stg} AS s JOIN {d} AS d ON d.{key} = s.{key} AND d.is_current
          WHERE {changed}
            AND NOT {newer}) AS stale;
    IF v_count > 0 THEN
        RAISE WARNING '% {noun}(s) in `{stg}` hold an older change (in binlog order) than '
                      'the current version of `{d}`: %; they are left as they are', v_count,
                      v_examples;
    END IF;

    -- A tracked attribute changed later in the binlog: close the current version where
    -- the next one opens.
    UPDATE {d} AS d
    SET is_current = false,
        record_end_ts = greatest({took_effect},
                                 d.record_start_ts + interval '1 microsecond')
    FROM {stg} AS s
    WHERE d.{key} = s.{key} AND d.is_current
      AND {changed}
      AND {newer};

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE {d} AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current
      AND NOT EXISTS (SELECT 1 FROM {stg} AS s WHERE s.{key} = d.{key});

    -- Every staging key without a current version now gets one: new keys, keys closed
    -- above (their last end is where the new version opens), keys that came back.
    INSERT INTO {d} ({key}, {cols}, attr_hash,
        record_start_ts, record_end_ts, is_current, loaded_run, change_seq, generation)
    SELECT s.{key}, {s_cols},
           {_hash_expr(dim, 's.')},
           CASE WHEN h.last_end IS NULL THEN timestamp '{FIRST_START}'
                ELSE greatest({took_effect}, h.last_end) END,
           timestamp '{OPEN_END}', true, p_run_id, s.change_seq, v_generation
    FROM {stg} AS s
    LEFT JOIN (SELECT {key}, max(record_end_ts) AS last_end
               FROM {d} GROUP BY {key}) AS h
           ON h.{key} = s.{key}
    WHERE NOT EXISTS (SELECT 1 FROM {d} AS d
                      WHERE d.{key} = s.{key} AND d.is_current);
END
$$;
"""


def render_took_effect() -> str:
    """When a staged change took effect (see the module's docstring); staging without a
    commit time (loaded by hand) keeps its updated_at."""
    return f"""\
-- When a change took effect: its updated_at when that agrees with its commit time (the
-- database's ON UPDATE; the binlog's commit time has whole seconds), else the commit time.
-- Without either: the load time.
CREATE OR REPLACE FUNCTION {SCHEMA}.fn_took_effect(updated_at timestamp, commit_ts timestamp,
                                                load_ts timestamp) RETURNS timestamp
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE
    WHEN commit_ts IS NULL THEN coalesce(updated_at, load_ts)
    WHEN updated_at >= commit_ts - interval '{UPDATED_AT_SLACK_S} seconds'
     AND updated_at < commit_ts + interval '1 second' THEN updated_at
    ELSE commit_ts END $$;
"""


def render_scd2(dims: tuple[Scd2, ...] = SCD2_DIMS) -> str:
    """Every SCD2 dimension's hash function and merge procedure."""
    parts = [HEADER, render_took_effect()]
    for dim in dims:
        parts += [render_hash_function(dim), render_procedure(dim)]
    return "\n".join(parts)
