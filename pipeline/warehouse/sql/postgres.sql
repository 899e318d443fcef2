-- Generated from pipeline/warehouse/model.py by `python -m pipeline.warehouse.ddl`;
-- edit the model, not this file (a unit test fails when they drift).
-- PostgreSQL 15 (the Redshift stand-in). Procedures: procedures.sql.

CREATE SCHEMA IF NOT EXISTS sales;

CREATE TABLE IF NOT EXISTS sales.stg_customers (
    customer_id integer NOT NULL,
    name        text,
    email_hash  text,
    phone_hash  text,
    city        text,
    country     text,
    created_at  timestamp,
    updated_at  timestamp,
    change_seq  text,
    commit_ts   timestamp,
    PRIMARY KEY (customer_id)
);
COMMENT ON TABLE sales.stg_customers IS 'Silver customers, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_products (
    product_id integer NOT NULL,
    name       text,
    category   text,
    price      numeric(12,2),
    active     boolean,
    updated_at timestamp,
    change_seq text,
    commit_ts  timestamp,
    PRIMARY KEY (product_id)
);
COMMENT ON TABLE sales.stg_products IS 'Silver products, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_orders (
    order_id       integer NOT NULL,
    customer_id    integer NOT NULL,
    status         text,
    platform       text,
    payment_method text,
    order_ts       timestamp NOT NULL,
    updated_at     timestamp,
    PRIMARY KEY (order_id)
);
COMMENT ON TABLE sales.stg_orders IS 'Silver orders, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_order_items (
    order_item_id integer NOT NULL,
    order_id      integer NOT NULL,
    product_id    integer NOT NULL,
    quantity      integer NOT NULL,
    unit_price    numeric(12,2) NOT NULL,
    PRIMARY KEY (order_item_id)
);
COMMENT ON TABLE sales.stg_order_items IS 'Silver order items, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.dim_customer (
    customer_sk     bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    customer_id     integer NOT NULL,
    name            text,
    email_hash      text,
    city            text,
    country         text,
    attr_hash       text NOT NULL,
    record_start_ts timestamp NOT NULL,
    record_end_ts   timestamp DEFAULT '9999-12-31 00:00:00' NOT NULL,
    is_current      boolean DEFAULT true NOT NULL,
    loaded_run      text,
    change_seq      text,
    generation      text,
    PRIMARY KEY (customer_sk)
);
COMMENT ON TABLE sales.dim_customer IS 'Customers, SCD type 2 on name, email, city, country.';
CREATE UNIQUE INDEX IF NOT EXISTS ux_dim_customer_current ON sales.dim_customer (customer_id) WHERE is_current;
CREATE INDEX IF NOT EXISTS ix_dim_customer_validity ON sales.dim_customer (customer_id, record_start_ts);

CREATE TABLE IF NOT EXISTS sales.dim_product (
    product_sk      bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    product_id      integer NOT NULL,
    name            text,
    category        text,
    price           numeric(12,2),
    active          boolean,
    attr_hash       text NOT NULL,
    record_start_ts timestamp NOT NULL,
    record_end_ts   timestamp DEFAULT '9999-12-31 00:00:00' NOT NULL,
    is_current      boolean DEFAULT true NOT NULL,
    loaded_run      text,
    change_seq      text,
    generation      text,
    PRIMARY KEY (product_sk)
);
COMMENT ON TABLE sales.dim_product IS 'Products, SCD type 2 on name, category, price, active.';
CREATE UNIQUE INDEX IF NOT EXISTS ux_dim_product_current ON sales.dim_product (product_id) WHERE is_current;
CREATE INDEX IF NOT EXISTS ix_dim_product_validity ON sales.dim_product (product_id, record_start_ts);

CREATE TABLE IF NOT EXISTS sales.dim_date (
    date_key    integer NOT NULL,
    full_date   date NOT NULL,
    year        smallint NOT NULL,
    quarter     smallint NOT NULL,
    month       smallint NOT NULL,
    month_name  text NOT NULL,
    day         smallint NOT NULL,
    day_of_week smallint NOT NULL,
    is_weekend  boolean NOT NULL,
    PRIMARY KEY (date_key)
);
COMMENT ON TABLE sales.dim_date IS 'One row per calendar day; date_key is yyyymmdd.';

CREATE TABLE IF NOT EXISTS sales.fact_orders (
    order_id       integer NOT NULL,
    customer_id    integer NOT NULL,
    customer_sk    bigint,
    date_key       integer NOT NULL,
    status         text,
    platform       text,
    payment_method text,
    order_ts       timestamp NOT NULL,
    updated_at     timestamp,
    item_count     bigint NOT NULL,
    order_total    numeric(38,2) NOT NULL,
    loaded_run     text,
    PRIMARY KEY (order_id)
);
COMMENT ON TABLE sales.fact_orders IS 'One row per order, with its items summed.';
CREATE INDEX IF NOT EXISTS ix_fact_orders_date_key ON sales.fact_orders (date_key);
CREATE INDEX IF NOT EXISTS ix_fact_orders_customer_id ON sales.fact_orders (customer_id);

