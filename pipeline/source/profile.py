"""The seed's data, read from the top-level seed/ folder: the OLTP schema and the profiles.

seed/ holds data only (schema.sql, profiles/*.toml); this module finds and checks it, so
generate.py and simulate.py work from a `Profile` and never from literals. Imports stay
one-way: nothing in seed/ imports the pipeline.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ConfigError

_REPO_SEED = Path(__file__).resolve().parents[2] / "seed"
IMAGE_SEED = Path("/opt/shoplake/seed")
"""Where the images copy seed/ (a wheel install has no repository beside it)."""
PROJECT_SEED = _REPO_SEED if _REPO_SEED.is_dir() or not IMAGE_SEED.is_dir() else IMAGE_SEED
"""The repository's seed/ (an editable install, the native stack); images copy it to
/opt/shoplake/seed and set `mysql.seed_dir`."""

STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
"""Order lifecycle values (CHECK-ed in seed/schema.sql): part of the schema, not a profile."""

PLATFORMS = ("Website", "Mobile", "In-store")
"""Where orders are placed (CHECK-ed in seed/schema.sql)."""

NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "placed": ("paid", "cancelled"),
    "paid": ("shipped", "cancelled"),
    "shipped": ("delivered",),
    "delivered": ("returned",),
}
"""Valid moves of an order's status; cancelled and returned are final (the lifecycle)."""

SIMULATOR_KINDS = ("new_order", "status_change", "new_customer", "address_change",
                   "price_change", "delete_order", "delete_customer")
"""The transaction kinds the simulator implements; a profile weighs them."""


@dataclass(frozen=True)
class Country:
    locale: str
    calling_code: str
    weight: float
    cities: tuple[str, ...]
    """Largest first: customers favour the first ones."""


@dataclass(frozen=True)
class Category:
    share: float
    price_lo: float
    price_hi: float
    colored: bool
    nouns: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """One seed/profiles/*.toml file, checked: every distribution the generator draws from."""

    name: str
    scales: Mapping[str, float]
    base_counts: Mapping[str, int]
    history_months: int
    items_per_order: Mapping[int, float]
    quantity: Mapping[int, float]
    platforms: Mapping[str, float]
    month: Mapping[int, float]
    hour_of_day: tuple[float, ...]
    weekend_factor: float
    growth: float
    status_delay_hours: Mapping[str, tuple[float, float]]
    status_by_age: tuple[tuple[float, Mapping[str, float]], ...]
    payments: Mapping[str, Mapping[str, float]]
    email_formats: tuple[str, ...]
    countries: Mapping[str, Country]
    adjectives: tuple[str, ...]
    categories: Mapping[str, Category]
    kinds: Mapping[str, float]
    status_move_weights: Mapping[str, float]
    recent_window: int

    def scale(self, value: str | float) -> float:
        """A scale given as a number or as one of the profile's named sizes."""
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except ValueError:
            pass
        if value not in self.scales:
            raise ConfigError(f"unknown scale `{value}` in profile `{self.name}`",
                              hint=f"use a number or one of {', '.join(sorted(self.scales))}")
        return self.scales[value]


def seed_dir(settings: Settings | None = None) -> Path:
    """Folder of schema.sql and profiles/: `mysql.seed_dir`, else the project's seed/."""
    configured = settings.mysql.seed_dir if settings is not None else ""
    return Path(configured) if configured else PROJECT_SEED


def schema_file(settings: Settings | None = None) -> Path:
    """seed/schema.sql: the DDL of the four tables that both modes apply."""
    return seed_dir(settings) / "schema.sql"


def profile_path(settings: Settings | None = None, name: str | None = None) -> Path:
    """The file of profile `name` (default `mysql.seed_profile`): a path, or a name in
    <seed_dir>/profiles."""
    name = name or (settings.mysql.seed_profile if settings is not None else "default")
    if name.endswith(".toml") or "/" in name:
        return Path(name).expanduser()
    return seed_dir(settings) / "profiles" / f"{name}.toml"


def load_profile(settings: Settings | None = None, name: str | None = None) -> Profile:
    """The profile of `settings` (or `name`), read and checked."""
    return read_profile(profile_path(settings, name))


