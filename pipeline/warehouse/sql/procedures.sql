-- Load procedures and the mart view of schema `sales` (PostgreSQL 15, PL/pgSQL).
-- Applied by `shoplake warehouse init` after postgres.sql and scd2.sql (the SCD2 merges
-- and hash functions, rendered from the model); every statement is idempotent.
--
-- A run: COPY each silver table's changed rows (or, the first time, its full state) into
-- staging, then
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
-- Their one-argument versions too: the procedures now also take p_full (merge everything,
-- not only the keys of the staging batches since the last call).
DROP PROCEDURE IF EXISTS sales.sp_merge_dim_customer(text);
DROP PROCEDURE IF EXISTS sales.sp_merge_dim_product(text);
DROP PROCEDURE IF EXISTS sales.sp_load_fact_orders(text);
DROP PROCEDURE IF EXISTS sales.sp_load_fact_order_items(text);

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

-- The fact loads (sp_load_fact_orders, sp_load_fact_order_items) are rendered with the
-- SCD2 merges into merges.sql (pipeline/warehouse/procedures.py): they share its
-- change-only scope (staging batches -> the keys to merge).

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
