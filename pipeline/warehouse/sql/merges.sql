-- Generated from pipeline/warehouse/procedures.py and model.py by
-- `python -m pipeline.warehouse.ddl`; edit those, not this file (a unit test fails
-- when they drift). PostgreSQL 15 (the Redshift stand-in), PL/pgSQL.

-- When a change took effect: its updated_at when that agrees with its commit time (the
-- database's ON UPDATE; the binlog's commit time has whole seconds), else the commit time.
-- Without either: the load time.
CREATE OR REPLACE FUNCTION sales.fn_took_effect(updated_at timestamp, commit_ts timestamp,
                                                load_ts timestamp) RETURNS timestamp
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE
    WHEN commit_ts IS NULL THEN coalesce(updated_at, load_ts)
    WHEN updated_at >= commit_ts - interval '60 seconds'
     AND updated_at < commit_ts + interval '1 second' THEN updated_at
    ELSE commit_ts END $$;

-- md5 of the tracked attributes of a customer.
CREATE OR REPLACE FUNCTION sales.fn_customer_hash(name text, email_hash text, city text, country text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(json_build_array(name, email_hash, city, country)::text) $$;

-- SCD2 customers on name, email_hash, city, country (see pipeline/warehouse/procedures.py).
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_customer(p_run_id text DEFAULT NULL,
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
    LOCK TABLE sales.dim_customer IN SHARE ROW EXCLUSIVE MODE;
    -- Change-only: the staging batches since the last call, and their keys.
    SELECT consumed_batch INTO v_from FROM sales.procedure_state
    WHERE procedure = 'sp_merge_dim_customer';
    SELECT coalesce(max(batch), 0) INTO v_to FROM sales.staging_batches;
    v_full := p_full OR v_from IS NULL OR EXISTS (
        SELECT 1 FROM sales.staging_batches
        WHERE staging IN ('stg_customers') AND kind = 'full' AND batch > v_from AND batch <= v_to);
    DROP TABLE IF EXISTS _scope;
    CREATE TEMPORARY TABLE _scope (key bigint PRIMARY KEY) ON COMMIT DROP;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT DISTINCT key FROM sales.staged_keys
        WHERE staging IN ('stg_customers') AND batch > v_from AND batch <= v_to;
        ANALYZE _scope;
    END IF;
    -- An empty staging table is a failed hand-off far more often than a source that lost
    -- every row; closing every version on it would be wrong and noisy to undo.
    IF NOT EXISTS (SELECT 1 FROM sales.stg_customers)
       AND EXISTS (SELECT 1 FROM sales.dim_customer WHERE is_current) THEN
        RAISE EXCEPTION 'staging table `sales.stg_customers` is empty; refusing to close every '
                        'current row of `sales.dim_customer`'
            USING HINT = 'load staging before calling sp_merge_dim_customer';
    END IF;

    -- Staging from another bronze full load than the versions: start over from it.
    SELECT generation INTO v_generation FROM sales.load_state WHERE staging = 'stg_customers';
    IF v_generation IS NOT NULL THEN
        SELECT count(*), count(*) FILTER (WHERE generation IS NULL), max(generation)
        INTO v_count, v_other, v_old
        FROM sales.dim_customer WHERE generation IS DISTINCT FROM v_generation;
        IF v_count > 0 THEN
            DELETE FROM sales.dim_customer;
            v_full := true;  -- rebuilt: every staged key, not only the changed ones
            RAISE WARNING '`sales.dim_customer` rebuilt from a new bronze full load (generation %): its % '
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
           string_agg(format('customer %s (updated_at %s, committed %s)',
                             k, u, c), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.customer_id AS k, s.updated_at AS u, s.commit_ts AS c,
                 row_number() OVER (ORDER BY s.customer_id) AS rn
          FROM sales.stg_customers AS s JOIN sales.dim_customer AS d ON d.customer_id = s.customer_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country) AND (v_full OR s.customer_id IN (SELECT key FROM _scope))
            AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
            AND s.commit_ts IS NOT NULL
            AND sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) = s.commit_ts
            AND s.updated_at IS DISTINCT FROM s.commit_ts) AS off;
    IF v_count > 0 THEN
        RAISE WARNING '% customer change(s) carry an updated_at that is not when they were '
                      'committed: %; each new version starts at the commit time the binlog '
                      'gives', v_count, v_examples;
    END IF;
    -- Changes that would not start after the version they replace: opened just after it.
    SELECT count(*),
           string_agg(format('customer %s (took effect %s, current version from %s)',
                             k, u, st), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.customer_id AS k, sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.customer_id) AS rn
          FROM sales.stg_customers AS s JOIN sales.dim_customer AS d ON d.customer_id = s.customer_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country) AND (v_full OR s.customer_id IN (SELECT key FROM _scope))
            AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
            AND sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) <= d.record_start_ts) AS back;
    IF v_count > 0 THEN
        RAISE WARNING '% customer change(s) took effect at or before the start of the version '
                      'they replace: %; the history is kept: each new version starts a '
                      'microsecond after it', v_count, v_examples;
    END IF;
    -- Staging behind the current version in the binlog: nothing to apply.
    SELECT count(*),
           string_agg(format('customer %s (updated_at %s, current version from %s)',
                             k, u, st), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.customer_id AS k, s.updated_at AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.customer_id) AS rn
          FROM sales.stg_customers AS s JOIN sales.dim_customer AS d ON d.customer_id = s.customer_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country) AND (v_full OR s.customer_id IN (SELECT key FROM _scope))
            AND NOT (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)) AS stale;
    IF v_count > 0 THEN
        RAISE WARNING '% customer(s) in `sales.stg_customers` hold an older change (in binlog order) than '
                      'the current version of `sales.dim_customer`: %; they are left as they are', v_count,
                      v_examples;
    END IF;

    -- A tracked attribute changed later in the binlog: close the current version where
    -- the next one opens.
    UPDATE sales.dim_customer AS d
    SET is_current = false,
        record_end_ts = greatest(sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts),
                                 d.record_start_ts + interval '1 microsecond')
    FROM sales.stg_customers AS s
    WHERE d.customer_id = s.customer_id AND d.is_current
      AND d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country)
      AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
      AND (v_full OR s.customer_id IN (SELECT key FROM _scope));

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE sales.dim_customer AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current AND (v_full OR d.customer_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.stg_customers AS s WHERE s.customer_id = d.customer_id);

    -- Every staging key without a current version now gets one: new keys, keys closed
    -- above (their last end is where the new version opens), keys that came back.
    INSERT INTO sales.dim_customer (customer_id, name, email_hash, city, country, attr_hash,
        record_start_ts, record_end_ts, is_current, loaded_run, change_seq, generation)
    SELECT s.customer_id, s.name, s.email_hash, s.city, s.country,
           sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country),
           CASE WHEN h.last_end IS NULL THEN timestamp '0001-01-01 00:00:00'
                ELSE greatest(sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts), h.last_end) END,
           timestamp '9999-12-31 00:00:00', true, p_run_id, s.change_seq, v_generation
    FROM sales.stg_customers AS s
    LEFT JOIN (SELECT d.customer_id, max(d.record_end_ts) AS last_end
               FROM sales.dim_customer AS d WHERE (v_full OR d.customer_id IN (SELECT key FROM _scope)) GROUP BY d.customer_id) AS h
           ON h.customer_id = s.customer_id
    WHERE (v_full OR s.customer_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.dim_customer AS d
                      WHERE d.customer_id = s.customer_id AND d.is_current);

    -- For the fact loads: this merge changed a key's versions only from the start of its
    -- newest version on, so only facts from then on may point elsewhere now.
    IF NOT v_full THEN
        UPDATE sales.staged_keys AS k SET since = v.since
        FROM (SELECT d.customer_id AS key, max(d.record_start_ts) AS since FROM sales.dim_customer AS d
              WHERE (v_full OR d.customer_id IN (SELECT key FROM _scope)) GROUP BY d.customer_id) AS v
        WHERE k.staging = 'stg_customers' AND k.batch > v_from AND k.batch <= v_to
          AND k.key = v.key;
    END IF;
    SELECT count(*) INTO v_keys FROM _scope;
    INSERT INTO sales.procedure_state (procedure, consumed_batch, full_batch, dims_seen,
                                          mode, keys, called_at)
    VALUES ('sp_merge_dim_customer', v_to, CASE WHEN v_full THEN v_to END, NULL,
            CASE WHEN v_full THEN 'full' ELSE 'delta' END,
            CASE WHEN v_full THEN NULL ELSE v_keys END, now() AT TIME ZONE 'UTC')
    ON CONFLICT (procedure) DO UPDATE SET
        consumed_batch = excluded.consumed_batch,
        full_batch = coalesce(excluded.full_batch, sales.procedure_state.full_batch),
        dims_seen = excluded.dims_seen, mode = excluded.mode, keys = excluded.keys,
        called_at = excluded.called_at;
