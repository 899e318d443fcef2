"""The seed's data, read from the top-level seed/ folder: the OLTP schema and the profiles.

seed/ holds data only (schema.sql, profiles/*.toml); this module finds and checks it, so
generate.py and simulate.py work from a `Profile` and never from literals. Imports stay
one-way: nothing in seed/ imports the pipeline.
"""

from __future__ import annotations

import math
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.source import MAX_SCALE

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
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"seed profile `{path}`: {what}",
                          hint="compare it with seed/profiles/default.toml") from exc


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def _number(v: Any, where: str, *, low: float = 0.0, above: bool = False,
            whole: bool = False) -> float:
    """A finite number >= `low` (> `low` with `above`), whole with `whole`."""
    ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) \
        and (v > low if above else v >= low) and (not whole or float(v).is_integer())
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"`{where}` must be {kind} {'>' if above else '>='} {low:g}, "
                         f"got {v!r}")
    return float(v)


def _weights(raw: Any, where: str, key: type = str) -> dict[Any, float]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"`{where}` must be a table of weights, got {raw!r}")
    out: dict[Any, float] = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 \
                or not math.isfinite(v):
            raise ValueError(f"`{where}.{k}` must be a weight (a number >= 0), got {v!r}")
        if key is int:
            try:
                k = int(k)
            except ValueError:
                raise ValueError(f"`{where}` keys are whole numbers, got `{k}`") from None
        out[key(k)] = float(v)
    if not out or not any(out.values()):
        raise ValueError(f"`{where}` needs at least one positive weight")
    return out


def _strings(raw: Any, where: str, *, least: int = 1) -> tuple[str, ...]:
    """A list of at least `least` non-empty strings (a bare string is refused, not split
    into letters)."""
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise ValueError(f"`{where}` must be a list of non-empty strings, got {raw!r}")
    if len(raw) < least:
        raise ValueError(f"`{where}` needs at least {least} entr{'y' if least == 1 else 'ies'}")
    return tuple(raw)


def _within(values: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"`{where}` names {', '.join(f'`{u}`' for u in unknown)}, which the "
                         f"schema does not accept (allowed: {', '.join(allowed)})")


EMAIL_FIELDS = ("f", "l", "i", "n")
"""Fields an e-mail format may use: first name, last name, initial, a number."""


def _email_formats(raw: Any) -> tuple[str, ...]:
    formats = _strings(raw, "customers.email_formats")
    for fmt in formats:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(fmt) if f is not None}
        except ValueError as exc:
            raise ValueError(f"`customers.email_formats` entry {fmt!r}: {exc}") from None
        bad = sorted(fields - set(EMAIL_FIELDS))
        if bad or not fields & {"f", "l"}:
            raise ValueError(f"`customers.email_formats` entry {fmt!r} may use only "
                             "{f}, {l}, {i} and {n}, and needs {f} or {l}")
    return formats


def _countries(raw: Any) -> dict[str, Country]:
    from faker.config import AVAILABLE_LOCALES

    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("`countries` needs at least one country")
    out = {}
    for name, spec in raw.items():
        where = f"countries.{name}"
        locale = spec["locale"]
        if locale not in AVAILABLE_LOCALES:
            raise ValueError(f"`{where}.locale` {locale!r} is not a Faker locale "
                             "(e.g. en_US, de_DE, pt_BR)")
        code = spec["calling_code"]
        if not isinstance(code, str) or not code.startswith("+") or not code[1:].isdigit():
            raise ValueError(f"`{where}.calling_code` must look like \"+44\", got {code!r}")
        out[name] = Country(locale, code, _number(spec["weight"], f"{where}.weight"),
                            _strings(spec["cities"], f"{where}.cities", least=2))
    if not any(c.weight for c in out.values()):
        raise ValueError("`countries` needs at least one country with a positive weight")
    return out


def _categories(raw: Any) -> dict[str, Category]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("`categories` needs at least one category")
    out = {}
    for name, spec in raw.items():
        where = f"categories.{name}"
        price = spec["price"]
        if not isinstance(price, list) or len(price) != 2:
            raise ValueError(f"`{where}.price` must be [lowest, highest], got {price!r}")
        lo = _number(price[0], f"{where}.price[0]", above=True)
        hi = _number(price[1], f"{where}.price[1]", above=True)
        if lo > hi:
            raise ValueError(f"`{where}.price` must be [lowest, highest], got {price!r}")
        if not isinstance(spec["colored"], bool):
            raise ValueError(f"`{where}.colored` must be true or false")
        out[name] = Category(_number(spec["share"], f"{where}.share"), lo, hi, spec["colored"],
                             _strings(spec["nouns"], f"{where}.nouns"))
    if not any(c.share for c in out.values()):
        raise ValueError("`categories` needs at least one category with a positive share")
    return out


