"""Deterministic, realistic rows for the `shop` source: same seed and anchor, same rows.

Faker builds small value pools once (names, e-mail domains, brands, colours); rows are then
assembled from those pools with seeded `random.Random` instances, which keeps scale 1
(10k customers, 1k products, 100k orders, ~250k order items) to a couple of seconds.
Orders span the 13 months before the anchor, with more volume in November and December,
skewed (Zipf-like) product popularity, and a status mix that depends on an order's age.
"""

from __future__ import annotations

import bisect
import math
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker

from pipeline.source import MAX_SCALE
from pipeline.source.profile import (
    NEXT_STATUSES,
    PLATFORMS,
    STATUSES,
    Category,
    Country,
    Profile,
    load_profile,
)

__all__ = ["COLUMNS", "NEXT_STATUSES", "PLATFORMS", "STATUSES", "TABLES", "Category",
           "Country", "Dataset", "Pools", "Profile", "default_profile", "generate"]

TABLES = ("customers", "products", "orders", "order_items")
"""Tables of `shop`, parents before children (the order to load them in)."""

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "name", "email", "phone", "city", "country", "created_at",
                  "updated_at"),
    "products": ("id", "name", "category", "price", "active", "updated_at"),
    "orders": ("id", "customer_id", "status", "platform", "payment_method", "order_ts",
               "updated_at"),
    "order_items": ("id", "order_id", "product_id", "quantity", "unit_price"),
}
"""Columns of each table, in the order the generated tuples carry them."""



def default_profile() -> Profile:
    """The default profile (seed/profiles/default.toml), read on first use and cached, so
    importing this module reads no file; `generate` and the simulator take another."""
    return load_profile()

CENT = Decimal("0.01")

Row = tuple[Any, ...]


@dataclass
class Dataset:
    """Generated rows per table (tuples in `COLUMNS` order) plus the facts behind them."""

    anchor: datetime
    start: datetime
    customers: list[Row] = field(default_factory=list)
    products: list[Row] = field(default_factory=list)
    orders: list[Row] = field(default_factory=list)
    order_items: list[Row] = field(default_factory=list)
    price_changes: dict[int, tuple[datetime, Decimal]] = field(default_factory=dict)
    """product id -> (when its price last changed, the price before that)."""
    deactivations: dict[int, datetime] = field(default_factory=dict)
    """product id -> when an inactive product was withdrawn (no orders after it)."""

    def rows(self, table: str) -> list[Row]:
        return getattr(self, table)

    def counts(self) -> dict[str, int]:
        return {table: len(self.rows(table)) for table in TABLES}

    def price_at(self, product_id: int, ts: datetime) -> Decimal:
        """What a product cost at `ts`: its old price before its last change, else today's."""
        change = self.price_changes.get(product_id)
        if change is not None and ts < change[0]:
            return change[1]
        return self.products[product_id - 1][3]


def default_anchor() -> datetime:
    """Today at midnight UTC (naive, like every timestamp in `shop`)."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day)


def months_before(ts: datetime, months: int) -> datetime:
    """`ts` moved back by whole calendar months, the day clamped to the target month."""
    index = ts.year * 12 + ts.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    days_in_month = (datetime(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return ts.replace(year=year, month=month, day=min(ts.day, days_in_month))


def generate(scale: float = 1.0, seed: int = 42, anchor: datetime | None = None,
             profile: Profile | None = None) -> Dataset:
    """All rows of `shop` for `scale` (fractions allowed), reproducible for `seed`, `anchor`
    and `profile` (default: seed/profiles/default.toml)."""
    if not 0 < scale <= MAX_SCALE:
        raise ValueError(f"scale must be above 0 and at most {MAX_SCALE}, got {scale}")
    p = profile or default_profile()
    anchor = _naive_utc(anchor or default_anchor())
    data = Dataset(anchor=anchor, start=months_before(anchor, p.history_months))
    pools = Pools.build(seed, profile=p)
    n_customers = max(1, round(p.base_counts["customers"] * scale))
    n_products = max(max(p.items_per_order), round(p.base_counts["products"] * scale))
    n_orders = max(1, round(p.base_counts["orders"] * scale))
    _customers(data, pools, random.Random(f"{seed}:customers"), n_customers, p)
    _products(data, pools, random.Random(f"{seed}:products"), n_products, p)
    _orders(data, random.Random(f"{seed}:orders"), n_orders, p)
    return data


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


@dataclass
class Pools:
    """Values Faker produces once per seed; rows only pick from these."""

    first_names: dict[str, list[str]]
    last_names: dict[str, list[str]]
    email_domains: dict[str, list[str]]
    brands: list[str]
    colors: list[str]

    @classmethod
    def build(cls, seed: int, size: int = 120, profile: Profile | None = None) -> Pools:
        first, last, domains = {}, {}, {}
        countries = (profile or default_profile()).countries
        for i, (country, spec) in enumerate(sorted(countries.items())):
            fake = Faker(spec.locale)
            fake.seed_instance(seed * 1000 + i)
            first[country] = _unique(fake.first_name() for _ in range(size))
            last[country] = _unique(fake.last_name() for _ in range(size))
            domains[country] = _unique(fake.free_email_domain() for _ in range(20))
        fake = Faker("en_US")
        fake.seed_instance(seed)
        brands = _unique(fake.last_name() for _ in range(80))
        colors = _unique(_split_camel(fake.color_name()) for _ in range(60))
        return cls(first, last, domains, brands, colors)


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))


def _split_camel(name: str) -> str:
    """Faker's CSS colour names (`DarkSlateBlue`) as words (`Dark Slate Blue`)."""
    return "".join(" " + c if c.isupper() and i else c for i, c in enumerate(name))


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if "a" <= c <= "z")


