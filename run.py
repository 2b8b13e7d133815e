#!/usr/bin/env python3
"""Bootstrap and run mda from a fresh clone with nothing but Python 3.11+.

Usage:
    python3 run.py serve [mda serve options]   start mda on the embedded SQLite default
    python3 run.py test [--backend B] [pytest options]
                                               run the whole test suite, once on SQLite and
                                               once on PostgreSQL (or only on backend B)
    python3 run.py mda ARGS...                 any other `mda` command (e.g. `user add`)

The first call creates `.venv/` beside this file and installs mda with its test
dependencies into it; later calls reuse it (re-installing when `pyproject.toml` changed).
`test` also installs the Debian packages the tests drive (swaks, ...) through apt-get when
they are missing and we are root; without them those tests are skipped, except under
`CI=true`, where a missing tool is a failure.

`test` runs pytest once per backend (`MDA_TEST_BACKEND=sqlite`, then `postgresql`; the
PostgreSQL run leaves out the tests that use no database), each with pytest-xdist workers
(`-n`, unless the options say otherwise), prints each run's result and exits non-zero when
either failed. The PostgreSQL run needs the server of
`MDA_TEST_PG_DSN` (default `postgresql://postgres@127.0.0.1:5432/test`, which keeps its
test databases to itself); when it is unreachable that run is skipped with a notice, except
under `CI=true`, where that is a failure.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".mda-install-stamp"

# Debian packages whose programs the tests talk to, keyed by the program they provide (or,
# for a package with no program of its own, by an absolute path of a file it installs).
DEBIAN_TEST_TOOLS = {
    "swaks": "swaks",
    "sieve-test": "dovecot-sieve",
    "sieve-connect": "sieve-connect",
    "doveadm": "dovecot-core",
    "postfix": "postfix",
    "/usr/lib/postfix/postfix-pgsql.so": "postfix-pgsql",  # Postfix's pgsql: map type
    "docker-compose": "docker-compose",
}

# debconf answers set before installing, so that apt asks nothing and sets up no system
# instance: the tests run Postfix only in private instances with their own configuration.
DEBCONF_PRESEED = {
    "postfix": "postfix postfix/main_mailer_type select No configuration",
}


def _requirements_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create `.venv` and install mda[test] into it unless already current."""
    if sys.version_info < (3, 11):
        sys.exit(f"mda needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("run.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _requirements_hash():
        return
    print("run.py: installing mda and its dependencies into .venv", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(_requirements_hash())


def ensure_debian_tools() -> None:
    """Install the Debian packages the tests use, when missing and we can."""
    missing = [pkg for tool, pkg in DEBIAN_TEST_TOOLS.items()
               if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool))]
    if not missing:
        return
    can_install = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if not can_install:
        print(f"run.py: missing {', '.join(missing)}; tests that need them will be skipped",
              file=sys.stderr)
        return
    print(f"run.py: apt-get install {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    preseed = [DEBCONF_PRESEED[pkg] for pkg in missing if pkg in DEBCONF_PRESEED]
    if preseed:
        subprocess.run(["debconf-set-selections"], input="\n".join(preseed) + "\n", text=True,
                       check=True, env=env)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env)


TEST_BACKENDS = ("sqlite", "postgresql")
# pytest-xdist workers per run: most tests wait on subprocesses and sockets, so a third
# worker on two cores still shortens the run; a fourth did not.
TEST_WORKERS = 3
# pytest's closing line, e.g. "12 failed, 1740 passed, 3 skipped in 301.2s (0:05:01)".
_PYTEST_TOTALS = re.compile(r"^=* ?((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s\b.*$")


def _has_worker_option(args: list[str]) -> bool:
    """Whether pytest options already choose the xdist worker count (or turn xdist off)."""
    return any(a in ("-n", "--numprocesses", "no:xdist") or re.fullmatch(r"-n\d+|-nauto", a)
               or a.startswith("--numprocesses=") for a in args)


