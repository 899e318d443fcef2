-- The OLTP source `shop` (stands in for RDS MySQL).
-- Runs unchanged on MariaDB 10.11 (native stack) and MySQL 8.4 (compose). pipeline/source/load.py drops
-- comment lines and splits the rest on semicolons at line ends: one statement per semicolon.
--
-- Choices the CDC service relies on:
-- * status/platform/payment_method are VARCHAR (CHECK-ed where the set is closed), not ENUM,
--   so the binlog carries plain strings rather than enum indexes.
-- * Foreign keys do not cascade: InnoDB performs cascaded changes below the binlog, so they
--   would never reach CDC. Writers delete children first, in the same transaction.
-- * `updated_at` is maintained by the database (ON UPDATE), though writers may set it.
-- * Timestamps are DATETIME(6) in UTC (the servers run with time_zone +00:00).

CREATE TABLE IF NOT EXISTS customers (
    id          INT           NOT NULL AUTO_INCREMENT,
    name        VARCHAR(100)  NOT NULL,
    email       VARCHAR(255)  NOT NULL,
    phone       VARCHAR(32)   NULL,
    city        VARCHAR(100)  NOT NULL,
    country     VARCHAR(100)  NOT NULL,
    created_at  DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                              ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_customers_email (email),
    KEY ix_customers_country_city (country, city),
    KEY ix_customers_updated_at (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS products (
    id          INT            NOT NULL AUTO_INCREMENT,
    name        VARCHAR(200)   NOT NULL,
    category    VARCHAR(50)    NOT NULL,
    price       DECIMAL(12, 2) NOT NULL,
    active      TINYINT(1)     NOT NULL DEFAULT 1,
    updated_at  DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                               ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_products_category (category),
    KEY ix_products_updated_at (updated_at),
    CONSTRAINT chk_products_price CHECK (price >= 0),
    CONSTRAINT chk_products_active CHECK (active IN (0, 1))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS orders (
    id              INT          NOT NULL AUTO_INCREMENT,
    customer_id     INT          NOT NULL,
    status          VARCHAR(16)  NOT NULL DEFAULT 'placed',
    platform        VARCHAR(16)  NOT NULL,
    payment_method  VARCHAR(32)  NOT NULL,
    order_ts        DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                                 ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_orders_customer_id (customer_id),
    KEY ix_orders_order_ts (order_ts),
    KEY ix_orders_status (status),
    KEY ix_orders_updated_at (updated_at),
    CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
        ON DELETE RESTRICT ON UPDATE RESTRICT,
    CONSTRAINT chk_orders_status CHECK (status IN ('placed', 'paid', 'shipped', 'delivered',
                                                   'cancelled', 'returned')),
    CONSTRAINT chk_orders_platform CHECK (platform IN ('Website', 'Mobile', 'In-store'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS order_items (
    id          INT            NOT NULL AUTO_INCREMENT,
    order_id    INT            NOT NULL,
    product_id  INT            NOT NULL,
    quantity    INT            NOT NULL,
    unit_price  DECIMAL(12, 2) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_order_items_order_product (order_id, product_id),
    KEY ix_order_items_product_id (product_id),
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE RESTRICT ON UPDATE RESTRICT,
    CONSTRAINT fk_order_items_product FOREIGN KEY (product_id) REFERENCES products (id)
        ON DELETE RESTRICT ON UPDATE RESTRICT,
    CONSTRAINT chk_order_items_quantity CHECK (quantity > 0),
    CONSTRAINT chk_order_items_unit_price CHECK (unit_price >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