END
$$;

-- md5 of the tracked attributes of a product.
CREATE OR REPLACE FUNCTION sales.fn_product_hash(name text, category text, price numeric, active boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(json_build_array(name, category, trim_scale(price), active)::text) $$;

-- SCD2 products on name, category, price, active (see pipeline/warehouse/procedures.py).
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_product(p_run_id text DEFAULT NULL,
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
    LOCK TABLE sales.dim_product IN SHARE ROW EXCLUSIVE MODE;
    -- Change-only: the staging batches since the last call, and their keys.
    SELECT consumed_batch INTO v_from FROM sales.procedure_state
    WHERE procedure = 'sp_merge_dim_product';
    SELECT coalesce(max(batch), 0) INTO v_to FROM sales.staging_batches;
    v_full := p_full OR v_from IS NULL OR EXISTS (
        SELECT 1 FROM sales.staging_batches
        WHERE staging IN ('stg_products') AND kind = 'full' AND batch > v_from AND batch <= v_to);
    DROP TABLE IF EXISTS _scope;
    CREATE TEMPORARY TABLE _scope (key bigint PRIMARY KEY) ON COMMIT DROP;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT DISTINCT key FROM sales.staged_keys
        WHERE staging IN ('stg_products') AND batch > v_from AND batch <= v_to;
        ANALYZE _scope;
    END IF;
    -- An empty staging table is a failed hand-off far more often than a source that lost
    -- every row; closing every version on it would be wrong and noisy to undo.
    IF NOT EXISTS (SELECT 1 FROM sales.stg_products)
       AND EXISTS (SELECT 1 FROM sales.dim_product WHERE is_current) THEN
        RAISE EXCEPTION 'staging table `sales.stg_products` is empty; refusing to close every '
                        'current row of `sales.dim_product`'
            USING HINT = 'load staging before calling sp_merge_dim_product';
    END IF;

    -- Staging from another bronze full load than the versions: start over from it.
    SELECT generation INTO v_generation FROM sales.load_state WHERE staging = 'stg_products';
    IF v_generation IS NOT NULL THEN
        SELECT count(*), count(*) FILTER (WHERE generation IS NULL), max(generation)
        INTO v_count, v_other, v_old
        FROM sales.dim_product WHERE generation IS DISTINCT FROM v_generation;
        IF v_count > 0 THEN
            DELETE FROM sales.dim_product;
            v_full := true;  -- rebuilt: every staged key, not only the changed ones
            RAISE WARNING '`sales.dim_product` rebuilt from a new bronze full load (generation %): its % '
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
           string_agg(format('product %s (updated_at %s, committed %s)',
                             k, u, c), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.product_id AS k, s.updated_at AS u, s.commit_ts AS c,
                 row_number() OVER (ORDER BY s.product_id) AS rn
          FROM sales.stg_products AS s JOIN sales.dim_product AS d ON d.product_id = s.product_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active) AND (v_full OR s.product_id IN (SELECT key FROM _scope))
            AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
            AND s.commit_ts IS NOT NULL
            AND sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) = s.commit_ts
            AND s.updated_at IS DISTINCT FROM s.commit_ts) AS off;
    IF v_count > 0 THEN
        RAISE WARNING '% product change(s) carry an updated_at that is not when they were '
                      'committed: %; each new version starts at the commit time the binlog '
                      'gives', v_count, v_examples;
    END IF;
    -- Changes that would not start after the version they replace: opened just after it.
    SELECT count(*),
           string_agg(format('product %s (took effect %s, current version from %s)',
                             k, u, st), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.product_id AS k, sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.product_id) AS rn
          FROM sales.stg_products AS s JOIN sales.dim_product AS d ON d.product_id = s.product_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active) AND (v_full OR s.product_id IN (SELECT key FROM _scope))
            AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
            AND sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts) <= d.record_start_ts) AS back;
    IF v_count > 0 THEN
        RAISE WARNING '% product change(s) took effect at or before the start of the version '
                      'they replace: %; the history is kept: each new version starts a '
                      'microsecond after it', v_count, v_examples;
    END IF;
    -- Staging behind the current version in the binlog: nothing to apply.
    SELECT count(*),
           string_agg(format('product %s (updated_at %s, current version from %s)',
                             k, u, st), '; ' ORDER BY k)
               FILTER (WHERE rn <= 3)
    INTO v_count, v_examples
    FROM (SELECT s.product_id AS k, s.updated_at AS u, d.record_start_ts AS st,
                 row_number() OVER (ORDER BY s.product_id) AS rn
          FROM sales.stg_products AS s JOIN sales.dim_product AS d ON d.product_id = s.product_id AND d.is_current
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active) AND (v_full OR s.product_id IN (SELECT key FROM _scope))
            AND NOT (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)) AS stale;
    IF v_count > 0 THEN
        RAISE WARNING '% product(s) in `sales.stg_products` hold an older change (in binlog order) than '
                      'the current version of `sales.dim_product`: %; they are left as they are', v_count,
                      v_examples;
    END IF;

    -- A tracked attribute changed later in the binlog: close the current version where
    -- the next one opens.
    UPDATE sales.dim_product AS d
    SET is_current = false,
        record_end_ts = greatest(sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts),
                                 d.record_start_ts + interval '1 microsecond')
    FROM sales.stg_products AS s
    WHERE d.product_id = s.product_id AND d.is_current
      AND d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active)
      AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq)
      AND (v_full OR s.product_id IN (SELECT key FROM _scope));

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE sales.dim_product AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current AND (v_full OR d.product_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.stg_products AS s WHERE s.product_id = d.product_id);

    -- Every staging key without a current version now gets one: new keys, keys closed
    -- above (their last end is where the new version opens), keys that came back.
    INSERT INTO sales.dim_product (product_id, name, category, price, active, attr_hash,
        record_start_ts, record_end_ts, is_current, loaded_run, change_seq, generation)
    SELECT s.product_id, s.name, s.category, s.price, s.active,
           sales.fn_product_hash(s.name, s.category, s.price, s.active),
           CASE WHEN h.last_end IS NULL THEN timestamp '0001-01-01 00:00:00'
                ELSE greatest(sales.fn_took_effect(s.updated_at, s.commit_ts, v_load_ts), h.last_end) END,
           timestamp '9999-12-31 00:00:00', true, p_run_id, s.change_seq, v_generation
    FROM sales.stg_products AS s
    LEFT JOIN (SELECT d.product_id, max(d.record_end_ts) AS last_end
               FROM sales.dim_product AS d WHERE (v_full OR d.product_id IN (SELECT key FROM _scope)) GROUP BY d.product_id) AS h
           ON h.product_id = s.product_id
    WHERE (v_full OR s.product_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.dim_product AS d
                      WHERE d.product_id = s.product_id AND d.is_current);

    -- For the fact loads: this merge changed a key's versions only from the start of its
    -- newest version on, so only facts from then on may point elsewhere now.
    IF NOT v_full THEN
        UPDATE sales.staged_keys AS k SET since = v.since
        FROM (SELECT d.product_id AS key, max(d.record_start_ts) AS since FROM sales.dim_product AS d
              WHERE (v_full OR d.product_id IN (SELECT key FROM _scope)) GROUP BY d.product_id) AS v
        WHERE k.staging = 'stg_products' AND k.batch > v_from AND k.batch <= v_to
          AND k.key = v.key;
    END IF;
    SELECT count(*) INTO v_keys FROM _scope;
    INSERT INTO sales.procedure_state (procedure, consumed_batch, full_batch, dims_seen,
                                          mode, keys, called_at)
    VALUES ('sp_merge_dim_product', v_to, CASE WHEN v_full THEN v_to END, NULL,
            CASE WHEN v_full THEN 'full' ELSE 'delta' END,
            CASE WHEN v_full THEN NULL ELSE v_keys END, now() AT TIME ZONE 'UTC')
    ON CONFLICT (procedure) DO UPDATE SET
        consumed_batch = excluded.consumed_batch,
        full_batch = coalesce(excluded.full_batch, sales.procedure_state.full_batch),
        dims_seen = excluded.dims_seen, mode = excluded.mode, keys = excluded.keys,
        called_at = excluded.called_at;
