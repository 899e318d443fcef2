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
PYTHON_BASE = "python:3.11-slim-bookworm"
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
    """pyspark pinned to 3.5.x and the S3A jars matching its Hadoop, from Maven Central."""
    text = substitute(text)
    pins = re.findall(r"pyspark==(\d+)\.(\d+)\.(\d+)", text)
    if len(pins) != 1:
        return [f"expected one `pyspark==` pin, found {len(pins)}"]
    major, minor, _ = pins[0]
    hadoop, sdk = HADOOP_OF_PYSPARK.get(f"{major}.{minor}", (None, None))
    if hadoop is None:
        return [f"pyspark {'.'.join(pins[0])} is not 3.5.x (Glue 5.0)"]
    problems = []
    wanted = {
        "hadoop-aws": f"{MAVEN}org/apache/hadoop/hadoop-aws/{hadoop}/hadoop-aws-{hadoop}.jar",
        "aws-java-sdk-bundle": f"{MAVEN}com/amazonaws/aws-java-sdk-bundle/{sdk}/"
                               f"aws-java-sdk-bundle-{sdk}.jar",
    }
    urls = set(re.findall(r"https://\S+?\.jar", text))
    for name, url in wanted.items():
        if url not in urls:
            problems.append(f"{name}: expected download of {url}")
    others = {u for u in urls if u not in wanted.values()}
    if others:
        problems.append(f"unexpected jars {sorted(others)}")
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


def test_the_project_is_installed_with_pip(text):
    runs = [args for kw, args in instructions(text) if kw == "RUN"]
    assert any(re.search(r"pip install (\S+ )*\.$", run) for run in runs)


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
    assert '"$SPARK_HOME/jars/' in runs
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
