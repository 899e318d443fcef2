"""Paced OLTP traffic on `shop`: one kind of change per transaction, `rate` per second.

Each transaction is a real BEGIN..COMMIT on the source, so every change lands in the binlog
as the CDC service will see it in production. Children are deleted before parents in the
same transaction because the foreign keys do not cascade (cascades bypass the binlog).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pymysql

from pipeline.aws.secrets import mysql_credentials
from pipeline.config import Settings
from pipeline.errors import TerminalError
from pipeline.progress import Progress, SilentProgress
from pipeline.source.db import translate
from pipeline.source.generate import (
    NEXT_STATUSES,
    TABLES,
    Pools,
    default_profile,
    phone_number,
    unique_email,
)
from pipeline.source.load import connect
from pipeline.source.profile import Profile, load_profile

LOG = logging.getLogger(__name__)

Connection = pymysql.connections.Connection
Cursor = pymysql.cursors.Cursor

IN_FLIGHT = ("placed", "paid", "shipped")
"""Statuses that usually move next; `delivered` only rarely turns into `returned`."""

LOCK_CONFLICTS = (1205, 1213)
"""Lock wait timeout and deadlock: the transaction is rolled back and counted as `aborted`."""


class Simulator:
    """One connection and one random sequence; `step()` runs one transaction."""

    def __init__(self, conn: Connection, rng: random.Random, pools: Pools,
                 profile: Profile | None = None) -> None:
        self.conn, self.rng, self.pools = conn, rng, pools
        self.profile = p = profile or default_profile()
        self.handlers: dict[str, Callable[[Cursor], bool]] = {
            "new_order": self.new_order, "status_change": self.status_change,
            "new_customer": self.new_customer, "address_change": self.address_change,
            "price_change": self.price_change, "delete_order": self.delete_order,
            "delete_customer": self.delete_customer,
        }
        self._kinds, self._weights = list(p.kinds), list(p.kinds.values())

    def step(self) -> str:
        """Run one transaction and return its kind (a fallback kind when the drawn one had
        nothing to act on, `aborted` after a lock conflict)."""
        kind = self.rng.choices(self._kinds, weights=self._weights)[0]
        for candidate in (kind, "new_order", "new_customer"):
            try:
                if self._transaction(self.handlers[candidate]):
                    return candidate
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in LOCK_CONFLICTS:
                    LOG.warning("`%s` rolled back after a lock conflict: %s", candidate, exc)
                    return "aborted"
                raise
        raise AssertionError("new_customer always succeeds")  # pragma: no cover

    def _transaction(self, handler: Callable[[Cursor], bool]) -> bool:
        self.conn.begin()
        try:
            with self.conn.cursor() as cur:
                done = handler(cur)
        except BaseException:
            # On a lost connection the rollback fails too: keep the first error.
            with contextlib.suppress(pymysql.err.Error):
                self.conn.rollback()
            raise
        if done:
            self.conn.commit()
        else:
            self.conn.rollback()
        return done

    def _pick_id(self, cur: Cursor, table: str, where: str = "1 = 1", args: tuple = (),
                 recent: int = 0) -> int | None:
        """A random existing id of `table` matching `where`, locked for update.

        Draws a point in the id range (the newest `recent` ids when given) and takes the first
        match at or after it, wrapping to the start; ids may have gaps after deletes.
        """
        cur.execute(f"SELECT MIN(id), MAX(id) FROM `{table}`")
        low, high = cur.fetchone()
        if high is None:
            return None
        if recent:
            low = max(low, high - recent)
        start = self.rng.randint(low, high)
        for bound, op in ((start, ">="), (start, "<")):
            cur.execute(f"SELECT id FROM `{table}` WHERE {where} AND id {op} %s "
                        "ORDER BY id LIMIT 1 FOR UPDATE", (*args, bound))
            row = cur.fetchone()
            if row:
                return int(row[0])
        return None

    # -- the kinds -----------------------------------------------------------------------
    def new_customer(self, cur: Cursor) -> bool:
        countries = self.profile.countries
        country = self.rng.choices(list(countries),
                                   weights=[c.weight for c in countries.values()])[0]
        spec = countries[country]
        first = self.rng.choice(self.pools.first_names[country])
        last = self.rng.choice(self.pools.last_names[country])
        domain = self.rng.choice(self.pools.email_domains[country])
        for _ in range(10):
            # The table already holds addresses like the generator's, so a number goes in
            # front of the `@`; a clash fails only this statement and draws again.
            email = unique_email(self.rng, first, last, domain, set(),
                                 self.profile.email_formats)
            email = email.replace("@", f"{self.rng.randint(100, 99_999)}@")
            try:
                cur.execute("INSERT INTO customers (name, email, phone, city, country) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            (f"{first} {last}", email, phone_number(self.rng, spec.calling_code),
                             self.rng.choice(spec.cities), country))
                return True
            except pymysql.err.IntegrityError as exc:
                if exc.args[0] != 1062:
                    raise
        return False

    def new_order(self, cur: Cursor) -> bool:
        customer_id = self._pick_id(cur, "customers")
        if customer_id is None:
            return False
        items: dict[int, Decimal] = {}
        for _ in range(self.rng.randint(1, 5)):
            product_id = self._pick_id(cur, "products", "active = 1")
            if product_id is None:
                return False
            cur.execute("SELECT price FROM products WHERE id = %s", (product_id,))
            items[product_id] = cur.fetchone()[0]
        platforms = self.profile.platforms
        platform = self.rng.choices(list(platforms), weights=list(platforms.values()))[0]
        methods = self.profile.payments[platform]
        payment = self.rng.choices(list(methods), weights=list(methods.values()))[0]
        cur.execute("INSERT INTO orders (customer_id, status, platform, payment_method, order_ts) "
                    "VALUES (%s, 'placed', %s, %s, CURRENT_TIMESTAMP(6))",
                    (customer_id, platform, payment))
        order_id = cur.lastrowid
        cur.executemany("INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                        "VALUES (%s, %s, %s, %s)",
                        [(order_id, pid, self.rng.choices((1, 2, 3), (80, 15, 5))[0], price)
                         for pid, price in items.items()])
        return True

    def status_change(self, cur: Cursor) -> bool:
        # Mostly orders still in flight; now and then a delivered one comes back.
        statuses = ("delivered",) if self.rng.random() < 0.05 else IN_FLIGHT
        where = f"status IN ({', '.join(['%s'] * len(statuses))})"
        order_id = self._pick_id(cur, "orders", where, statuses,
                                 recent=self.profile.recent_window)
        if order_id is None:
            order_id = self._pick_id(cur, "orders", where, statuses)
        if order_id is None:
            return False
        cur.execute("SELECT status FROM orders WHERE id = %s", (order_id,))
        moves = NEXT_STATUSES[cur.fetchone()[0]]
        weights = self.profile.status_move_weights
        target = self.rng.choices(moves, weights=[weights.get(m, 0) for m in moves])[0]
        cur.execute("UPDATE orders SET status = %s WHERE id = %s", (target, order_id))
        return True

    def price_change(self, cur: Cursor) -> bool:
        product_id = self._pick_id(cur, "products")
        if product_id is None:
            return False
        cur.execute("SELECT price FROM products WHERE id = %s", (product_id,))
        old: Decimal = cur.fetchone()[0]
        factor = Decimal(str(round(self.rng.uniform(0.85, 1.15), 2)))
        new = max((old * factor).quantize(Decimal("0.01")), Decimal("0.49"))
        if new == old:
            new += Decimal("0.50")
        cur.execute("UPDATE products SET price = %s WHERE id = %s", (new, product_id))
        return True

    def address_change(self, cur: Cursor) -> bool:
        customer_id = self._pick_id(cur, "customers")
        if customer_id is None:
            return False
        cur.execute("SELECT city, country FROM customers WHERE id = %s", (customer_id,))
        city, country = cur.fetchone()
        countries = self.profile.countries
        if self.rng.random() < 0.3 or country not in countries:
            country = self.rng.choice(list(countries))
        choices = [c for c in countries[country].cities if c != city]
        cur.execute("UPDATE customers SET city = %s, country = %s WHERE id = %s",
                    (self.rng.choice(choices), country, customer_id))
        return True

    def delete_order(self, cur: Cursor) -> bool:
        order_id = self._pick_id(cur, "orders", "status = %s", ("cancelled",))
        if order_id is None:
            order_id = self._pick_id(cur, "orders")
        if order_id is None:
            return False
        cur.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
        cur.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        return True

    def delete_customer(self, cur: Cursor) -> bool:
        customer_id = self._pick_id(
            cur, "customers",
            "NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id)")
        if customer_id is None:
            return False
        cur.execute("DELETE FROM customers WHERE id = %s", (customer_id,))
        return True


def simulate(settings: Settings, rate: float, duration: float | None = None,
             seed: int | None = None, progress: Progress | None = None,
             stop_event: threading.Event | None = None) -> dict[str, int]:
    """Run `rate` transactions per second until `duration` seconds pass, `stop_event` is set
    or KeyboardInterrupt; returns how many transactions of each kind committed."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    progress = progress or SilentProgress()
    stop_event = stop_event or threading.Event()
    rng = random.Random(seed)
    profile = load_profile(settings)
    pools = Pools.build(seed if seed is not None else rng.randrange(1 << 30), profile=profile)
    counts: Counter[str] = Counter()
    conn = connect(settings)
    try:
        _require_tables(conn, settings.mysql.database)
    except BaseException:
        conn.close()
        raise
    total = round(rate * duration) if duration else None
    progress.start("simulate", f"simulating {rate:g} transactions/s", total=total)
    began = time.monotonic()
    origin, done, last_report = began, 0, began  # transaction n is due at origin + n / rate
    ok = False
    try:
        sim = Simulator(conn, rng, pools, profile)
        while not stop_event.is_set():
            now = time.monotonic()
            if duration is not None and now - began >= duration:
                break
            due = origin + done / rate
            if due > now:
                if stop_event.wait(min(due - now, 0.5)):
                    break
                continue
            if now - due > 1.0:
                # Fell behind (slow database): drop the backlog instead of bursting to catch up.
                origin = now - done / rate
            counts[sim.step()] += 1
            done += 1
            progress.update("simulate", advance=1)
            if now - last_report >= 10:
                last_report = now
                progress.update("simulate", description=_summary(counts))
        ok = True
    except KeyboardInterrupt:
        LOG.info("simulation interrupted after %d transactions", done)
        ok = True
    except pymysql.err.Error as exc:
        raise translate(exc, mysql_credentials(settings), "simulating transactions") from exc
    finally:
        with contextlib.suppress(pymysql.err.Error):
            conn.close()
        progress.finish("simulate", ok=ok, message=_summary(counts))
    return dict(counts)


def _require_tables(conn: Connection, database: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()")
        missing = set(TABLES) - {row[0] for row in cur.fetchall()}
    conn.commit()
    if missing:
        raise TerminalError(f"database `{database}` lacks the tables "
                            f"{', '.join(f'`{t}`' for t in sorted(missing))}",
                            hint="create and fill them with `shoplake seed`")


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.most_common()) or "nothing yet"
