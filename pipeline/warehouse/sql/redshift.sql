-- Generated from pipeline/warehouse/model.py by `python -m pipeline.warehouse.ddl`;
-- edit the model, not this file (a unit test fails when they drift).
-- Amazon Redshift. Not executed by shoplake; kept to show the AWS shape.

CREATE SCHEMA IF NOT EXISTS sales;

CREATE TABLE IF NOT EXISTS sales.stg_customers (
    customer_id INTEGER ENCODE raw NOT NULL,
    name        VARCHAR(400) ENCODE zstd,
    email_hash  VARCHAR(64) ENCODE zstd,
    phone_hash  VARCHAR(64) ENCODE zstd,
    city        VARCHAR(400) ENCODE zstd,
    country     VARCHAR(400) ENCODE zstd,
    created_at  TIMESTAMP ENCODE az64,
    updated_at  TIMESTAMP ENCODE az64,
    change_seq  VARCHAR(35) ENCODE zstd,
    commit_ts   TIMESTAMP ENCODE az64,
    PRIMARY KEY (customer_id)
)
DISTSTYLE KEY
DISTKEY (customer_id)
COMPOUND SORTKEY (customer_id);
COMMENT ON TABLE sales.stg_customers IS 'Silver customers, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_products (
    product_id INTEGER ENCODE raw NOT NULL,
    name       VARCHAR(800) ENCODE zstd,
    category   VARCHAR(200) ENCODE zstd,
    price      DECIMAL(12,2) ENCODE az64,
    active     BOOLEAN ENCODE zstd,
    updated_at TIMESTAMP ENCODE az64,
    change_seq VARCHAR(35) ENCODE zstd,
    commit_ts  TIMESTAMP ENCODE az64,
    PRIMARY KEY (product_id)
)
DISTSTYLE KEY
DISTKEY (product_id)
COMPOUND SORTKEY (product_id);
COMMENT ON TABLE sales.stg_products IS 'Silver products, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_orders (
    order_id       INTEGER ENCODE raw NOT NULL,
    customer_id    INTEGER ENCODE az64 NOT NULL,
    status         VARCHAR(64) ENCODE zstd,
    platform       VARCHAR(64) ENCODE zstd,
    payment_method VARCHAR(128) ENCODE zstd,
    order_ts       TIMESTAMP ENCODE az64 NOT NULL,
    updated_at     TIMESTAMP ENCODE az64,
    PRIMARY KEY (order_id)
)
DISTSTYLE KEY
DISTKEY (order_id)
COMPOUND SORTKEY (order_id);
COMMENT ON TABLE sales.stg_orders IS 'Silver orders, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.stg_order_items (
    order_item_id INTEGER ENCODE az64 NOT NULL,
    order_id      INTEGER ENCODE raw NOT NULL,
    product_id    INTEGER ENCODE az64 NOT NULL,
    quantity      INTEGER ENCODE az64 NOT NULL,
    unit_price    DECIMAL(12,2) ENCODE az64 NOT NULL,
    PRIMARY KEY (order_item_id)
)
DISTSTYLE KEY
DISTKEY (order_id)
COMPOUND SORTKEY (order_id);
COMMENT ON TABLE sales.stg_order_items IS 'Silver order items, full current state (COPY target).';

CREATE TABLE IF NOT EXISTS sales.dim_customer (
    customer_sk     BIGINT IDENTITY(1,1) ENCODE az64 NOT NULL,
    customer_id     INTEGER ENCODE raw NOT NULL,
    name            VARCHAR(400) ENCODE zstd,
    email_hash      VARCHAR(64) ENCODE zstd,
    city            VARCHAR(400) ENCODE zstd,
    country         VARCHAR(400) ENCODE zstd,
    attr_hash       VARCHAR(32) ENCODE zstd NOT NULL,
    record_start_ts TIMESTAMP ENCODE az64 NOT NULL,
    record_end_ts   TIMESTAMP DEFAULT '9999-12-31 00:00:00' ENCODE az64 NOT NULL,
    is_current      BOOLEAN DEFAULT true ENCODE zstd NOT NULL,
    loaded_run      VARCHAR(64) ENCODE zstd,
    change_seq      VARCHAR(35) ENCODE zstd,
    generation      VARCHAR(16) ENCODE zstd,
    PRIMARY KEY (customer_sk)
)
DISTSTYLE ALL
COMPOUND SORTKEY (customer_id, record_start_ts);
COMMENT ON TABLE sales.dim_customer IS 'Customers, SCD type 2 on name, email, city, country.';

