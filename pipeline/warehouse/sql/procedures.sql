-- Load procedures and the mart view of schema `sales` (PostgreSQL 15, PL/pgSQL).
-- Applied by `shoplake warehouse init` after postgres.sql and scd2.sql (the SCD2 merges
-- and hash functions, rendered from the model); every statement is idempotent.
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
