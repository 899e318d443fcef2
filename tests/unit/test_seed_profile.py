"""seed/ holds the source's data (schema.sql, generator profiles); pipeline/source reads it."""

from __future__ import annotations

import ast
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.source.generate import PROFILE, generate
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
    assert profile == PROFILE and profile.name == "default"
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
])
def test_a_bad_profile_names_its_file_and_key(tmp_path, old: str, new: str, said: str) -> None:
    path = _copy_default(tmp_path, (old, new))
    with pytest.raises(ConfigError) as caught:
        read_profile(path)
    assert said in str(caught.value) and str(path) in str(caught.value)
    assert caught.value.hint


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