CREATE TABLE IF NOT EXISTS sales.dim_product (
    product_sk      BIGINT IDENTITY(1,1) ENCODE az64 NOT NULL,
    product_id      INTEGER ENCODE raw NOT NULL,
    name            VARCHAR(800) ENCODE zstd,
    category        VARCHAR(200) ENCODE zstd,
    price           DECIMAL(12,2) ENCODE az64,
    active          BOOLEAN ENCODE zstd,
    attr_hash       VARCHAR(32) ENCODE zstd NOT NULL,
    record_start_ts TIMESTAMP ENCODE az64 NOT NULL,
    record_end_ts   TIMESTAMP DEFAULT '9999-12-31 00:00:00' ENCODE az64 NOT NULL,
    is_current      BOOLEAN DEFAULT true ENCODE zstd NOT NULL,
    loaded_run      VARCHAR(64) ENCODE zstd,
    change_seq      VARCHAR(35) ENCODE zstd,
    generation      VARCHAR(16) ENCODE zstd,
    PRIMARY KEY (product_sk)
)
DISTSTYLE ALL
COMPOUND SORTKEY (product_id, record_start_ts);
COMMENT ON TABLE sales.dim_product IS 'Products, SCD type 2 on name, category, price, active.';

CREATE TABLE IF NOT EXISTS sales.dim_date (
    date_key    INTEGER ENCODE raw NOT NULL,
    full_date   DATE ENCODE az64 NOT NULL,
    year        SMALLINT ENCODE az64 NOT NULL,
    quarter     SMALLINT ENCODE az64 NOT NULL,
    month       SMALLINT ENCODE az64 NOT NULL,
    month_name  VARCHAR(36) ENCODE zstd NOT NULL,
    day         SMALLINT ENCODE az64 NOT NULL,
    day_of_week SMALLINT ENCODE az64 NOT NULL,
    is_weekend  BOOLEAN ENCODE zstd NOT NULL,
    PRIMARY KEY (date_key)
)
DISTSTYLE ALL
COMPOUND SORTKEY (date_key);
COMMENT ON TABLE sales.dim_date IS 'One row per calendar day; date_key is yyyymmdd.';

CREATE TABLE IF NOT EXISTS sales.fact_orders (
    order_id       INTEGER ENCODE az64 NOT NULL,
    customer_id    INTEGER ENCODE az64 NOT NULL,
    customer_sk    BIGINT ENCODE az64,
    date_key       INTEGER ENCODE raw NOT NULL,
    status         VARCHAR(64) ENCODE zstd,
    platform       VARCHAR(64) ENCODE zstd,
    payment_method VARCHAR(128) ENCODE zstd,
    order_ts       TIMESTAMP ENCODE az64 NOT NULL,
    updated_at     TIMESTAMP ENCODE az64,
    item_count     BIGINT ENCODE az64 NOT NULL,
    order_total    DECIMAL(38,2) ENCODE az64 NOT NULL,
    loaded_run     VARCHAR(64) ENCODE zstd,
    PRIMARY KEY (order_id)
)
DISTSTYLE KEY
DISTKEY (order_id)
COMPOUND SORTKEY (date_key, order_id);
COMMENT ON TABLE sales.fact_orders IS 'One row per order, with its items summed.';

CREATE TABLE IF NOT EXISTS sales.fact_order_items (
    order_item_id INTEGER ENCODE az64 NOT NULL,
    order_id      INTEGER ENCODE az64 NOT NULL,
    product_id    INTEGER ENCODE az64 NOT NULL,
    product_sk    BIGINT ENCODE az64,
    date_key      INTEGER ENCODE raw NOT NULL,
    quantity      INTEGER ENCODE az64 NOT NULL,
    unit_price    DECIMAL(12,2) ENCODE az64 NOT NULL,
    line_total    DECIMAL(22,2) ENCODE az64 NOT NULL,
    loaded_run    VARCHAR(64) ENCODE zstd,
    PRIMARY KEY (order_item_id)
)
DISTSTYLE KEY
DISTKEY (order_id)
COMPOUND SORTKEY (date_key, order_id);
COMMENT ON TABLE sales.fact_order_items IS 'One row per order line, priced at the time of the order.';

