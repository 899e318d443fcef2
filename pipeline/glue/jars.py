"""`python -m pipeline.glue.jars`: fetch the jobs' jars (s3a, Iceberg's Spark runtime, the
PostgreSQL JDBC driver) from Maven Central, checked by SHA-1, and link them into pyspark's
own jars folder.

On the JVM's classpath from the start, they serve `spark-submit spark_jobs/<job>.py` as
well as in-process jobs (a `spark.jars` setting comes too late for Hadoop's FileSystem
lookup under spark-submit). The Docker image does the same. Run by scripts/setup.sh; a
second run finds everything in place. Never committed.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

from pipeline.config import Settings, load_settings
from pipeline.glue.session import jar_paths, jar_urls


def fetch(settings: Settings) -> list[Path]:
    done = []
    for url, dest in zip(jar_urls(settings), jar_paths(settings)):
        if dest.exists() and dest.stat().st_size > 0:
            done.append(dest)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url + ".sha1", timeout=60) as resp:
            expected = resp.read().decode().split()[0]
        part = dest.with_suffix(".part")
        digest = hashlib.sha1()
        with urllib.request.urlopen(url, timeout=600) as resp, open(part, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            part.unlink()
            raise SystemExit(f"checksum mismatch for {url}: got {digest.hexdigest()}, "
                             f"expected {expected}")
        part.replace(dest)
        done.append(dest)
    return done


def link_into_pyspark(jars: list[Path]) -> Path:
    import pyspark

    folder = Path(pyspark.__file__).parent / "jars"
    for jar in jars:
        link = folder / jar.name
        if not link.exists():
            link.symlink_to(jar.resolve())
    return folder


if __name__ == "__main__":
    jars = fetch(load_settings())
    folder = link_into_pyspark(jars)
    for path in jars:
        print(f"[setup] jar ready: {path} (linked into {folder})", file=sys.stderr)
