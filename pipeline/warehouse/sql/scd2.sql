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
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_customer(p_run_id text DEFAULT NULL)
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
    LOCK TABLE sales.dim_customer IN SHARE ROW EXCLUSIVE MODE;
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
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country)
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
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country)
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
          WHERE d.attr_hash <> sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country)
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
      AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq);

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE sales.dim_customer AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current
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
    LEFT JOIN (SELECT customer_id, max(record_end_ts) AS last_end
               FROM sales.dim_customer GROUP BY customer_id) AS h
           ON h.customer_id = s.customer_id
    WHERE NOT EXISTS (SELECT 1 FROM sales.dim_customer AS d
                      WHERE d.customer_id = s.customer_id AND d.is_current);
END
$$;

-- md5 of the tracked attributes of a product.
CREATE OR REPLACE FUNCTION sales.fn_product_hash(name text, category text, price numeric, active boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(json_build_array(name, category, trim_scale(price), active)::text) $$;

-- SCD2 products on name, category, price, active (see pipeline/warehouse/procedures.py).
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_product(p_run_id text DEFAULT NULL)
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
    LOCK TABLE sales.dim_product IN SHARE ROW EXCLUSIVE MODE;
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
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active)
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
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active)
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
          WHERE d.attr_hash <> sales.fn_product_hash(s.name, s.category, s.price, s.active)
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
      AND (d.change_seq IS NULL OR s.change_seq IS NULL OR s.change_seq > d.change_seq);

    -- Gone from staging: deleted at the source, closed at load time.
    UPDATE sales.dim_product AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current
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
    LEFT JOIN (SELECT product_id, max(record_end_ts) AS last_end
               FROM sales.dim_product GROUP BY product_id) AS h
           ON h.product_id = s.product_id
    WHERE NOT EXISTS (SELECT 1 FROM sales.dim_product AS d
                      WHERE d.product_id = s.product_id AND d.is_current);
END
$$;