CREATE TABLE IF NOT EXISTS sales.load_state (
    staging         VARCHAR(256) ENCODE zstd NOT NULL,
    silver_snapshot VARCHAR(256) ENCODE zstd NOT NULL,
    rows            BIGINT ENCODE az64 NOT NULL,
    run_id          VARCHAR(512) ENCODE zstd,
    loaded_at       TIMESTAMP ENCODE az64 NOT NULL,
    generation      VARCHAR(16) ENCODE zstd,
    PRIMARY KEY (staging)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.load_state IS 'Which silver snapshot each staging table holds, and which run loaded it, so unchanged input is not copied again (survives `warehouse init`).';

CREATE TABLE IF NOT EXISTS sales.staging_batches (
    batch            BIGINT ENCODE raw NOT NULL,
    staging          VARCHAR(256) ENCODE zstd NOT NULL,
    kind             VARCHAR(32) ENCODE zstd NOT NULL,
    silver_snapshot  VARCHAR(256) ENCODE zstd,
    changes_snapshot VARCHAR(256) ENCODE zstd,
    rows             BIGINT ENCODE az64 NOT NULL,
    keys             BIGINT ENCODE az64,
    run_id           VARCHAR(512) ENCODE zstd,
    loaded_at        TIMESTAMP ENCODE az64 NOT NULL,
    PRIMARY KEY (batch)
)
DISTSTYLE ALL
COMPOUND SORTKEY (batch);
COMMENT ON TABLE sales.staging_batches IS 'Each write of a staging table: a full copy or the changed keys only, which silver snapshot and change-log snapshot it brought, and how many rows.';

CREATE TABLE IF NOT EXISTS sales.staged_keys (
    staging VARCHAR(256) ENCODE zstd NOT NULL,
    batch   BIGINT ENCODE az64 NOT NULL,
    key     BIGINT ENCODE az64 NOT NULL,
    since   TIMESTAMP ENCODE az64,
    PRIMARY KEY (staging, batch, key)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.staged_keys IS 'The keys each delta batch replaced in its staging table (present or deleted): what the procedures merge. For a dimension''s keys, since: from when on its merge may have changed the key''s versions (the facts re-point orders from then on). Pruned once every procedure has merged them.';

CREATE TABLE IF NOT EXISTS sales.procedure_state (
    procedure      VARCHAR(256) ENCODE zstd NOT NULL,
    consumed_batch BIGINT ENCODE az64,
    full_batch     BIGINT ENCODE az64,
    dims_seen      BIGINT ENCODE az64,
    mode           VARCHAR(32) ENCODE zstd,
    keys           BIGINT ENCODE az64,
    called_at      TIMESTAMP ENCODE az64,
    PRIMARY KEY (procedure)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.procedure_state IS 'The last staging batch each load procedure merged, whether it merged everything (full) or the changed keys only, and how many keys.';

CREATE TABLE IF NOT EXISTS sales.reconcile_state (
    scope         VARCHAR(64) ENCODE zstd NOT NULL,
    last_batch    BIGINT ENCODE az64,
    last_full_day DATE ENCODE az64,
    last_full_run VARCHAR(512) ENCODE zstd,
    checked_at    TIMESTAMP ENCODE az64,
    PRIMARY KEY (scope)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.reconcile_state IS 'Up to which staging batch gold was last reconciled and found exact, and the UTC day of the last full reconcile: an incremental reconcile checks the keys of later batches only.';

CREATE TABLE IF NOT EXISTS sales.pipeline_runs (
    run_id           VARCHAR(512) ENCODE zstd NOT NULL,
    status           VARCHAR(64) ENCODE zstd NOT NULL,
    trigger          VARCHAR(128) ENCODE zstd,
    started_at       TIMESTAMP ENCODE raw NOT NULL,
    stopped_at       TIMESTAMP ENCODE az64,
    seconds          DECIMAL(12,1) ENCODE az64,
    failed_state     VARCHAR(512) ENCODE zstd,
    error            VARCHAR(4000) ENCODE zstd,
    newest_change_ts TIMESTAMP ENCODE az64,
    recorded_at      TIMESTAMP ENCODE az64 NOT NULL,
    PRIMARY KEY (run_id)
)
DISTSTYLE ALL
COMPOUND SORTKEY (started_at);
COMMENT ON TABLE sales.pipeline_runs IS 'The pipeline''s Step Functions executions: status, trigger, duration, and the newest source change the run brought to gold.';

CREATE TABLE IF NOT EXISTS sales.pipeline_layer_rows (
    run_id      VARCHAR(512) ENCODE zstd NOT NULL,
    measured_at TIMESTAMP ENCODE az64 NOT NULL,
    table_name  VARCHAR(256) ENCODE zstd NOT NULL,
    layer       VARCHAR(64) ENCODE zstd NOT NULL,
    rows        BIGINT ENCODE az64,
    PRIMARY KEY (run_id, table_name, layer)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.pipeline_layer_rows IS 'Rows of each source table in each layer (source, bronze change records, silver, gold) when a run ended.';

CREATE TABLE IF NOT EXISTS sales.pipeline_held_rows (
    run_id      VARCHAR(512) ENCODE zstd NOT NULL,
    measured_at TIMESTAMP ENCODE az64 NOT NULL,
    table_name  VARCHAR(256) ENCODE zstd NOT NULL,
    reason      VARCHAR(4000) ENCODE zstd NOT NULL,
    rows        BIGINT ENCODE az64 NOT NULL,
    PRIMARY KEY (run_id, table_name, reason)
)
DISTSTYLE ALL;
COMMENT ON TABLE sales.pipeline_held_rows IS 'Rows and bronze files held in quarantine when a run ended, by table and reason.';
