"""Wall time of the `claimwire` commands that need no model (issue 18).

Usage, from the repository root:

    .venv/bin/python -m bench.cli_startup              # 9 runs of each command
    .venv/bin/python -m bench.cli_startup --runs 15
    git archive main | tar -x -C /tmp/main-src
    .venv/bin/python -m bench.cli_startup --compare /tmp/main-src   # main's code too
    .venv/bin/python -m bench.cli_startup --postgres postgresql://postgres@127.0.0.1:5432/postgres

Each command runs as a user runs it (``python -m worker.cli ...``, a new process), on a
SQLite database in a temporary data directory that an earlier ``status`` created and
migrated (the first run of a new database also migrates it: not measured). Printed: the
median and the fastest wall time of ``--runs`` runs, the median CPU time (user + system)
of the command's process, and the heavy libraries each command imported (read in a
separate run of the same command in process). With ``--compare DIR``, the code in DIR
(another checkout's root, put first on ``PYTHONPATH``) runs each command too, the two
interleaved run by run so that both meet the same machine load. With ``--postgres
ADMIN_URL``, the commands read a PostgreSQL database created for the run (named
``startup_cli_<pid>``, dropped at the end) instead of SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker.testing import HEAVY_LIBRARIES

COMMANDS: list[list[str]] = [
    ["--version"],
    ["status"],
    ["claims", "search", "--speaker", "mayor"],
    ["export", "claims"],
    ["export", "articles"],
    ["feeds", "list"],
    ["jobs", "list"],
]

_PROBE = """
import sys
from worker.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
import json
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the command's process: on a
    loaded machine the CPU time moves much less than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _imported(args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY_LIBRARIES), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "[]"
    try:
        return list(json.loads(last))
    except ValueError:
        return ["?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--compare", type=Path, help="another checkout's root")
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", help="read a PostgreSQL database made from here"
    )
    args = parser.parse_args()
    database = f"startup_cli_{os.getpid()}"
    if args.postgres:
        _admin(args.postgres, f'CREATE DATABASE "{database}"')
    try:
        _bench(args, database)
    finally:
        if args.postgres:
            _admin(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _bench(args: argparse.Namespace, database: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        env["CLAIMWIRE_DATA_DIR"] = str(cwd / "data")
        if args.postgres:
            env["CLAIMWIRE_DATABASE_URL"] = args.postgres.rsplit("/", 1)[0] + "/" + database
        env.pop("PYTHONPATH", None)
        envs = {"this": env}
        if args.compare is not None:
            envs["compared"] = {**env, "PYTHONPATH": str(args.compare.resolve())}
        _run(["status"], env, cwd)  # create and migrate the database
        where = "PostgreSQL" if args.postgres else "SQLite"
        print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs per command; {where}")
        print(
            f"{'command':<32} {'code':<9} {'median s':>9} {'fastest s':>10} {'CPU s':>6}"
            "  heavy imports"
        )
        for command in COMMANDS:
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in envs}
            for _ in range(args.runs):
                for name, e in envs.items():
                    runs[name].append(_run(command, e, cwd))
            for name, e in envs.items():
                heavy = _imported(command, e, cwd)
                wall = [w for w, _ in runs[name]]
                cpu = [c for _, c in runs[name]]
                print(
                    f"{' '.join(command):<32} {name:<9} {statistics.median(wall):>9.2f} "
                    f"{min(wall):>10.2f} {statistics.median(cpu):>6.2f}  {', '.join(heavy) or '-'}"
                )


if __name__ == "__main__":
    main()