def _parse(name: str, raw: Mapping[str, Any]) -> Profile:
    orders, sim = raw["orders"], raw["simulator"]
    platforms = _weights(orders["platforms"], "orders.platforms")
    _within(platforms, PLATFORMS, "orders.platforms")
    payments = {p: _weights(m, f"payments.{p}") for p, m in raw["payments"].items()}
    missing = sorted(p for p, w in platforms.items() if w and p not in payments)
    if missing:
        raise ValueError(f"`payments` has no methods for platform(s) {', '.join(missing)}")
    hour_list = orders["hour_of_day"]
    if not isinstance(hour_list, list) or len(hour_list) != 24:
        got = len(hour_list) if isinstance(hour_list, list) else repr(hour_list)
        raise ValueError(f"`orders.hour_of_day` needs 24 weights, got {got}")
    hours = tuple(_number(h, f"orders.hour_of_day[{i}]") for i, h in enumerate(hour_list))
    if not any(hours):
        raise ValueError("`orders.hour_of_day` needs at least one positive weight")
    month = _weights(orders["month"], "orders.month", int)
    if set(month) != set(range(1, 13)):
        raise ValueError("`orders.month` needs a weight for each month 1 to 12")
    ages = []
    for i, entry in enumerate(orders["status_by_age"]):
        mix = _weights(entry["mix"], f"orders.status_by_age[{i}].mix")
        _within(mix, STATUSES, f"orders.status_by_age[{i}].mix")
        bound = entry.get("under_hours", math.inf)
        if bound != math.inf:
            bound = _number(bound, f"orders.status_by_age[{i}].under_hours", above=True)
            if ages and bound <= ages[-1][0]:
                raise ValueError("`orders.status_by_age` bounds (`under_hours`) must grow")
        ages.append((bound, mix))
    if not ages or ages[-1][0] != math.inf:
        raise ValueError("the last `orders.status_by_age` entry must have no `under_hours`")
    delays = {}
    for s, pair in orders["status_delay_hours"].items():
        where = f"orders.status_delay_hours.{s}"
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"`{where}` must be [fewest, most] hours, got {pair!r}")
        lo, hi = _number(pair[0], f"{where}[0]"), _number(pair[1], f"{where}[1]")
        if lo > hi:
            raise ValueError(f"`{where}` must be [fewest, most] hours, got {pair!r}")
        delays[s] = (lo, hi)
    _within(delays, STATUSES, "orders.status_delay_hours")
    if set(delays) != set(STATUSES):
        raise ValueError(f"`orders.status_delay_hours` needs every status: {', '.join(STATUSES)}")
    kinds = _weights(sim["kinds"], "simulator.kinds")
    _within(kinds, SIMULATOR_KINDS, "simulator.kinds")
    scales = {k: _number(v, f"scales.{k}", above=True) for k, v in raw["scales"].items()}
    big = sorted(k for k, v in scales.items() if v > MAX_SCALE)
    if big:
        raise ValueError(f"`scales.{big[0]}` is above the largest scale, {MAX_SCALE}")
    counts = {k: int(_number(raw["counts"][k], f"counts.{k}", low=1, whole=True))
              for k in ("customers", "products", "orders")}
    items = _weights(orders["items_per_order"], "orders.items_per_order", int)
    if min(items) < 1:
        raise ValueError("`orders.items_per_order` counts start at 1")
    quantity = _weights(orders["quantity"], "orders.quantity", int)
    if min(quantity) < 1:
        raise ValueError("`orders.quantity` counts start at 1 (the schema CHECKs quantity > 0)")
    moves = _weights(sim["status_move_weights"], "simulator.status_move_weights")
    targets = sorted({t for ts in NEXT_STATUSES.values() for t in ts} - set(moves))
    if targets:
        raise ValueError(f"`simulator.status_move_weights` lacks {', '.join(targets)}")
    stuck = sorted(s for s, ts in NEXT_STATUSES.items() if not any(moves[t] for t in ts))
    if stuck:
        raise ValueError(f"`simulator.status_move_weights` gives `{stuck[0]}` no move: weigh "
                         f"one of {', '.join(NEXT_STATUSES[stuck[0]])} above 0")
    return Profile(
        name=name, scales=scales, base_counts=counts,
        history_months=int(_number(orders["history_months"], "orders.history_months", low=1,
                                   whole=True)),
        items_per_order=items,
        quantity=quantity,
        platforms=platforms, month=month, hour_of_day=hours,
        weekend_factor=_number(orders["weekend_factor"], "orders.weekend_factor", above=True),
        growth=_number(orders["growth"], "orders.growth"),
        status_delay_hours=delays, status_by_age=tuple(ages), payments=payments,
        email_formats=_email_formats(raw["customers"]["email_formats"]),
        countries=_countries(raw["countries"]),
        adjectives=_strings(raw["products"]["adjectives"], "products.adjectives"),
        categories=_categories(raw["categories"]), kinds=kinds,
        status_move_weights=moves,
        recent_window=int(_number(sim["recent_window"], "simulator.recent_window", low=1,
                                  whole=True)),
    )