CREATE TABLE IF NOT EXISTS sales.fact_order_items (
    order_item_id integer NOT NULL,
    order_id      integer NOT NULL,
    product_id    integer NOT NULL,
    product_sk    bigint,
    date_key      integer NOT NULL,
    quantity      integer NOT NULL,
    unit_price    numeric(12,2) NOT NULL,
    line_total    numeric(22,2) NOT NULL,
    loaded_run    text,
    PRIMARY KEY (order_item_id)
);
COMMENT ON TABLE sales.fact_order_items IS 'One row per order line, priced at the time of the order.';
CREATE INDEX IF NOT EXISTS ix_fact_order_items_order_id ON sales.fact_order_items (order_id);
CREATE INDEX IF NOT EXISTS ix_fact_order_items_date_key ON sales.fact_order_items (date_key);

CREATE TABLE IF NOT EXISTS sales.load_state (
    staging         text NOT NULL,
    silver_snapshot text NOT NULL,
    rows            bigint NOT NULL,
    run_id          text,
    loaded_at       timestamp NOT NULL,
    generation      text,
    PRIMARY KEY (staging)
);
COMMENT ON TABLE sales.load_state IS 'Which silver snapshot each staging table holds, and which run loaded it, so unchanged input is not copied again (survives `warehouse init`).';

CREATE TABLE IF NOT EXISTS sales.staging_batches (
    batch            bigint NOT NULL,
    staging          text NOT NULL,
    kind             text NOT NULL,
    silver_snapshot  text,
    changes_snapshot text,
    rows             bigint NOT NULL,
    keys             bigint,
    run_id           text,
    loaded_at        timestamp NOT NULL,
    PRIMARY KEY (batch)
);
COMMENT ON TABLE sales.staging_batches IS 'Each write of a staging table: a full copy or the changed keys only, which silver snapshot and change-log snapshot it brought, and how many rows.';
CREATE INDEX IF NOT EXISTS ix_staging_batches_staging ON sales.staging_batches (staging, batch);

CREATE TABLE IF NOT EXISTS sales.staged_keys (
    staging text NOT NULL,
    batch   bigint NOT NULL,
    key     bigint NOT NULL,
    since   timestamp,
    PRIMARY KEY (staging, batch, key)
);
COMMENT ON TABLE sales.staged_keys IS 'The keys each delta batch replaced in its staging table (present or deleted): what the procedures merge. For a dimension''s keys, since: from when on its merge may have changed the key''s versions (the facts re-point orders from then on). Pruned once every procedure has merged them.';

CREATE TABLE IF NOT EXISTS sales.procedure_state (
    procedure      text NOT NULL,
    consumed_batch bigint,
    full_batch     bigint,
    dims_seen      bigint,
    mode           text,
    keys           bigint,
    called_at      timestamp,
    PRIMARY KEY (procedure)
);
COMMENT ON TABLE sales.procedure_state IS 'The last staging batch each load procedure merged, whether it merged everything (full) or the changed keys only, and how many keys.';

CREATE TABLE IF NOT EXISTS sales.reconcile_state (
    scope         text NOT NULL,
    last_batch    bigint,
    last_full_day date,
    last_full_run text,
    checked_at    timestamp,
    PRIMARY KEY (scope)
);
COMMENT ON TABLE sales.reconcile_state IS 'Up to which staging batch gold was last reconciled and found exact, and the UTC day of the last full reconcile: an incremental reconcile checks the keys of later batches only.';

CREATE TABLE IF NOT EXISTS sales.pipeline_runs (
    run_id           text NOT NULL,
    status           text NOT NULL,
    trigger          text,
    started_at       timestamp NOT NULL,
    stopped_at       timestamp,
    seconds          numeric(12,1),
    failed_state     text,
    error            text,
    newest_change_ts timestamp,
    recorded_at      timestamp NOT NULL,
    PRIMARY KEY (run_id)
);
COMMENT ON TABLE sales.pipeline_runs IS 'The pipeline''s Step Functions executions: status, trigger, duration, and the newest source change the run brought to gold.';

CREATE TABLE IF NOT EXISTS sales.pipeline_layer_rows (
    run_id      text NOT NULL,
    measured_at timestamp NOT NULL,
    table_name  text NOT NULL,
    layer       text NOT NULL,
    rows        bigint,
    PRIMARY KEY (run_id, table_name, layer)
);
COMMENT ON TABLE sales.pipeline_layer_rows IS 'Rows of each source table in each layer (source, bronze change records, silver, gold) when a run ended.';

CREATE TABLE IF NOT EXISTS sales.pipeline_held_rows (
    run_id      text NOT NULL,
    measured_at timestamp NOT NULL,
    table_name  text NOT NULL,
    reason      text NOT NULL,
    rows        bigint NOT NULL,
    PRIMARY KEY (run_id, table_name, reason)
);
COMMENT ON TABLE sales.pipeline_held_rows IS 'Rows and bronze files held in quarantine when a run ended, by table and reason.';