def _postgresql_unreachable() -> str | None:
    """Why the test PostgreSQL server cannot be reached, or None when it can."""
    probe = ("import asyncio, asyncpg\n"
             "from tests.conftest import PG_ADMIN_DSN\n"
             "async def main():\n"
             "    await (await asyncpg.connect(PG_ADMIN_DSN, timeout=5)).close()\n"
             "asyncio.run(main())\n")
    proc = subprocess.run([str(BIN / "python"), "-c", probe], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"probe exited {proc.returncode}"


def _run_pytest(backend: str, args: list[str]) -> tuple[int, dict[str, int]]:
    """Run pytest for one backend, streaming its output.

    Returns:
        (exit status, the counts of its closing line: {"passed": 1740, "failed": 2, ...},
        errors counted as failed).
    """
    env = dict(os.environ, MDA_TEST_BACKEND=backend)
    command = [str(BIN / "python"), "-m", "pytest", *args]
    counts: dict[str, int] = {}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            match = _PYTEST_TOTALS.match(raw.decode("utf-8", "replace").strip())
            if match:
                counts = {}
                for number, word in re.findall(r"(\d+) ([a-z]+)", match.group(1)):
                    key = "failed" if word in ("error", "errors") else word
                    counts[key] = counts.get(key, 0) + int(number)
    return proc.returncode, counts


def run_tests(argv: list[str]) -> int:
    """`run.py test [--backend sqlite|postgresql] [pytest options]`: one pytest run per
    backend, then one line per run and the totals.

    Returns:
        0 when every run passed (or selected no test), 1 when one failed, 2 for bad usage.
    """
    backends = list(TEST_BACKENDS)
    args = list(argv)
    if args and (args[0] == "--backend" or args[0].startswith("--backend=")):
        value = args[0].partition("=")[2] or (args[1] if len(args) > 1 else "")
        del args[:1 if "=" in args[0] else 2]
        if value not in TEST_BACKENDS:
            print(f"run.py test: --backend must be one of {', '.join(TEST_BACKENDS)}",
                  file=sys.stderr)
            return 2
        backends = [value]
    if not _has_worker_option(args):
        args = ["-n", str(TEST_WORKERS), *args]
    if not any(a.startswith("--durations") for a in args):
        args = ["--durations=15", *args]  # the slowest tests of each run, to keep it short
    in_ci = os.environ.get("CI", "").lower() == "true"
    ensure_debian_tools()
    lines: list[str] = []
    failed = False
    totals: dict[str, int] = {}
    for backend in backends:
        print(f"\nrun.py test: {backend} run (MDA_TEST_BACKEND={backend})", flush=True)
        if backend == "postgresql" and (reason := _postgresql_unreachable()) is not None:
            print(f"run.py test: PostgreSQL is unreachable: {reason}", flush=True)
            lines.append(f"{backend}: {'FAILED' if in_ci else 'not run'}: PostgreSQL is "
                         f"unreachable ({reason})")
            failed = failed or in_ci
            continue
        started = time.monotonic()
        status, counts = _run_pytest(backend, args)
        minutes, seconds = divmod(round(time.monotonic() - started), 60)
        ok = status in (0, 5)  # 5: the options selected no test of this backend
        failed = failed or not ok
        what = ", ".join(f"{n} {word}" for word, n in counts.items()) or f"exit {status}"
        lines.append(f"{backend}: {'ok' if ok else 'FAILED'}: {what} in {minutes}m{seconds:02d}s")
        for word, n in counts.items():
            totals[word] = totals.get(word, 0) + n
    print()
    for line in lines:
        print(f"run.py test: {line}")
    # the closing line over every run, in pytest's words
    print(f"total: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed, "
          f"{totals.get('skipped', 0)} skipped", flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "mda"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "serve":
        args = [str(BIN / "mda"), "serve", *rest]
    elif command == "mda":
        args = [str(BIN / "mda"), *rest]
    else:
        return run_tests(rest)
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