@lru_cache(maxsize=8)
def read_profile(path: Path) -> Profile:
    """Read and check one profile file; errors name the file and the key."""
    if not path.is_file():
        raise ConfigError(f"seed profile `{path}` does not exist",
                          hint=f"pick one of {', '.join(_names(path.parent)) or 'none'} "
                               "with `mysql.seed_profile`, or give a path to a .toml file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"seed profile `{path}` is not valid TOML: {exc}",
                          hint="fix the file (seed/profiles/default.toml shows the shape)"
                          ) from exc
    try:
        return _parse(path.stem, raw)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"seed profile `{path}`: {what}",
                          hint="compare it with seed/profiles/default.toml") from exc


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def _weights(raw: Mapping[str, Any], where: str, key: type = str) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 \
                or not math.isfinite(v):
            raise ValueError(f"`{where}.{k}` must be a weight (a number >= 0), got {v!r}")
        out[key(k)] = float(v)
    if not out or not any(out.values()):
        raise ValueError(f"`{where}` needs at least one positive weight")
    return out


def _within(values: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"`{where}` names {', '.join(f'`{u}`' for u in unknown)}, which the "
                         f"schema does not accept (allowed: {', '.join(allowed)})")


def _parse(name: str, raw: Mapping[str, Any]) -> Profile:
    orders, sim = raw["orders"], raw["simulator"]
    platforms = _weights(orders["platforms"], "orders.platforms")
    _within(platforms, PLATFORMS, "orders.platforms")
    payments = {p: _weights(m, f"payments.{p}") for p, m in raw["payments"].items()}
    missing = sorted(set(platforms) - set(payments))
    if missing:
        raise ValueError(f"`payments` has no methods for platform(s) {', '.join(missing)}")
    hours = tuple(float(h) for h in orders["hour_of_day"])
    if len(hours) != 24:
        raise ValueError(f"`orders.hour_of_day` needs 24 weights, got {len(hours)}")
    month = _weights(orders["month"], "orders.month", int)
    if set(month) != set(range(1, 13)):
        raise ValueError("`orders.month` needs a weight for each month 1 to 12")
    ages = []
    for i, entry in enumerate(orders["status_by_age"]):
        mix = _weights(entry["mix"], f"orders.status_by_age[{i}].mix")
        _within(mix, STATUSES, f"orders.status_by_age[{i}].mix")
        ages.append((float(entry.get("under_hours", math.inf)), mix))
    if not ages or ages[-1][0] != math.inf:
        raise ValueError("the last `orders.status_by_age` entry must have no `under_hours`")
    delays = {s: (float(lo), float(hi)) for s, (lo, hi) in orders["status_delay_hours"].items()}
    _within(delays, STATUSES, "orders.status_delay_hours")
    if set(delays) != set(STATUSES):
        raise ValueError(f"`orders.status_delay_hours` needs every status: {', '.join(STATUSES)}")
    kinds = _weights(sim["kinds"], "simulator.kinds")
    _within(kinds, SIMULATOR_KINDS, "simulator.kinds")
    countries = {c: Country(s["locale"], s["calling_code"], float(s["weight"]),
                            tuple(s["cities"])) for c, s in raw["countries"].items()}
    if not countries or any(len(c.cities) < 2 for c in countries.values()):
        raise ValueError("`countries` needs at least one country, each with two cities or more")
    categories = {c: Category(float(s["share"]), float(s["price"][0]), float(s["price"][1]),
                              bool(s["colored"]), tuple(s["nouns"]))
                  for c, s in raw["categories"].items()}
    if not categories or any(not c.nouns or not 0 < c.price_lo <= c.price_hi
                             for c in categories.values()):
        raise ValueError("each of `categories` needs nouns and a price range 0 < lo <= hi")
    scales = {k: float(v) for k, v in raw["scales"].items()}
    counts = {k: int(raw["counts"][k]) for k in ("customers", "products", "orders")}
    items = _weights(orders["items_per_order"], "orders.items_per_order", int)
    if min(items) < 1:
        raise ValueError("`orders.items_per_order` counts start at 1")
    moves = _weights(sim["status_move_weights"], "simulator.status_move_weights")
    targets = sorted({t for ts in NEXT_STATUSES.values() for t in ts} - set(moves))
    if targets:
        raise ValueError(f"`simulator.status_move_weights` lacks {', '.join(targets)}")
    return Profile(
        name=name, scales=scales, base_counts=counts,
        history_months=int(orders["history_months"]),
        items_per_order=items,
        quantity=_weights(orders["quantity"], "orders.quantity", int),
        platforms=platforms, month=month, hour_of_day=hours,
        weekend_factor=float(orders["weekend_factor"]), growth=float(orders["growth"]),
        status_delay_hours=delays, status_by_age=tuple(ages), payments=payments,
        email_formats=tuple(raw["customers"]["email_formats"]),
        countries=countries, adjectives=tuple(raw["products"]["adjectives"]),
        categories=categories, kinds=kinds,
        status_move_weights=moves,
        recent_window=int(sim["recent_window"]),
    )
