"""docker/Dockerfile, checked statically: pinned bases, the three targets, Glue 5.0 versions.

The checkers take the Dockerfile's text, so the last tests can show each one failing on a
broken copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

from pipeline.cli.main import cli

pytestmark = pytest.mark.unit

DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "Dockerfile"
PYTHON_BASE = "debian:bookworm-slim"
"""Debian's own Python 3.11 (Glue 5.0's version): the compose test builds this base with
debootstrap where no registry can be reached, so users and CI build the same file."""
TARGETS = {"driver", "cdc", "spark", "dashboards"}
# pyspark minor -> (Hadoop it is built against, the SDK bundle that hadoop-aws declares).
HADOOP_OF_PYSPARK = {"3.5": ("3.3.4", "1.12.262")}
MAVEN = "https://repo1.maven.org/maven2/"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def substitute(text: str) -> str:
    """Replace ${ARG} and $ARG with the ARG defaults, as a build with no --build-arg does."""
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.MULTILINE))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named stage."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            current = []
            match = re.search(r"\s+AS\s+(\S+)$", args, flags=re.IGNORECASE)
            if match:
                out[match.group(1)] = current
        current.append((keyword, args))
    return out


def from_problems(text: str) -> list[str]:
    problems = []
    known: set[str] = set()
    for keyword, args in instructions(substitute(text)):
        if keyword != "FROM":
            continue
        words = args.split()
        image = words[0]
        if image not in known:
            repo, _, tag = image.rpartition(":")
            if not repo or "/" in tag or tag in ("", "latest"):
                problems.append(f"FROM `{image}` is not pinned to a tag")
            elif image != PYTHON_BASE:
                problems.append(f"FROM `{image}`, expected `{PYTHON_BASE}`")
        if len(words) == 3 and words[1].upper() == "AS":
            known.add(words[2])
    return problems


def spark_problems(text: str) -> list[str]:
    """pyspark pinned to 3.5.x, the S3A jars matching its Hadoop, and the settings' Iceberg
    runtime and JDBC driver, from Maven Central."""
    text = substitute(text)
    pins = re.findall(r"pyspark==(\d+)\.(\d+)\.(\d+)", text)
    if len(pins) != 1:
        return [f"expected one `pyspark==` pin, found {len(pins)}"]
    major, minor, _ = pins[0]
    hadoop, sdk = HADOOP_OF_PYSPARK.get(f"{major}.{minor}", (None, None))
    if hadoop is None:
        return [f"pyspark {'.'.join(pins[0])} is not 3.5.x (Glue 5.0)"]
    problems = []
    maven = re.search(r"^ARG MAVEN=(\S+)", text, flags=re.MULTILINE)
    if not maven or maven.group(1).rstrip("/") + "/" != MAVEN:
        problems.append(f"expected `ARG MAVEN={MAVEN.rstrip('/')}`")
    # Each jar's path under Maven Central (downloaded from $MAVEN/<path>, or taken from the
    # wheelhouse by its file name), then checked by SHA-1.
    wanted = {
        "hadoop-aws": f"org/apache/hadoop/hadoop-aws/{hadoop}/hadoop-aws-{hadoop}.jar",
        "aws-java-sdk-bundle": f"com/amazonaws/aws-java-sdk-bundle/{sdk}/"
                               f"aws-java-sdk-bundle-{sdk}.jar",
    }
    # Iceberg and the JDBC driver: the versions the settings (and setup.sh) use.
    from pipeline.config import load_settings
    from pipeline.glue.session import _maven_jars

    for path, name in _maven_jars(load_settings(environ={})):
        if name.startswith(("iceberg-spark-runtime", "postgresql")):
            wanted[name] = path
    paths = set(re.findall(r'"((?:org|com)/\S+?\.jar)"', text))
    for name, path in wanted.items():
        if path not in paths:
            problems.append(f"{name}: expected download of {MAVEN}{path}")
    others = {p for p in paths if p not in wanted.values()}
    if others:
        problems.append(f"unexpected jars {sorted(others)}")
    if "sha1sum -c" not in text:
        problems.append("the jars are not checked by SHA-1")
    return problems


def shoplake_cmd_problems(words: list[str]) -> list[str]:
    command: click.Command = cli
    for word in words[1:]:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        if word not in command.commands:
            return [f"`{' '.join(words)}`: no command `{word}`"]
        command = command.commands[word]
    if command is cli or (isinstance(command, click.Group)
                          and not command.invoke_without_command):
        return [f"`{' '.join(words)}` only prints help"]
    return []


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text()


def _last(stage: list[tuple[str, str]], keyword: str) -> str | None:
    found = [args for kw, args in stage if kw == keyword]
    return found[-1] if found else None


def test_every_from_is_pinned(text):
    assert from_problems(text) == []
    assert "latest" not in text


def test_the_three_targets_exist(text):
    assert TARGETS <= set(stages(text))


def test_the_project_is_built_as_a_wheel_and_installed_without_dependencies(text):
    runs = [args for kw, args in instructions(text) if kw == "RUN"]
    assert any(re.search(r"pip wheel (\S+ )*--no-deps (\S+ )*\.$", run) for run in runs)
    # Every runtime image installs that wheel over a venv whose dependencies came first,
    # so a code change rebuilds one small layer.
    for target in ("base", "spark"):
        stage_runs = [a for kw, a in stages(text)[target] if kw == "RUN"]
        assert any("pip install --no-deps --no-index /tmp/dist/*.whl" in r for r in stage_runs)


def test_an_offline_build_installs_only_from_the_wheelhouse(text):
    copies = [args for kw, args in instructions(text) if kw == "COPY"]
    assert "docker/wheelhouse/ /wheelhouse/" in copies
    runs = " ".join(args for kw, args in instructions(text) if kw == "RUN")
    assert "--no-index --find-links /wheelhouse" in runs
    assert runs.count("$(cat /wheelhouse/pip-args)") >= 3  # deps, the wheel, pyspark


@pytest.mark.parametrize("target", ["driver", "cdc", "dashboards"])
def test_shoplake_targets_run_as_a_user_with_a_real_default_command(text, target):
    stage = stages(text)[target]
    assert _last(stage, "ENTRYPOINT") is None
    user = _last(stage, "USER")
    assert user and user.split(":")[0] not in ("root", "0")
    cmd = json.loads(_last(stage, "CMD"))  # exec form, so signals reach shoplake
    assert cmd[0] == "shoplake"
    assert shoplake_cmd_problems(cmd) == []


def test_spark_target_has_java_pyspark_and_the_s3a_jars(text):
    assert spark_problems(text) == []
    spark = stages(text)["spark"]
    runs = " ".join(args for kw, args in spark if kw == "RUN")
    assert "openjdk-17-jre-headless" in runs
    env = " ".join(args for kw, args in spark if kw == "ENV")
    assert re.search(r"JAVA_HOME=/usr/lib/jvm/\S+", env)
    assert re.search(r"SPARK_HOME=\S+/site-packages/pyspark\b", env)
    spark_home = re.search(r"SPARK_HOME=(\S+)", env).group(1)
    deps_runs = " ".join(args for kw, args in stages(text)["spark-deps"] if kw == "RUN")
    assert f"jars={spark_home}/jars;" in deps_runs
    user = _last(spark, "USER")
    assert user and user not in ("root", "0")


# --- the checkers can fail ------------------------------------------------------------------

def test_from_checker_catches_unpinned_bases(text):
    assert from_problems(text.replace(PYTHON_BASE, "python:latest", 1)) != []
    assert from_problems(text.replace(PYTHON_BASE, "python", 1)) != []
    assert from_problems("FROM debian:bookworm AS x\n") != []


def test_spark_checker_catches_mismatched_versions(text):
    assert spark_problems(re.sub(r"HADOOP_AWS_VERSION=\S+", "HADOOP_AWS_VERSION=3.3.6", text)) \
        != []
    assert spark_problems(re.sub(r"AWS_SDK_BUNDLE_VERSION=\S+", "AWS_SDK_BUNDLE_VERSION=2.20.0",
                                 text)) != []
    assert spark_problems(re.sub(r"PYSPARK_VERSION=\S+", "PYSPARK_VERSION=3.4.1", text)) != []
    assert spark_problems(text.replace("pyspark==", "pyspark>=")) != []


def test_cmd_checker_catches_unknown_commands():
    assert shoplake_cmd_problems(["shoplake", "nope"]) != []
    assert shoplake_cmd_problems(["shoplake", "stack"]) != []