END
$$;

-- Orders: upsert from staging (only rows that differ are touched), then delete the orders
-- staging no longer holds. customer_sk is the version valid at order_ts; item_count and
-- order_total sum the order's staged items (0 for an order without items). Change-only:
-- the staged orders, the orders of staged items (now and before), the orders of customers
-- whose versions changed.
CREATE OR REPLACE PROCEDURE sales.sp_load_fact_orders(p_run_id text DEFAULT NULL,
    p_full boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    v_from bigint;
    v_to bigint;
    v_full boolean;
    v_keys bigint;
    v_dims_from bigint;
    v_dims_to bigint;
    v_dims_full bigint;
BEGIN
    LOCK TABLE sales.fact_orders IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM sales.stg_orders)
       AND EXISTS (SELECT 1 FROM sales.fact_orders) THEN
        RAISE EXCEPTION 'staging table `sales.stg_orders` is empty; refusing to delete '
                        'every row of `sales.fact_orders`'
            USING HINT = 'load staging before calling sp_load_fact_orders';
    END IF;
    -- Change-only: the staging batches since the last call, and their keys.
    SELECT consumed_batch INTO v_from FROM sales.procedure_state
    WHERE procedure = 'sp_load_fact_orders';
    SELECT coalesce(max(batch), 0) INTO v_to FROM sales.staging_batches;
    v_full := p_full OR v_from IS NULL OR EXISTS (
        SELECT 1 FROM sales.staging_batches
        WHERE staging IN ('stg_orders', 'stg_order_items') AND kind = 'full' AND batch > v_from AND batch <= v_to);
    DROP TABLE IF EXISTS _scope;
    CREATE TEMPORARY TABLE _scope (key bigint PRIMARY KEY) ON COMMIT DROP;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT DISTINCT key FROM sales.staged_keys
        WHERE staging IN ('stg_orders') AND batch > v_from AND batch <= v_to;
        ANALYZE _scope;
    END IF;
    SELECT dims_seen INTO v_dims_from FROM sales.procedure_state
    WHERE procedure = 'sp_load_fact_orders';
    SELECT coalesce(consumed_batch, 0), coalesce(full_batch, 0) INTO v_dims_to, v_dims_full
    FROM sales.procedure_state WHERE procedure = 'sp_merge_dim_customer';
    v_dims_to := coalesce(v_dims_to, 0);
    IF v_dims_from IS NULL OR coalesce(v_dims_full, 0) > v_dims_from THEN
        v_full := true;
    END IF;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT i.order_id FROM sales.staged_keys AS k
        JOIN sales.stg_order_items AS i ON i.order_item_id = k.key
        WHERE k.staging = 'stg_order_items' AND k.batch > v_from AND k.batch <= v_to
        UNION
        SELECT f.order_id FROM sales.staged_keys AS k
        JOIN sales.fact_order_items AS f ON f.order_item_id = k.key
        WHERE k.staging = 'stg_order_items' AND k.batch > v_from AND k.batch <= v_to
        UNION
        SELECT o.order_id FROM sales.staged_keys AS k
        JOIN sales.stg_orders AS o ON o.customer_id = k.key
        WHERE k.staging = 'stg_customers' AND k.batch > v_dims_from AND k.batch <= v_dims_to
          AND o.order_ts >= coalesce(k.since, '-infinity')
        ON CONFLICT (key) DO NOTHING;
        ANALYZE _scope;
    END IF;
    -- The mart joins dim_date on date_key: make sure every order day has its row (only
    -- the days that occur: orders from 1000-01-01 to 9999-12-31 must not mean 3 million).
    INSERT INTO sales.dim_date (date_key, full_date, year, quarter, month, month_name, day,
                                day_of_week, is_weekend)
    SELECT sales.fn_date_key(d), d::date, extract(year FROM d)::smallint,
           extract(quarter FROM d)::smallint, extract(month FROM d)::smallint,
           to_char(d, 'FMMonth'), extract(day FROM d)::smallint,
           extract(isodow FROM d)::smallint, extract(isodow FROM d) IN (6, 7)
    FROM (SELECT DISTINCT date_trunc('day', o.order_ts) AS d FROM sales.stg_orders AS o
          WHERE (v_full OR o.order_id IN (SELECT key FROM _scope))) AS days
    ON CONFLICT (date_key) DO NOTHING;

    MERGE INTO sales.fact_orders AS f
    USING (SELECT o.order_id, o.customer_id, c.customer_sk,
                  sales.fn_date_key(o.order_ts) AS date_key, o.status, o.platform,
                  o.payment_method, o.order_ts, o.updated_at,
                  coalesce(i.item_count, 0)::bigint AS item_count,
                  coalesce(i.order_total, 0) AS order_total
           FROM sales.stg_orders AS o
           LEFT JOIN (SELECT o.order_id, sum(o.quantity) AS item_count,
                             sum(o.quantity * o.unit_price) AS order_total
                      FROM sales.stg_order_items AS o WHERE (v_full OR o.order_id IN (SELECT key FROM _scope))
                      GROUP BY o.order_id) AS i
                  ON i.order_id = o.order_id
           LEFT JOIN sales.dim_customer AS c
                  ON c.customer_id = o.customer_id
                 AND o.order_ts >= c.record_start_ts
                 AND (o.order_ts < c.record_end_ts OR c.is_current)
           WHERE (v_full OR o.order_id IN (SELECT key FROM _scope))) AS s
    ON f.order_id = s.order_id
    WHEN MATCHED AND (f.customer_id, f.customer_sk, f.date_key, f.status, f.platform,
                      f.payment_method, f.order_ts, f.updated_at, f.item_count, f.order_total)
            IS DISTINCT FROM (s.customer_id, s.customer_sk, s.date_key, s.status, s.platform,
                              s.payment_method, s.order_ts, s.updated_at, s.item_count,
                              s.order_total) THEN
        UPDATE SET customer_id = s.customer_id, customer_sk = s.customer_sk,
                   date_key = s.date_key, status = s.status, platform = s.platform,
                   payment_method = s.payment_method, order_ts = s.order_ts,
                   updated_at = s.updated_at, item_count = s.item_count,
                   order_total = s.order_total, loaded_run = p_run_id
    WHEN NOT MATCHED THEN
        INSERT (order_id, customer_id, customer_sk, date_key, status, platform,
                payment_method, order_ts, updated_at, item_count, order_total, loaded_run)
        VALUES (s.order_id, s.customer_id, s.customer_sk, s.date_key, s.status, s.platform,
                s.payment_method, s.order_ts, s.updated_at, s.item_count, s.order_total,
                p_run_id);

    DELETE FROM sales.fact_orders AS o
    WHERE (v_full OR o.order_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.stg_orders AS s WHERE s.order_id = o.order_id);
    SELECT count(*) INTO v_keys FROM _scope;
    INSERT INTO sales.procedure_state (procedure, consumed_batch, full_batch, dims_seen,
                                          mode, keys, called_at)
    VALUES ('sp_load_fact_orders', v_to, CASE WHEN v_full THEN v_to END, v_dims_to,
            CASE WHEN v_full THEN 'full' ELSE 'delta' END,
            CASE WHEN v_full THEN NULL ELSE v_keys END, now() AT TIME ZONE 'UTC')
    ON CONFLICT (procedure) DO UPDATE SET
        consumed_batch = excluded.consumed_batch,
        full_batch = coalesce(excluded.full_batch, sales.procedure_state.full_batch),
        dims_seen = excluded.dims_seen, mode = excluded.mode, keys = excluded.keys,
        called_at = excluded.called_at;
