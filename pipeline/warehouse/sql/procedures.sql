-- Load procedures and the mart view of schema `sales` (PostgreSQL 15, PL/pgSQL).
-- Applied by `shoplake warehouse init` after postgres.sql; every statement is idempotent.
--
-- A run: COPY the full current state of each silver table into staging, then
--   CALL sales.sp_merge_dim_customer(run_id); CALL sales.sp_merge_dim_product(run_id);
--   CALL sales.sp_load_fact_orders(run_id);   CALL sales.sp_load_fact_order_items(run_id);
-- Facts come after the dims because they look up the dim version valid at order_ts.
-- Calling any procedure twice on the same staging changes nothing the second time.
--
-- Timestamps are naive UTC (the loader's session runs in UTC), so "load time" is
-- now() AT TIME ZONE 'UTC'.

-- yyyymmdd of a timestamp: the key of dim_date and of both facts.
CREATE OR REPLACE FUNCTION sales.fn_date_key(ts timestamp) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (extract(year FROM ts) * 10000 + extract(month FROM ts) * 100
              + extract(day FROM ts))::integer $$;

-- md5 of the tracked attributes. JSON keeps the encoding unambiguous: a NULL is `null`,
-- never the string 'null', and no separator can collide with a value.
CREATE OR REPLACE FUNCTION sales.fn_customer_hash(name text, email_hash text, city text,
                                                  country text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(json_build_array(name, email_hash, city, country)::text) $$;

-- The price enters without trailing zeros (trim_scale), so widening the column's scale
-- (numeric(12,2) -> numeric(14,4): 12.30 becomes 12.3000) changes no hash and opens no
-- version.
CREATE OR REPLACE FUNCTION sales.fn_product_hash(name text, category text,
                                                 price numeric, active boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(json_build_array(name, category, trim_scale(price), active)::text) $$;

-- The load procedures take the run id (`CALL sales.sp_load_fact_orders('run-...')`) and
-- stamp it into `loaded_run` of every row they write. Their zero-argument versions (from
-- earlier releases) would make a plain CALL ambiguous: dropped (a no-op once gone).
DROP PROCEDURE IF EXISTS sales.sp_merge_dim_customer();
DROP PROCEDURE IF EXISTS sales.sp_merge_dim_product();
DROP PROCEDURE IF EXISTS sales.sp_load_fact_orders();
DROP PROCEDURE IF EXISTS sales.sp_load_fact_order_items();

-- Days p_from..p_to that dim_date lacks; existing days are left untouched.
CREATE OR REPLACE PROCEDURE sales.sp_fill_dim_date(p_from date, p_to date)
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO sales.dim_date (date_key, full_date, year, quarter, month, month_name, day,
                                day_of_week, is_weekend)
    SELECT sales.fn_date_key(g.d), g.d::date, extract(year FROM g.d)::smallint,
           extract(quarter FROM g.d)::smallint, extract(month FROM g.d)::smallint,
           to_char(g.d, 'FMMonth'), extract(day FROM g.d)::smallint,
           extract(isodow FROM g.d)::smallint, extract(isodow FROM g.d) IN (6, 7)
    FROM generate_series(p_from::timestamp, p_to::timestamp, interval '1 day') AS g(d)
    ON CONFLICT (date_key) DO NOTHING;
END
$$;

-- SCD2 customers. Per key of staging:
--   new key                 -> first version, valid from 0001-01-01;
--   attributes changed      -> current version closed at the change's updated_at and a new
--                              one opened there (a change stamped at or before the current
--                              version's start would make an empty range: it overwrites it);
--   gone from staging       -> current version closed at load time (deleted at the source);
--   back after a deletion   -> a new version, from max(updated_at, the last version's end).
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_customer(p_run_id text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_load_ts timestamp := now() AT TIME ZONE 'UTC';
BEGIN
    -- Two loaders at once would both open versions; serialize them (readers are not blocked).
    LOCK TABLE sales.dim_customer IN SHARE ROW EXCLUSIVE MODE;
    -- An empty staging table is a failed hand-off far more often than a source that lost
    -- every row; closing every customer on it would be wrong and noisy to undo.
    IF NOT EXISTS (SELECT 1 FROM sales.stg_customers)
       AND EXISTS (SELECT 1 FROM sales.dim_customer WHERE is_current) THEN
        RAISE EXCEPTION 'staging table `sales.stg_customers` is empty; refusing to close every '
                        'current row of `sales.dim_customer`'
            USING HINT = 'load staging before calling sp_merge_dim_customer';
    END IF;

    MERGE INTO sales.dim_customer AS d
    USING (SELECT s.*, sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country)
                       AS attr_hash,
                  coalesce(s.updated_at, v_load_ts) AS change_ts
           FROM sales.stg_customers AS s) AS s
    ON d.customer_id = s.customer_id AND d.is_current
    WHEN MATCHED AND d.attr_hash <> s.attr_hash AND s.change_ts > d.record_start_ts THEN
        UPDATE SET record_end_ts = s.change_ts, is_current = false
    WHEN MATCHED AND d.attr_hash <> s.attr_hash THEN
        UPDATE SET name = s.name, email_hash = s.email_hash, city = s.city,
                   country = s.country, attr_hash = s.attr_hash, loaded_run = p_run_id;

    UPDATE sales.dim_customer AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current
      AND NOT EXISTS (SELECT 1 FROM sales.stg_customers AS s
                      WHERE s.customer_id = d.customer_id);

    -- Every staging key without a current version now gets one: new keys, keys closed by
    -- the MERGE above, keys that came back.
    INSERT INTO sales.dim_customer (customer_id, name, email_hash, city, country, attr_hash,
                                    record_start_ts, record_end_ts, is_current, loaded_run)
    SELECT s.customer_id, s.name, s.email_hash, s.city, s.country,
           sales.fn_customer_hash(s.name, s.email_hash, s.city, s.country),
           CASE WHEN h.last_end IS NULL THEN timestamp '0001-01-01'
                ELSE greatest(coalesce(s.updated_at, v_load_ts), h.last_end) END,
           timestamp '9999-12-31', true, p_run_id
    FROM sales.stg_customers AS s
    LEFT JOIN (SELECT customer_id, max(record_end_ts) AS last_end
               FROM sales.dim_customer GROUP BY customer_id) AS h
           ON h.customer_id = s.customer_id
    WHERE NOT EXISTS (SELECT 1 FROM sales.dim_customer AS d
                      WHERE d.customer_id = s.customer_id AND d.is_current);
END
$$;

-- SCD2 products: the same rules as customers, on name, category, price, active.
CREATE OR REPLACE PROCEDURE sales.sp_merge_dim_product(p_run_id text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_load_ts timestamp := now() AT TIME ZONE 'UTC';
BEGIN
    LOCK TABLE sales.dim_product IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM sales.stg_products)
       AND EXISTS (SELECT 1 FROM sales.dim_product WHERE is_current) THEN
        RAISE EXCEPTION 'staging table `sales.stg_products` is empty; refusing to close every '
                        'current row of `sales.dim_product`'
            USING HINT = 'load staging before calling sp_merge_dim_product';
    END IF;

    MERGE INTO sales.dim_product AS d
    USING (SELECT s.*, sales.fn_product_hash(s.name, s.category, s.price, s.active)
                       AS attr_hash,
                  coalesce(s.updated_at, v_load_ts) AS change_ts
           FROM sales.stg_products AS s) AS s
    ON d.product_id = s.product_id AND d.is_current
    WHEN MATCHED AND d.attr_hash <> s.attr_hash AND s.change_ts > d.record_start_ts THEN
        UPDATE SET record_end_ts = s.change_ts, is_current = false
    WHEN MATCHED AND d.attr_hash <> s.attr_hash THEN
        UPDATE SET name = s.name, category = s.category, price = s.price,
                   active = s.active, attr_hash = s.attr_hash, loaded_run = p_run_id;

    UPDATE sales.dim_product AS d
    SET is_current = false, record_end_ts = greatest(v_load_ts, d.record_start_ts)
    WHERE d.is_current
      AND NOT EXISTS (SELECT 1 FROM sales.stg_products AS s WHERE s.product_id = d.product_id);

    INSERT INTO sales.dim_product (product_id, name, category, price, active, attr_hash,
                                   record_start_ts, record_end_ts, is_current, loaded_run)
    SELECT s.product_id, s.name, s.category, s.price, s.active,
           sales.fn_product_hash(s.name, s.category, s.price, s.active),
           CASE WHEN h.last_end IS NULL THEN timestamp '0001-01-01'
                ELSE greatest(coalesce(s.updated_at, v_load_ts), h.last_end) END,
           timestamp '9999-12-31', true, p_run_id
    FROM sales.stg_products AS s
    LEFT JOIN (SELECT product_id, max(record_end_ts) AS last_end
               FROM sales.dim_product GROUP BY product_id) AS h
           ON h.product_id = s.product_id
    WHERE NOT EXISTS (SELECT 1 FROM sales.dim_product AS d
                      WHERE d.product_id = s.product_id AND d.is_current);
END
$$;

-- Orders: upsert from staging (only rows that differ are touched), then delete the orders
-- staging no longer holds. customer_sk is the version valid at order_ts; item_count and
-- order_total sum the order's staged items (0 for an order without items).
CREATE OR REPLACE PROCEDURE sales.sp_load_fact_orders(p_run_id text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
    LOCK TABLE sales.fact_orders IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM sales.stg_orders)
       AND EXISTS (SELECT 1 FROM sales.fact_orders) THEN
        RAISE EXCEPTION 'staging table `sales.stg_orders` is empty; refusing to delete every '
                        'row of `sales.fact_orders`'
            USING HINT = 'load staging before calling sp_load_fact_orders';
    END IF;
    -- The mart joins dim_date on date_key: make sure every order day has its row (only
    -- the days that occur: orders from 1000-01-01 to 9999-12-31 must not mean 3 million).
    INSERT INTO sales.dim_date (date_key, full_date, year, quarter, month, month_name, day,
                                day_of_week, is_weekend)
    SELECT sales.fn_date_key(d), d::date, extract(year FROM d)::smallint,
           extract(quarter FROM d)::smallint, extract(month FROM d)::smallint,
           to_char(d, 'FMMonth'), extract(day FROM d)::smallint,
           extract(isodow FROM d)::smallint, extract(isodow FROM d) IN (6, 7)
    FROM (SELECT DISTINCT date_trunc('day', order_ts) AS d FROM sales.stg_orders) AS days
    ON CONFLICT (date_key) DO NOTHING;

    MERGE INTO sales.fact_orders AS f
    USING (SELECT o.order_id, o.customer_id, c.customer_sk,
                  sales.fn_date_key(o.order_ts) AS date_key, o.status, o.platform,
                  o.payment_method, o.order_ts, o.updated_at,
                  coalesce(i.item_count, 0)::bigint AS item_count,
                  coalesce(i.order_total, 0) AS order_total
           FROM sales.stg_orders AS o
           LEFT JOIN (SELECT order_id, sum(quantity) AS item_count,
                             sum(quantity * unit_price) AS order_total
                      FROM sales.stg_order_items GROUP BY order_id) AS i
                  ON i.order_id = o.order_id
           LEFT JOIN sales.dim_customer AS c
                  ON c.customer_id = o.customer_id
                 AND o.order_ts >= c.record_start_ts
                 AND (o.order_ts < c.record_end_ts OR c.is_current)) AS s
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

    DELETE FROM sales.fact_orders AS f
    WHERE NOT EXISTS (SELECT 1 FROM sales.stg_orders AS s WHERE s.order_id = f.order_id);
END
$$;

-- Order lines: the same upsert + delete. An item whose order is not staged has no order
-- time (so no date, no product version): it is left out, exactly as the order is, which
-- keeps fact_order_items consistent with fact_orders.
CREATE OR REPLACE PROCEDURE sales.sp_load_fact_order_items(p_run_id text DEFAULT NULL)
LANGUAGE plpgsql
AS $$
BEGIN
    LOCK TABLE sales.fact_order_items IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT 1 FROM sales.stg_order_items)
       AND EXISTS (SELECT 1 FROM sales.fact_order_items) THEN
        RAISE EXCEPTION 'staging table `sales.stg_order_items` is empty; refusing to delete '
                        'every row of `sales.fact_order_items`'
            USING HINT = 'load staging before calling sp_load_fact_order_items';
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
                 AND (o.order_ts < p.record_end_ts OR p.is_current)) AS s
    ON f.order_item_id = s.order_item_id
    WHEN MATCHED AND (f.order_id, f.product_id, f.product_sk, f.date_key, f.quantity,
                      f.unit_price, f.line_total)
            IS DISTINCT FROM (s.order_id, s.product_id, s.product_sk, s.date_key, s.quantity,
                              s.unit_price, s.line_total) THEN
        UPDATE SET order_id = s.order_id, product_id = s.product_id,
                   product_sk = s.product_sk, date_key = s.date_key, quantity = s.quantity,
                   unit_price = s.unit_price, line_total = s.line_total,
                   loaded_run = p_run_id
    WHEN NOT MATCHED THEN
        INSERT (order_item_id, order_id, product_id, product_sk, date_key, quantity,
                unit_price, line_total, loaded_run)
        VALUES (s.order_item_id, s.order_id, s.product_id, s.product_sk, s.date_key,
                s.quantity, s.unit_price, s.line_total, p_run_id);

    -- "Still in staging" means "in the joined set": an item orphaned by its order goes too.
    DELETE FROM sales.fact_order_items AS f
    WHERE NOT EXISTS (SELECT 1 FROM sales.stg_order_items AS i
                      JOIN sales.stg_orders AS o ON o.order_id = i.order_id
                      WHERE i.order_item_id = f.order_item_id);
END
$$;

-- The dashboard's one source: every order line with its order and the customer and
-- product versions valid when the order was placed (not the current ones), so a customer
-- who moved keeps past sales in the old city. LEFT JOINs: a line is never dropped for a
-- missing version, so totals over the view equal totals over the facts.
CREATE OR REPLACE VIEW sales.v_sales_mart AS
SELECT o.order_ts::date AS order_date,
       date_trunc('month', o.order_ts)::date AS order_month,
       i.date_key,
       dd.year,
       dd.quarter,
       dd.month_name,
       dd.is_weekend,
       o.order_id,
       i.order_item_id,
       o.customer_id,
       c.customer_sk,
       c.city,
       c.country,
       o.platform,
       o.payment_method,
       o.status,
       i.product_id,
       p.product_sk,
       p.name AS product_name,
       p.category,
       i.quantity,
       i.unit_price,
       i.line_total,
       o.order_ts
FROM sales.fact_order_items AS i
JOIN sales.fact_orders AS o ON o.order_id = i.order_id
LEFT JOIN sales.dim_customer AS c
       ON c.customer_id = o.customer_id
      AND o.order_ts >= c.record_start_ts AND (o.order_ts < c.record_end_ts OR c.is_current)
LEFT JOIN sales.dim_product AS p
       ON p.product_id = i.product_id
      AND o.order_ts >= p.record_start_ts AND (o.order_ts < p.record_end_ts OR p.is_current)
LEFT JOIN sales.dim_date AS dd ON dd.date_key = i.date_key;

-- Warehouses made by earlier versions, brought up to date (each statement a no-op after):
-- first versions started at 1900-01-01 (orders before 1900 found no version), and product
-- hashes were taken of the price with its trailing zeros.
UPDATE sales.dim_customer AS d SET record_start_ts = timestamp '0001-01-01'
WHERE d.record_start_ts = timestamp '1900-01-01'
  AND NOT EXISTS (SELECT 1 FROM sales.dim_customer AS e
                  WHERE e.customer_id = d.customer_id AND e.record_start_ts < d.record_start_ts);
UPDATE sales.dim_product AS d SET record_start_ts = timestamp '0001-01-01'
WHERE d.record_start_ts = timestamp '1900-01-01'
  AND NOT EXISTS (SELECT 1 FROM sales.dim_product AS e
                  WHERE e.product_id = d.product_id AND e.record_start_ts < d.record_start_ts);
UPDATE sales.dim_product
SET attr_hash = sales.fn_product_hash(name, category, price, active)
WHERE attr_hash <> sales.fn_product_hash(name, category, price, active);