def _spread(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    """A uniformly random instant in [lo, hi), to the microsecond."""
    span = (hi - lo).total_seconds()
    return lo + timedelta(microseconds=int(rng.random() * span * 1_000_000))


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _customers(data: Dataset, pools: Pools, rng: random.Random, n: int, p: Profile) -> None:
    countries = sorted(p.countries)
    country_cum = _cumulative([p.countries[c].weight for c in countries])
    # Most customers signed up before the order history starts, the rest during it; the first
    # one always predates it so every order has someone to belong to.
    created = sorted(
        _spread(rng, data.start - timedelta(days=730), data.start) if rng.random() < 0.55
        else _spread(rng, data.start, data.anchor - timedelta(hours=1))
        for _ in range(n))
    created[0] = min(created[0], data.start - timedelta(days=1))
    taken: set[str] = set()
    for cid, created_at in enumerate(created, start=1):
        country = rng.choices(countries, cum_weights=country_cum)[0]
        spec = p.countries[country]
        first = rng.choice(pools.first_names[country])
        last = rng.choice(pools.last_names[country])
        email = unique_email(rng, first, last, rng.choice(pools.email_domains[country]), taken,
                             p.email_formats)
        phone = None if rng.random() < 0.03 else phone_number(rng, spec.calling_code)
        city = spec.cities[min(int(rng.expovariate(0.35)), len(spec.cities) - 1)]
        moved = rng.random() < 0.2
        updated_at = _spread(rng, created_at, data.anchor) if moved else created_at
        data.customers.append((cid, f"{first} {last}", email, phone, city, country, created_at,
                               updated_at))


def unique_email(rng: random.Random, first: str, last: str, domain: str,
                 taken: set[str], formats: Sequence[str] | None = None) -> str:
    """A plausible address for the name, numbered until it is not in `taken` (then added)."""
    f, la = _ascii(first) or "user", _ascii(last) or "mail"
    formats = formats or default_profile().email_formats
    local = rng.choice(formats).format(f=f, l=la, i=f[0], n=rng.randint(1, 99))
    email, k = f"{local}@{domain}", 1
    while email in taken:
        k += 1
        email = f"{local}{k}@{domain}"
    taken.add(email)
    return email


def phone_number(rng: random.Random, calling_code: str) -> str:
    digits = "".join(str(rng.randint(0, 9)) for _ in range(10))
    return f"{calling_code} {digits[:3]}-{digits[3:6]}-{digits[6:]}"


def price_point(rng: random.Random, lo: float, hi: float) -> Decimal:
    """A log-uniform price in [lo, hi] with a retail ending (19.99, 19.49 or 20.00)."""
    whole = Decimal(max(1, round(math.exp(rng.uniform(math.log(lo), math.log(hi))))))
    off = rng.choices((Decimal("0.01"), Decimal("0.51"), Decimal(0)), weights=(70, 15, 15))[0]
    return max(whole - off, Decimal("0.49")).quantize(CENT)


def _products(data: Dataset, pools: Pools, rng: random.Random, n: int, p: Profile) -> None:
    categories = list(p.categories)
    category_cum = _cumulative([p.categories[c].share for c in categories])
    for pid in range(1, n + 1):
        category = rng.choices(categories, cum_weights=category_cum)[0]
        spec = p.categories[category]
        name = (f"{rng.choice(pools.brands)} {rng.choice(p.adjectives)} "
                f"{rng.choice(spec.nouns)}")
        if spec.colored and rng.random() < 0.6:
            name += f", {rng.choice(pools.colors)}"
        price = price_point(rng, spec.price_lo, spec.price_hi)
        updated_at = _spread(rng, data.start - timedelta(days=400), data.start)
        if rng.random() < 0.25:
            changed_at = _spread(rng, data.start, data.anchor - timedelta(days=1))
            old = (price * Decimal(str(round(rng.uniform(0.8, 1.2), 2)))).quantize(CENT)
            data.price_changes[pid] = (changed_at, max(old, Decimal("0.99")))
            updated_at = changed_at
        active = rng.random() >= 0.04
        if not active:
            updated_at = _spread(rng, max(updated_at, data.start), data.anchor)
            data.deactivations[pid] = updated_at
        data.products.append((pid, name, category, price, int(active), updated_at))


def _order_times(data: Dataset, rng: random.Random, n: int, p: Profile) -> list[datetime]:
    """Order timestamps, sorted: seasonal by month, busier at weekends and in the evening."""
    days = []
    day = data.start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < data.anchor:
        days.append(day)
        day += timedelta(days=1)
    span = max(len(days) - 1, 1)
    weights = [p.month[d.month] * (p.weekend_factor if d.weekday() >= 5 else 1.0)
               * (1 + p.growth * i / span) for i, d in enumerate(days)]
    chosen = rng.choices(days, cum_weights=_cumulative(weights), k=n)
    hour_cum = _cumulative(p.hour_of_day)
    times = []
    for d in chosen:
        hour = rng.choices(range(24), cum_weights=hour_cum)[0]
        ts = d + timedelta(hours=hour, microseconds=rng.randrange(3600 * 1_000_000))
        times.append(min(max(ts, data.start), data.anchor - timedelta(microseconds=1)))
    return sorted(times)


def order_status(rng: random.Random, age: timedelta, p: Profile | None = None) -> str:
    """A status that fits an order placed `age` ago (recent: in flight; old: mostly done)."""
    hours = age.total_seconds() / 3600
    ages = (p or default_profile()).status_by_age
    mix = next(mix for bound, mix in ages if hours < bound)
    return rng.choices(list(mix), weights=list(mix.values()))[0]


def _orders(data: Dataset, rng: random.Random, n: int, p: Profile) -> None:
    created = [c[6] for c in data.customers]
    activity = _cumulative([rng.lognormvariate(0, 0.7) for _ in data.customers])
    product_ids = [p[0] for p in data.products]
    ranks = list(range(1, len(product_ids) + 1))
    rng.shuffle(ranks)  # popularity is unrelated to id
    # Zipf-Mandelbrot: a long tail, but no single product in most baskets; the offset grows
    # with the catalogue so the top tenth sells about half at every scale.
    offset = max(2, len(ranks) / 100)
    popularity = _cumulative([1 / (r + offset) for r in ranks])
    sizes, size_weights = list(p.items_per_order), list(p.items_per_order.values())
    quantities, quantity_weights = list(p.quantity), list(p.quantity.values())
    platforms, platform_weights = list(p.platforms), list(p.platforms.values())
    item_id = 0
    for oid, ts in enumerate(_order_times(data, rng, n, p), start=1):
        eligible = bisect.bisect_right(created, ts)
        pick = rng.random() * activity[eligible - 1]
        customer_id = bisect.bisect_left(activity, pick, 0, eligible - 1) + 1
        status = order_status(rng, data.anchor - ts, p)
        delay = timedelta(hours=rng.uniform(*p.status_delay_hours[status]))
        updated_at = max(ts, min(ts + delay, data.anchor - timedelta(seconds=1)))
        platform = rng.choices(platforms, weights=platform_weights)[0]
        methods = p.payments[platform]
        payment = rng.choices(list(methods), weights=list(methods.values()))[0]
        data.orders.append((oid, customer_id, status, platform, payment, ts, updated_at))
        chosen: list[int] = []
        want = rng.choices(sizes, weights=size_weights)[0]
        for _ in range(want * 6):  # bounded retries: duplicates and withdrawn products
            if len(chosen) == want:
                break
            pid = rng.choices(product_ids, cum_weights=popularity)[0]
            withdrawn = data.deactivations.get(pid)
            if pid in chosen or (withdrawn is not None and ts >= withdrawn):
                continue
            chosen.append(pid)
        if not chosen:  # a tiny catalogue can miss on every draw: take the first product on sale
            chosen = [next((p for p in product_ids
                            if ts < data.deactivations.get(p, data.anchor)), product_ids[0])]
        for pid in chosen:
            item_id += 1
            quantity = rng.choices(quantities, weights=quantity_weights)[0]
            data.order_items.append((item_id, oid, pid, quantity, data.price_at(pid, ts)))
