"""A container engine for the compose test on a machine with no Docker: podman, configured
by files of the project's own, serving the Docker API on a socket under the state folder.

What it does, each step skipped when its result is already there:
1. installs Debian's podman, runc, netavark, aardvark-dns, catatonit, debootstrap and
   docker-compose (apt-get);
2. writes containers.conf and storage.conf into the state folder and selects them with
   CONTAINERS_CONF / CONTAINERS_STORAGE_CONF (nothing under /etc);
3. builds the Debian base images (bookworm, and trixie for LocalStack's Python 3.13) with
   debootstrap and imports them under the names `FROM` asks for; images live in podman's
   storage under the tools folder, so the next run on this machine finds them;
4. builds the wheelhouses on the host (pip wheel), also cached under the tools folder;
5. starts `podman system service` on `<state>/podman.sock` and a loop that runs the
   containers' healthchecks at their intervals (podman schedules them through systemd,
   absent here).

podman's runtime state (runroot, tmp_dir) lives in RUNTIME_DIR, one short fixed path, not
in the state folder: see RUNTIME_DIR for why.

The traps it works around are measured in ../shared/design.md section 9.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from pipeline.config import load_settings
from pipeline.glue.session import jar_paths
from pipeline.stack.localstack import LocalStackService

REPO = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"

APT_PACKAGES = ("podman", "runc", "netavark", "aardvark-dns", "catatonit", "iptables",
                "debootstrap", "docker-compose")
"""What podman needs here: runc (crun fails on this kernel's hybrid cgroups), netavark and
aardvark-dns (service names resolve between containers), catatonit (`init: true`)."""

BASES = {"bookworm": ("docker.io/library/debian:bookworm-slim",
                      "docker.io/library/debian:bookworm"),
         "trixie": ("docker.io/library/debian:trixie-slim", "docker.io/library/debian:trixie")}
"""Debian suites built with debootstrap, and the names `FROM` finds them under."""

BASE_RECIPE = "minbase+ca-certificates, apt lists and caches dropped, no docs or locales, v2"
"""Change this when the base recipe changes: the cached base images are then rebuilt."""

RUNTIME_DIR = Path("/run/shoplake-podman")
"""podman's runroot and tmp_dir. Fixed, because podman's database (under the tools folder,
beside the images) records the first runroot it saw and overrides the configured one with
it ever after; short, because each container's exit command passes it back as `--runroot`,
which podman refuses over 50 characters ("the specified runroot is longer than 50
characters"). With a per-run path under the state folder both bit: every container that
exited stayed `stopped`, and docker-compose waited forever on `service_completed_successfully`
for init and driver. Under /run, as podman's own defaults are: it is runtime state."""

PYSPARK_VERSION = re.search(r"^ARG PYSPARK_VERSION=(\S+)$",
                            (REPO / "docker" / "Dockerfile").read_text(), re.MULTILINE).group(1)
"""The spark image's pin, read from docker/Dockerfile (the wheelhouse must hold it)."""


def log(message: str) -> None:
    print(f"[compose-engine] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, input: bytes | None = None,
        check: bool = True, capture: bool = True, timeout: float | None = None
        ) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), env=env, input=input, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        out = (result.stdout or b"").decode(errors="replace")[-3000:]
        err = (result.stderr or b"").decode(errors="replace")[-3000:]
        raise RuntimeError(f"`{' '.join(cmd)}` exited {result.returncode}\n{out}\n{err}")
    return result


class Engine:
    """podman behind a Docker-compatible socket; `env` is what docker-compose and the
    docker SDK need to use it."""

    def __init__(self, state_dir: Path, tools_dir: Path) -> None:
        self.state_dir = state_dir
        self.tools = tools_dir
        self.cache = tools_dir / "compose"
        self.socket = state_dir / "podman.sock"
        self.conf = state_dir / "containers.conf"
        self.storage_conf = state_dir / "storage.conf"
        self._service: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._health_thread: threading.Thread | None = None

    # -- environment ---------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {**os.environ,
                "CONTAINERS_CONF": str(self.conf),
                "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
                "DOCKER_HOST": f"unix://{self.socket}",
                # docker-compose 1.29 must use the API, not a `docker` CLI on PATH.
                "COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_BUILDKIT": "0"}

    def podman(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run(["podman", *args], env=self.env, **kwargs)

    # -- 1. packages -----------------------------------------------------------------------------
    @staticmethod
    def install_packages() -> None:
        missing = [p for p in APT_PACKAGES if run(
            ["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout
            != b"install ok installed"]
        if not missing:
            return
        log(f"installing Debian packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)

    # -- 2. configuration ------------------------------------------------------------------------
    def configure(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.cache / "storage").mkdir(parents=True, exist_ok=True)
        # As after a reboot: podman finds no runtime state, so it resets what its database
        # says of containers an interrupted run left (they are not running any more).
        shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
        self.conf.write_text(
            "# Written by tests/compose/engine.py; selected with CONTAINERS_CONF.\n"
            "[containers]\n"
            "# The defaults are too low for MariaDB and the JVM here.\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            "# crun fails here: \"cgroups in hybrid mode not supported\".\n"
            'runtime = "runc"\n'
            'init_path = "/usr/libexec/podman/catatonit"\n'
            f'tmp_dir = "{RUNTIME_DIR / "libpod"}"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.state_dir / "events.log"}"\n'
            'cgroup_manager = "cgroupfs"\n'
            "[network]\n"
            "# netavark + aardvark-dns: compose service names resolve between containers.\n"
            'network_backend = "netavark"\n'
            f'network_config_dir = "{self.state_dir / "networks"}"\n')
        self.storage_conf.write_text(
            "# Written by tests/compose/engine.py; selected with CONTAINERS_STORAGE_CONF.\n"
            "# Images (the base images, build layers) persist under the tools folder.\n"
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.cache / "storage"}"\n'
            f'runroot = "{RUNTIME_DIR / "run"}"\n')
        self._forget_other_runroot()

    def _forget_other_runroot(self) -> None:
        """A database that recorded another runroot (from a harness that kept it in each
        run's state folder) would override ours: remove its containers, then the database.
        The images are not in it; they stay."""
        db = self.cache / "storage" / "libpod" / "bolt_state.db"
        if not db.exists():
            return
        pinned = self.podman("info", "--format", "{{.Store.RunRoot}}",
                             check=False).stdout.decode().strip()
        if pinned == str(RUNTIME_DIR / "run"):
            return
        log(f"podman's database pins runroot {pinned or '?'}; replacing the database "
            "(images are kept)")
        self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        self.podman("volume", "rm", "--all", "--force", check=False, timeout=120)
        db.unlink()

    # -- 3. base images --------------------------------------------------------------------------
    def _image_exists(self, name: str) -> bool:
        return self.podman("image", "exists", name, check=False).returncode == 0

    def _recipe_label(self, name: str) -> str:
        out = self.podman("image", "inspect", "--format", "{{json .Labels}}", name,
                          check=False).stdout
        try:
            return (json.loads(out or b"null") or {}).get("shoplake.base.recipe", "")
        except json.JSONDecodeError:
            return ""

    def base_images(self) -> None:
        for suite, names in BASES.items():
            if self._image_exists(names[0]) and self._recipe_label(names[0]) == BASE_RECIPE:
                continue
            started = time.monotonic()
            log(f"building the Debian {suite} base image with debootstrap")
            rootfs = self.cache / f"rootfs-{suite}"
            shutil.rmtree(rootfs, ignore_errors=True)
            run(["debootstrap", "--variant=minbase", "--include=ca-certificates", suite,
                 str(rootfs)], timeout=900)
            slim(rootfs)
            tar = self.cache / f"debian-{suite}.tar"
            with tarfile.open(tar, "w") as archive:
                archive.add(rootfs, arcname=".")
            self.podman("import", "--change", f"LABEL shoplake.base.recipe=\"{BASE_RECIPE}\"",
                        "--change", "CMD [\"bash\"]", str(tar), names[0])
            for name in names[1:]:
                self.podman("tag", names[0], name)
            tar.unlink()
            shutil.rmtree(rootfs, ignore_errors=True)
            log(f"base image {names[0]} ready in {time.monotonic() - started:.0f} s")

    # -- 4. wheelhouses --------------------------------------------------------------------------
    def wheelhouses(self) -> None:
        """docker/wheelhouse (the project's images) and the LocalStack stand-in's, filled
        from caches keyed by what they are built from."""
        project = self._wheelhouse(
            "project", [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", "{dir}",
                        str(REPO), f"pyspark=={PYSPARK_VERSION}", "setuptools>=68", "wheel"],
            key=(REPO / "pyproject.toml").read_bytes() + PYSPARK_VERSION.encode())
        for whl in project.glob("shoplake-*.whl"):
            whl.unlink()  # the build installs the project from its source, not a stale wheel
        # The S3A jars setup.sh fetched (SHA-1 checked), named as the Dockerfile expects.
        settings = load_settings(environ={"SHOPLAKE_STACK_TOOLS_DIR": str(self.tools)})
        for source in jar_paths(settings):
            if not source.exists():
                raise RuntimeError(f"{source} is missing: run `bash scripts/setup.sh` first")
            target = project / source.name
            if not target.exists():
                shutil.copyfile(source, target)
                (project / f"{source.name}.sha1").write_text(
                    hashlib.sha1(source.read_bytes()).hexdigest() + "\n")
        localstack = LocalStackService(settings)
        localstack.check_installed()
        standin = self._wheelhouse(
            "localstack", [str(localstack.python), "-m", "pip", "wheel", "-q", "--wheel-dir",
                           "{dir}", "-r", str(REPO / "localstack/requirements-host.txt")],
            key=(REPO / "localstack/requirements-host.txt").read_bytes())
        _link_tree(project, REPO / "docker" / "wheelhouse")
        _link_tree(standin, STANDINS / "localstack" / "wheelhouse")
        shutil.copyfile(REPO / "localstack/requirements-host.txt",
                        STANDINS / "localstack" / "requirements-host.txt")

    def _wheelhouse(self, name: str, cmd: list[str], key: bytes) -> Path:
        folder = self.cache / f"wheelhouse-{name}"
        stamp = folder / ".key"
        digest = hashlib.sha256(key).hexdigest()[:16]
        if stamp.exists() and stamp.read_text() == digest:
            return folder
        started = time.monotonic()
        log(f"building the {name} wheelhouse on the host (pip wheel)")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        run([part.replace("{dir}", str(folder)) for part in cmd], timeout=1800)
        stamp.write_text(digest)
        log(f"{name} wheelhouse ready in {time.monotonic() - started:.0f} s")
        return folder

    # -- 5. the API service and the healthcheck loop ---------------------------------------------
    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        log_file = open(self.state_dir / "podman-service.log", "ab")  # noqa: SIM115
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while run(["curl", "-fsS", "--unix-socket", str(self.socket), "http://d/_ping"],
                  check=False).returncode != 0:
            if self._service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("podman's API did not start; see "
                                   f"{self.state_dir / 'podman-service.log'}")
            time.sleep(0.2)
        # As Docker's socket (root:docker, 0660): containers given the socket's group (the
        # driver's `group_add: DOCKER_GID`) may use it; podman creates it 0600.
        self.socket.chmod(0o660)
        self._health_thread = threading.Thread(target=self._healthchecks, daemon=True)
        self._health_thread.start()

    def _healthchecks(self) -> None:
        """What Docker's engine does by itself: run each container's healthcheck at its
        configured interval while it runs (so a dead service turns unhealthy too), from one
        container listing a second."""
        interval: dict[str, float] = {}
        last: dict[str, float] = {}
        while not self._stop.wait(1.0):
            out = self.podman("ps", "-a", "--format", "json", check=False).stdout
            try:
                containers = json.loads(out or b"[]") or []
            except json.JSONDecodeError:
                continue
            for c in containers:
                cid, status = c["Id"], c.get("Status") or ""
                # Only running containers with a healthcheck: "Up 3 s ago (starting)", ...
                if c.get("State") != "running" or "(" not in status:
                    continue
                if cid not in interval:
                    text = self.podman("inspect", "--format",
                                       "{{.Config.Healthcheck.Interval}}", cid,
                                       check=False).stdout.decode().strip()
                    interval[cid] = go_duration(text) or 30.0  # Docker's default interval
                if time.monotonic() - last.get(cid, 0.0) >= interval[cid]:
                    last[cid] = time.monotonic()
                    self.podman("healthcheck", "run", cid, check=False, timeout=30)

    def stop(self) -> None:
        self._stop.set()
        if self._health_thread:
            self._health_thread.join(timeout=35)
        if self._service and self._service.poll() is None:
            self._service.terminate()
            try:
                self._service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._service.kill()
        # An exec session's conmon (healthchecks, `compose exec`) waits 300 s after its
        # process ended before it cleans up; the containers are gone by now.
        for proc in psutil.process_iter(["name", "cmdline"]):
            args = proc.info["cmdline"] or []
            if proc.info["name"] == "conmon" and "--exec-attach" in args \
                    and str(RUNTIME_DIR / "run") in args:
                with contextlib.suppress(psutil.Error):
                    proc.kill()

    def prepare(self) -> None:
        self.install_packages()
        self.configure()
        self.base_images()
        self.wheelhouses()

    def build_standins(self) -> dict[str, str]:
        """The local images standing in for the three upstream ones, by compose service."""
        images = {}
        for name in ("mysql", "postgres", "localstack"):
            image = f"localhost/shoplake-standin-{name}:latest"
            self.podman("build", "--pull=never", "-t", image, str(STANDINS / name),
                        timeout=1800)
            images[name] = image
        return images


def go_duration(text: str) -> float:
    """Seconds of a Go duration as podman prints it ("5s", "1m30s", "500ms"); 0 if none."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(ms|us|µs|ns|h|m|s)", text)
    return sum(float(number) * units[unit] for number, unit in parts)


def slim(rootfs: Path) -> None:
    """What the official slim images leave out: apt's downloads and lists, docs, man pages
    and locales (and a dpkg rule so later installs leave them out too)."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                "usr/share/locale", "usr/share/info"):
        target = rootfs / sub
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and child.name != "partial":
                    shutil.rmtree(child)
                elif child.is_file():
                    child.unlink()
    # Man pages go but their folders stay: update-alternatives links into them (a JRE's
    # postinst fails without /usr/share/man/man1).
    for page in (rootfs / "usr/share/man").rglob("*"):
        if page.is_file() or page.is_symlink():
            page.unlink()
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n"
        "path-exclude /usr/share/info/*\n")
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
        'Binary::apt::APT::Keep-Downloaded-Packages "false";\n')
    # This machine's own apt sources for the suite (its mirror, security and updates).
    host = Path("/etc/apt/sources.list.d/debian.sources")
    suite = (rootfs / "etc/os-release").read_text()
    codename = next(line.split("=", 1)[1] for line in suite.splitlines()
                    if line.startswith("VERSION_CODENAME="))
    if host.exists():
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            host.read_text().replace("bookworm", codename))


def _link_tree(source: Path, target: Path) -> None:
    """`target` holds exactly `source`'s files, hard-linked where the file system allows."""
    target.mkdir(parents=True, exist_ok=True)
    keep = {"README.md"}
    for old in target.iterdir():
        if old.name not in keep and not (source / old.name).exists():
            old.unlink()
    for item in source.iterdir():
        if item.name.startswith("."):
            continue
        dest = target / item.name
        if dest.exists():
            continue
        try:
            os.link(item, dest)
        except OSError:
            shutil.copyfile(item, dest)

