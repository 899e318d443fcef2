"""The SCD type 2 merge procedures, rendered from the model (`model.SCD2_DIMS`).

One shape serves every SCD2 dimension, so it is written once, here, and rendered per
dimension into `sql/merges.sql` (committed, like the DDL; `python -m pipeline.warehouse.ddl`
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

from pipeline.warehouse.model import (
    FIRST_START,
    LOADED_RUN,
    LOADS,
    OPEN_END,
    SCD2_DIMS,
    SCHEMA,
    Scd2,
    table,
)

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
    scope = f"(v_full OR {{}}.{key} IN (SELECT key FROM {SCOPE}))"
    s_in, d_in = scope.format("s"), scope.format("d")
    def examples(fmt: str, *args: str) -> str:
        return (f"string_agg(format('{noun} %s ({fmt})',\n"
                f"                             k, {', '.join(args)}), '; ' ORDER BY k)\n"
                f"               FILTER (WHERE rn <= {EXAMPLES})")
    return f"""\
-- SCD2 {noun}s on {', '.join(attrs)} (see pipeline/warehouse/procedures.py).
CREATE OR REPLACE PROCEDURE {SCHEMA}.{dim.procedure}(p_run_id text DEFAULT NULL,
    p_full boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    v_load_ts timestamp := now() AT TIME ZONE 'UTC';
    v_generation text;
    v_count bigint;
    v_other bigint;
    v_old text;
    v_examples text;
    v_from bigint;
    v_to bigint;
    v_full boolean;
    v_keys bigint;
BEGIN
    -- Two loaders at once would both open versions; serialize them (readers are not blocked).
    LOCK TABLE {d} IN SHARE ROW EXCLUSIVE MODE;
{render_scope_setup(dim.procedure, [dim.staging])}
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
            v_full := true;  -- rebuilt: every staged key, not only the changed ones
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
          WHERE {changed} AND {s_in}
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
          WHERE {changed} AND {s_in}
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
          WHERE {changed} AND {s_in}
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
      AND {newer}
      AND {s_in};

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE {d} AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current AND {d_in}
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
    LEFT JOIN (SELECT d.{key}, max(d.record_end_ts) AS last_end
               FROM {d} AS d WHERE {d_in} GROUP BY d.{key}) AS h
           ON h.{key} = s.{key}
    WHERE {s_in}
      AND NOT EXISTS (SELECT 1 FROM {d} AS d
                      WHERE d.{key} = s.{key} AND d.is_current);

    -- For the fact loads: this merge changed a key's versions only from the start of its
    -- newest version on, so only facts from then on may point elsewhere now.
    IF NOT v_full THEN
        UPDATE {SCHEMA}.staged_keys AS k SET since = v.since
        FROM (SELECT d.{key} AS key, max(d.record_start_ts) AS since FROM {d} AS d
              WHERE {d_in} GROUP BY d.{key}) AS v
        WHERE k.staging = '{dim.staging}' AND k.batch > v_from AND k.batch <= v_to
          AND k.key = v.key;
    END IF;
{render_scope_done(dim.procedure)}
END
$$;
"""


SCOPE = "_scope"
"""The temporary table of keys a procedure merges when it does not merge everything."""


def render_scope_setup(procedure: str, stagings: list[str],
                       keys_from: list[str] | None = None) -> str:
    """The start of a change-only merge: the batches since the procedure's last call
    (`v_from`, `v_to`], whether any of its staging tables had a full copy among them (then
    `v_full`: merge everything, as before change-only loading), else the keys those batches
    staged, in `_scope`. A procedure never called before merges everything."""
    names = ", ".join(f"'{s}'" for s in stagings)
    own = ", ".join(f"'{s}'" for s in keys_from or stagings)
    return f"""\
    -- Change-only: the staging batches since the last call, and their keys.
    SELECT consumed_batch INTO v_from FROM {SCHEMA}.procedure_state
    WHERE procedure = '{procedure}';
    SELECT coalesce(max(batch), 0) INTO v_to FROM {SCHEMA}.staging_batches;
    v_full := p_full OR v_from IS NULL OR EXISTS (
        SELECT 1 FROM {SCHEMA}.staging_batches
        WHERE staging IN ({names}) AND kind = 'full' AND batch > v_from AND batch <= v_to);
    DROP TABLE IF EXISTS {SCOPE};
    CREATE TEMPORARY TABLE {SCOPE} (key bigint PRIMARY KEY) ON COMMIT DROP;
    IF NOT v_full THEN
        INSERT INTO {SCOPE}
        SELECT DISTINCT key FROM {SCHEMA}.staged_keys
        WHERE staging IN ({own}) AND batch > v_from AND batch <= v_to;
        ANALYZE {SCOPE};
    END IF;"""


def render_scope_done(procedure: str, dims_seen: str = "NULL") -> str:
    """The end of a change-only merge: record the last batch merged (and how)."""
    return f"""\
    SELECT count(*) INTO v_keys FROM {SCOPE};
    INSERT INTO {SCHEMA}.procedure_state (procedure, consumed_batch, full_batch, dims_seen,
                                          mode, keys, called_at)
    VALUES ('{procedure}', v_to, CASE WHEN v_full THEN v_to END, {dims_seen},
            CASE WHEN v_full THEN 'full' ELSE 'delta' END,
            CASE WHEN v_full THEN NULL ELSE v_keys END, now() AT TIME ZONE 'UTC')
    ON CONFLICT (procedure) DO UPDATE SET
        consumed_batch = excluded.consumed_batch,
        full_batch = coalesce(excluded.full_batch, {SCHEMA}.procedure_state.full_batch),
        dims_seen = excluded.dims_seen, mode = excluded.mode, keys = excluded.keys,
        called_at = excluded.called_at;"""


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


def render_merges(dims: tuple[Scd2, ...] = SCD2_DIMS) -> str:
    """Every SCD2 dimension's hash function and merge procedure, then the fact loads."""
    parts = [HEADER, render_took_effect()]
    for dim in dims:
        parts += [render_hash_function(dim), render_procedure(dim)]
    return "\n".join([*parts, render_fact_orders(), render_fact_order_items()])


# -- the fact loads ----------------------------------------------------------------------------
# A fact row depends on more than its own staging row: an order's item_count and order_total
# on its items, its customer_sk on the customer's versions; an order line's date_key and
# product_sk on its order and the product's versions. A change-only call therefore merges
# the keys whose inputs changed: its own staged keys, the rows of changed parents and
# children, and the rows of the dimension keys the dimension merge touched since the fact
# last looked (`dims_seen`: the dimension procedure's batches), so a late customer version
# reaches the orders it now covers. A dimension merge changes versions only from the start
# of a key's newest version on (a new version opens there and closes the one before; a
# deletion closes the newest), so of a changed customer or product only the orders placed
# since that start can point elsewhere now: the merge writes it into the key's
# staged_keys rows (`since`), and the fact takes the earliest over the merges since it last
# looked. A full copy of an input, or a dimension merged whole (a rebuild), makes the call
# merge everything.


def _dims_setup(dim_procedure: str) -> str:
    return f"""\
    SELECT dims_seen INTO v_dims_from FROM {SCHEMA}.procedure_state
    WHERE procedure = '{{procedure}}';
    SELECT coalesce(consumed_batch, 0), coalesce(full_batch, 0) INTO v_dims_to, v_dims_full
    FROM {SCHEMA}.procedure_state WHERE procedure = '{dim_procedure}';
    v_dims_to := coalesce(v_dims_to, 0);
    IF v_dims_from IS NULL OR coalesce(v_dims_full, 0) > v_dims_from THEN
        v_full := true;
    END IF;"""


def _wrapped(items: list[str], indent: int, width: int = 94) -> str:
    """`items` joined by commas, lines no wider than `width` with the first starting at
    column `indent`, continuation lines indented to it; an item is never split."""
    lines, line = [], ""
    for item in items:
        piece = f"{item}," if item is not items[-1] else item
        if line and indent + len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    lines.append(line)
    return f"\n{' ' * indent}".join(lines)


def _upsert(fact: str) -> str:
    """The MERGE's tail for fact `fact`, from its model columns: a row of the source `s`
    whose values differ from the fact's `f` is updated, a new key inserted, each stamped
    with the run (`loaded_run`); an equal row is not written again."""
    key, *cols = [c for c in table(fact).column_names if c != LOADED_RUN.name]
    f_cols, s_cols = [f"f.{c}" for c in cols], [f"s.{c}" for c in cols]
    sets = [f"{c} = s.{c}" for c in cols] + [f"{LOADED_RUN.name} = p_run_id"]
    return (f"    ON f.{key} = s.{key}\n"
            f"    WHEN MATCHED AND ({_wrapped(f_cols, 22)})\n"
            f"            IS DISTINCT FROM ({_wrapped(s_cols, 30)}) THEN\n"
            f"        UPDATE SET {_wrapped(sets, 19)}\n"
            f"    WHEN NOT MATCHED THEN\n"
            f"        INSERT ({_wrapped([key, *cols, LOADED_RUN.name], 16)})\n"
            f"        VALUES ({_wrapped([f's.{key}', *s_cols, 'p_run_id'], 16)});")


_FACT_DECLARE = """\
DECLARE
    v_from bigint;
    v_to bigint;
    v_full boolean;
    v_keys bigint;
    v_dims_from bigint;
    v_dims_to bigint;
    v_dims_full bigint;"""


def _fact_head(fact: str, own_staging: str, dim_procedure: str) -> str:
    """A fact procedure's start, the same for every fact: its signature and declarations,
    the lock, the refusal to empty the fact from an empty staging table, the change-only
    scope over the load's staging tables (`model.LOADS`) with `own_staging`'s keys, and
    whether the dimension it looks up was rebuilt since."""
    s = SCHEMA
    procedure = f"sp_load_{fact}"
    load = next(x for x in LOADS if x.procedure == procedure)
    stagings = [own_staging, *(t for t in load.staging if t != own_staging)]
    setup = render_scope_setup(procedure, stagings, [own_staging])
    dims = _dims_setup(dim_procedure).replace("{procedure}", procedure)
    return f"""\
CREATE OR REPLACE PROCEDURE {s}.{procedure}(p_run_id text DEFAULT NULL,
    p_full boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
{_FACT_DECLARE}
BEGIN
    LOCK TABLE {s}.{fact} IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM {s}.{own_staging})
       AND EXISTS (SELECT 1 FROM {s}.{fact}) THEN
        RAISE EXCEPTION 'staging table `{s}.{own_staging}` is empty; refusing to delete '
                        'every row of `{s}.{fact}`'
            USING HINT = 'load staging before calling {procedure}';
    END IF;
{setup}
{dims}"""


def _related_scope(pick: str, item_key: str, via_staging: str, dim_staging: str,
                   dim_rows: str) -> str:
    """The keys a change-only fact merge adds to its own staged keys: `pick` of the order
    lines whose `item_key` was staged in `via_staging` (the lines as staged now, and as
    the fact has them from before), and of the orders of the dimension keys whose versions
    changed (`dim_rows`: the staged rows joined to the dimension's key `k.key`, the order
    `o` among them; from the change's time on)."""
    s = SCHEMA
    since = (f"WHERE k.staging = '{dim_staging}' AND k.batch > v_dims_from "
             f"AND k.batch <= v_dims_to\n          AND o.order_ts >= coalesce(k.since, "
             f"'-infinity')")
    return f"""\
    IF NOT v_full THEN
        INSERT INTO {SCOPE}
        SELECT i.{pick} FROM {s}.staged_keys AS k
        JOIN {s}.stg_order_items AS i ON i.{item_key} = k.key
        WHERE k.staging = '{via_staging}' AND k.batch > v_from AND k.batch <= v_to
        UNION
        SELECT f.{pick} FROM {s}.staged_keys AS k
        JOIN {s}.fact_order_items AS f ON f.{item_key} = k.key
        WHERE k.staging = '{via_staging}' AND k.batch > v_from AND k.batch <= v_to
        UNION
        {dim_rows}
        {since}
        ON CONFLICT (key) DO NOTHING;
        ANALYZE {SCOPE};
    END IF;
"""


def render_fact_orders() -> str:
    s = SCHEMA
    o_in = f"(v_full OR o.order_id IN (SELECT key FROM {SCOPE}))"
    related = _related_scope("order_id", "order_item_id", "stg_order_items", "stg_customers",
                             f"SELECT o.order_id FROM {s}.staged_keys AS k\n"
                             f"        JOIN {s}.stg_orders AS o ON o.customer_id = k.key")
    return f"""\
-- Orders: upsert from staging (only rows that differ are touched), then delete the orders
-- staging no longer holds. customer_sk is the version valid at order_ts; item_count and
-- order_total sum the order's staged items (0 for an order without items). Change-only:
-- the staged orders, the orders of staged items (now and before), the orders of customers
-- whose versions changed.
{_fact_head("fact_orders", "stg_orders", "sp_merge_dim_customer")}
{related}    -- The mart joins dim_date on date_key: make sure every order day has its row (only
    -- the days that occur: orders from 1000-01-01 to 9999-12-31 must not mean 3 million).
    INSERT INTO {s}.dim_date (date_key, full_date, year, quarter, month, month_name, day,
                                day_of_week, is_weekend)
    SELECT {s}.fn_date_key(d), d::date, extract(year FROM d)::smallint,
           extract(quarter FROM d)::smallint, extract(month FROM d)::smallint,
           to_char(d, 'FMMonth'), extract(day FROM d)::smallint,
           extract(isodow FROM d)::smallint, extract(isodow FROM d) IN (6, 7)
    FROM (SELECT DISTINCT date_trunc('day', o.order_ts) AS d FROM {s}.stg_orders AS o
          WHERE {o_in}) AS days
    ON CONFLICT (date_key) DO NOTHING;

    MERGE INTO {s}.fact_orders AS f
    USING (SELECT o.order_id, o.customer_id, c.customer_sk,
                  {s}.fn_date_key(o.order_ts) AS date_key, o.status, o.platform,
                  o.payment_method, o.order_ts, o.updated_at,
                  coalesce(i.item_count, 0)::bigint AS item_count,
                  coalesce(i.order_total, 0) AS order_total
           FROM {s}.stg_orders AS o
           LEFT JOIN (SELECT o.order_id, sum(o.quantity) AS item_count,
                             sum(o.quantity * o.unit_price) AS order_total
                      FROM {s}.stg_order_items AS o WHERE {o_in}
                      GROUP BY o.order_id) AS i
                  ON i.order_id = o.order_id
           LEFT JOIN {s}.dim_customer AS c
                  ON c.customer_id = o.customer_id
                 AND o.order_ts >= c.record_start_ts
                 AND (o.order_ts < c.record_end_ts OR c.is_current)
           WHERE {o_in}) AS s
{_upsert("fact_orders")}

    DELETE FROM {s}.fact_orders AS o
    WHERE {o_in}
      AND NOT EXISTS (SELECT 1 FROM {s}.stg_orders AS s WHERE s.order_id = o.order_id);
{render_scope_done("sp_load_fact_orders", "v_dims_to")}
END
$$;
"""


def render_fact_order_items() -> str:
    s = SCHEMA
    i_in = f"(v_full OR i.order_item_id IN (SELECT key FROM {SCOPE}))"
    related = _related_scope(
        "order_item_id", "order_id", "stg_orders", "stg_products",
        f"SELECT i.order_item_id FROM {s}.staged_keys AS k\n"
        f"        JOIN {s}.stg_order_items AS i ON i.product_id = k.key\n"
        f"        JOIN {s}.stg_orders AS o ON o.order_id = i.order_id")
    return f"""\
-- Order lines: the same upsert + delete. An item whose order is not staged has no order
-- time (so no date, no product version): it is left out, exactly as the order is, which
-- keeps fact_order_items consistent with fact_orders. Change-only: the staged items, the
-- items of staged orders (now and before), the items of products whose versions changed.
{_fact_head("fact_order_items", "stg_order_items", "sp_merge_dim_product")}
{related}
    MERGE INTO {s}.fact_order_items AS f
    USING (SELECT i.order_item_id, i.order_id, i.product_id, p.product_sk,
                  {s}.fn_date_key(o.order_ts) AS date_key, i.quantity, i.unit_price,
                  i.quantity * i.unit_price AS line_total
           FROM {s}.stg_order_items AS i
           JOIN {s}.stg_orders AS o ON o.order_id = i.order_id
           LEFT JOIN {s}.dim_product AS p
                  ON p.product_id = i.product_id
                 AND o.order_ts >= p.record_start_ts
                 AND (o.order_ts < p.record_end_ts OR p.is_current)
           WHERE {i_in}) AS s
{_upsert("fact_order_items")}

    -- "Still in staging" means "in the joined set": an item orphaned by its order goes too.
    DELETE FROM {s}.fact_order_items AS i
    WHERE {i_in}
      AND NOT EXISTS (SELECT 1 FROM {s}.stg_order_items AS x
                      JOIN {s}.stg_orders AS o ON o.order_id = x.order_id
                      WHERE x.order_item_id = i.order_item_id);
{render_scope_done("sp_load_fact_order_items", "v_dims_to")}
END
$$;
"""