END
$$;

-- Order lines: the same upsert + delete. An item whose order is not staged has no order
-- time (so no date, no product version): it is left out, exactly as the order is, which
-- keeps fact_order_items consistent with fact_orders. Change-only: the staged items, the
-- items of staged orders (now and before), the items of products whose versions changed.
CREATE OR REPLACE PROCEDURE sales.sp_load_fact_order_items(p_run_id text DEFAULT NULL,
    p_full boolean DEFAULT false)
LANGUAGE plpgsql
AS $$
DECLARE
    v_from bigint;
    v_to bigint;
    v_full boolean;
    v_keys bigint;
    v_dims_from bigint;
    v_dims_to bigint;
    v_dims_full bigint;
BEGIN
    LOCK TABLE sales.fact_order_items IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM sales.stg_order_items)
       AND EXISTS (SELECT 1 FROM sales.fact_order_items) THEN
        RAISE EXCEPTION 'staging table `sales.stg_order_items` is empty; refusing to delete '
                        'every row of `sales.fact_order_items`'
            USING HINT = 'load staging before calling sp_load_fact_order_items';
    END IF;
    -- Change-only: the staging batches since the last call, and their keys.
    SELECT consumed_batch INTO v_from FROM sales.procedure_state
    WHERE procedure = 'sp_load_fact_order_items';
    SELECT coalesce(max(batch), 0) INTO v_to FROM sales.staging_batches;
    v_full := p_full OR v_from IS NULL OR EXISTS (
        SELECT 1 FROM sales.staging_batches
        WHERE staging IN ('stg_order_items', 'stg_orders') AND kind = 'full' AND batch > v_from AND batch <= v_to);
    DROP TABLE IF EXISTS _scope;
    CREATE TEMPORARY TABLE _scope (key bigint PRIMARY KEY) ON COMMIT DROP;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT DISTINCT key FROM sales.staged_keys
        WHERE staging IN ('stg_order_items') AND batch > v_from AND batch <= v_to;
        ANALYZE _scope;
    END IF;
    SELECT dims_seen INTO v_dims_from FROM sales.procedure_state
    WHERE procedure = 'sp_load_fact_order_items';
    SELECT coalesce(consumed_batch, 0), coalesce(full_batch, 0) INTO v_dims_to, v_dims_full
    FROM sales.procedure_state WHERE procedure = 'sp_merge_dim_product';
    v_dims_to := coalesce(v_dims_to, 0);
    IF v_dims_from IS NULL OR coalesce(v_dims_full, 0) > v_dims_from THEN
        v_full := true;
    END IF;
    IF NOT v_full THEN
        INSERT INTO _scope
        SELECT i.order_item_id FROM sales.staged_keys AS k
        JOIN sales.stg_order_items AS i ON i.order_id = k.key
        WHERE k.staging = 'stg_orders' AND k.batch > v_from AND k.batch <= v_to
        UNION
        SELECT f.order_item_id FROM sales.staged_keys AS k
        JOIN sales.fact_order_items AS f ON f.order_id = k.key
        WHERE k.staging = 'stg_orders' AND k.batch > v_from AND k.batch <= v_to
        UNION
        SELECT i.order_item_id FROM sales.staged_keys AS k
        JOIN sales.stg_order_items AS i ON i.product_id = k.key
        JOIN sales.stg_orders AS o ON o.order_id = i.order_id
        WHERE k.staging = 'stg_products' AND k.batch > v_dims_from AND k.batch <= v_dims_to
          AND o.order_ts >= coalesce(k.since, '-infinity')
        ON CONFLICT (key) DO NOTHING;
        ANALYZE _scope;
    END IF;

    MERGE INTO sales.fact_order_items AS f
    USING (SELECT i.order_item_id, i.order_id, i.product_id, p.product_sk,
                  sales.fn_date_key(o.order_ts) AS date_key, i.quantity, i.unit_price,
                  i.quantity * i.unit_price AS line_total
           FROM sales.stg_order_items AS i
           JOIN sales.stg_orders AS o ON o.order_id = i.order_id
           LEFT JOIN sales.dim_product AS p
                  ON p.product_id = i.product_id
                 AND o.order_ts >= p.record_start_ts
                 AND (o.order_ts < p.record_end_ts OR p.is_current)
           WHERE (v_full OR i.order_item_id IN (SELECT key FROM _scope))) AS s
    ON f.order_item_id = s.order_item_id
    WHEN MATCHED AND (f.order_id, f.product_id, f.product_sk, f.date_key, f.quantity,
                      f.unit_price, f.line_total)
            IS DISTINCT FROM (s.order_id, s.product_id, s.product_sk, s.date_key, s.quantity,
                              s.unit_price, s.line_total) THEN
        UPDATE SET order_id = s.order_id, product_id = s.product_id,
                   product_sk = s.product_sk, date_key = s.date_key, quantity = s.quantity,
                   unit_price = s.unit_price, line_total = s.line_total, loaded_run = p_run_id
    WHEN NOT MATCHED THEN
        INSERT (order_item_id, order_id, product_id, product_sk, date_key, quantity,
                unit_price, line_total, loaded_run)
        VALUES (s.order_item_id, s.order_id, s.product_id, s.product_sk, s.date_key,
                s.quantity, s.unit_price, s.line_total, p_run_id);

    -- "Still in staging" means "in the joined set": an item orphaned by its order goes too.
    DELETE FROM sales.fact_order_items AS i
    WHERE (v_full OR i.order_item_id IN (SELECT key FROM _scope))
      AND NOT EXISTS (SELECT 1 FROM sales.stg_order_items AS x
                      JOIN sales.stg_orders AS o ON o.order_id = x.order_id
                      WHERE x.order_item_id = i.order_item_id);
    SELECT count(*) INTO v_keys FROM _scope;
    INSERT INTO sales.procedure_state (procedure, consumed_batch, full_batch, dims_seen,
                                          mode, keys, called_at)
    VALUES ('sp_load_fact_order_items', v_to, CASE WHEN v_full THEN v_to END, v_dims_to,
            CASE WHEN v_full THEN 'full' ELSE 'delta' END,
            CASE WHEN v_full THEN NULL ELSE v_keys END, now() AT TIME ZONE 'UTC')
    ON CONFLICT (procedure) DO UPDATE SET
        consumed_batch = excluded.consumed_batch,
        full_batch = coalesce(excluded.full_batch, sales.procedure_state.full_batch),
        dims_seen = excluded.dims_seen, mode = excluded.mode, keys = excluded.keys,
        called_at = excluded.called_at;
END
$$;
