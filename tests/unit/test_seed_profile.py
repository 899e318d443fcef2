"""seed/ holds the source's data (schema.sql, generator profiles); pipeline/source reads it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.source.generate import default_profile, generate
from pipeline.source.load import schema_statements
from pipeline.source.profile import (
    PROJECT_SEED,
    load_profile,
    profile_path,
    read_profile,
    schema_file,
)

pytestmark = pytest.mark.unit

ANCHOR = datetime(2025, 6, 15)
DEFAULT = PROJECT_SEED / "profiles" / "default.toml"


def test_seed_is_data_only_at_the_top_level() -> None:
    assert PROJECT_SEED == Path(__file__).resolve().parents[2] / "seed"
    files = {p.relative_to(PROJECT_SEED).as_posix() for p in PROJECT_SEED.rglob("*")
             if p.is_file()}
    assert {"schema.sql", "profiles/default.toml"} <= files
    assert not [f for f in files if f.endswith(".py")], "seed/ imports nothing: data only"
    assert not (PROJECT_SEED.parent / "pipeline" / "source" / "schema.sql").exists()


def test_nothing_in_pipeline_source_holds_the_profile_as_literals() -> None:
    """The distributions live in the TOML file; generate.py and simulate.py carry no
    weight tables of their own (a dict literal of numbers would be a second copy)."""
    for name in ("generate.py", "simulate.py"):
        tree = ast.parse((PROJECT_SEED.parent / "pipeline" / "source" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and len(node.keys) >= 3:
                numbers = [v for v in node.values if isinstance(v, ast.Constant)
                           and isinstance(v.value, int | float)]
                assert len(numbers) < 3, f"{name}:{node.lineno} holds a weight table"


def test_the_default_profile_is_what_generate_uses() -> None:
    profile = load_profile()
    assert profile == default_profile() and profile.name == "default"
    assert profile.base_counts == {"customers": 10_000, "products": 1_000, "orders": 100_000}
    assert profile.scale("demo") == 0.1 and profile.scale("2.5") == 2.5
    assert set(profile.platforms) == {"Website", "Mobile", "In-store"}


def _copy_default(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    path = tmp_path / "profiles" / "custom.toml"
    path.parent.mkdir(parents=True)
    shutil.copy(DEFAULT, path)
    if edit:
        text = path.read_text()
        assert edit[0] in text
        path.write_text(text.replace(edit[0], edit[1]))
    return path


def test_a_changed_profile_changes_the_rows(tmp_path) -> None:
    path = _copy_default(tmp_path, ("platforms = { Website = 50, Mobile = 38, In-store = 12 }",
                                    "platforms = { Website = 0, Mobile = 1, In-store = 0 }"))
    custom = read_profile(path)
    data = generate(0.01, 3, ANCHOR, custom)
    assert Counter(o[3] for o in data.orders) == {"Mobile": len(data.orders)}
    default = generate(0.01, 3, ANCHOR)
    assert len(Counter(o[3] for o in default.orders)) == 3


def test_a_profile_is_chosen_by_setting_name_or_path(tmp_path, monkeypatch) -> None:
    path = _copy_default(tmp_path)
    monkeypatch.setenv("SHOPLAKE_MYSQL_SEED_DIR", str(tmp_path))
    monkeypatch.setenv("SHOPLAKE_MYSQL_SEED_PROFILE", "custom")
    settings = load_settings()
    assert profile_path(settings) == path
    assert schema_file(settings) == tmp_path / "schema.sql"
    monkeypatch.setenv("SHOPLAKE_MYSQL_SEED_PROFILE", str(DEFAULT))
    assert profile_path(load_settings()) == DEFAULT


@pytest.mark.parametrize(("old", "new", "said"), [
    ("In-store = 12 }", "Kiosk = 12 }", "`orders.platforms` names `Kiosk`, which the schema"),
    ("new_order = 40", "new_order = -1", "`simulator.kinds.new_order` must be a weight"),
    ("hour_of_day = [1, 0.6,", "hour_of_day = [0.6,", "needs 24 weights, got 23"),
    ("[[orders.status_by_age]]\nmix = {", "[[orders.status_by_age]]\nunder_hours = 9999\nmix = {",
     "the last `orders.status_by_age` entry must have no `under_hours`"),
    ("recent_window = 2_000", "", "missing key 'recent_window'"),
    ("[scales]", "[scales", "is not valid TOML"),
    ("history_months = 13", "history_months = 0", "`orders.history_months` must be a whole"),
    ("hour_of_day = [1, 0.6,", "hour_of_day = [-1, 0.6,", "`orders.hour_of_day[0]` must be"),
    ("weight = 38", "weight = -38", "`countries.United States.weight` must be a number >= 0"),
    ("share = 16", 'share = "a lot"', "`categories.Electronics.share` must be a number"),
    ("weekend_factor = 1.15", "weekend_factor = 0", "`orders.weekend_factor` must be a number"),
    ("growth = 0.2", "growth = nan", "`orders.growth` must be a number >= 0"),
    ('adjectives = ["Classic"', 'adjectives = []\nold = ["Classic"',
     "`products.adjectives` needs at least 1 entry"),
    ('email_formats = ["{f}.{l}"', 'email_formats = ["{first}.{l}"',
     "entry '{first}.{l}' may use only"),
    ('email_formats = ["{f}.{l}"', 'email_formats = ["{f.{l}"', "email_formats` entry"),
    ('locale = "en_GB"', 'locale = "en_XX"', "`countries.United Kingdom.locale` 'en_XX' is not"),
    ('calling_code = "+44"', 'calling_code = 44', "`countries.United Kingdom.calling_code`"),
    ('cities = ["London", "Birmingham", "Manchester", "Leeds", "Glasgow", "Liverpool", '
     '"Bristol", "Edinburgh", "Sheffield", "Cardiff"]', 'cities = "London"',
     "`countries.United Kingdom.cities` must be a list of non-empty strings"),
    ("quantity = { 1 = 72,", "quantity = { 0 = 1, 1 = 72,", "`orders.quantity` counts start at 1"),
    ("shipped = 92, delivered = 100", "shipped = 92, delivered = 0", "gives `shipped` no move"),
    ("recent_window = 2_000", "recent_window = -5", "`simulator.recent_window` must be a whole"),
    ("tiny = 0.01", "tiny = 0", "`scales.tiny` must be a number > 0"),
    ("large = 10", "large = 1000", "`scales.large` is above the largest scale, 100"),
    ("orders = 100_000", "orders = 0.5", "`counts.orders` must be a whole number >= 1"),
    ("cancelled = [0.2, 48]", "cancelled = [48, 0.2]",
     "`orders.status_delay_hours.cancelled` must be [fewest, most] hours"),
    ("under_hours = 48", "under_hours = 3", "bounds (`under_hours`) must grow"),
    ("price = [15, 1500]", "price = [1500, 15]", "`categories.Electronics.price` must be"),
    ("[payments.Website]", "[payments.Webshop]", "no methods for platform(s) Website"),
])
def test_a_bad_profile_names_its_file_and_key(tmp_path, old: str, new: str, said: str) -> None:
    path = _copy_default(tmp_path, (old, new))
    with pytest.raises(ConfigError) as caught:
        read_profile(path)
    assert said in str(caught.value) and str(path) in str(caught.value)
    assert caught.value.hint


def test_importing_the_generator_reads_no_profile() -> None:
    """The default profile is read on first use, so a setting can still choose another and
    a broken default.toml breaks only what draws from it, not every import."""
    code = ("import pipeline.source.simulate, pipeline.source.load, pipeline.cli.main\n"
            "from pipeline.source.profile import read_profile\n"
            "assert read_profile.cache_info().misses == 0, read_profile.cache_info()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_a_missing_profile_lists_the_ones_there(tmp_path) -> None:
    _copy_default(tmp_path)
    with pytest.raises(ConfigError, match="does not exist") as caught:
        read_profile(tmp_path / "profiles" / "nope.toml")
    assert "custom" in caught.value.hint


def test_the_schema_comes_from_seed(tmp_path) -> None:
    assert len(schema_statements()) == 4
    other = tmp_path / "schema.sql"
    other.write_text("-- one table\nCREATE TABLE IF NOT EXISTS t (id INT);\n")
    assert schema_statements(other) == ["CREATE TABLE IF NOT EXISTS t (id INT)"]
