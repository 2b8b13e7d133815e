#!/usr/bin/env python3
"""Bootstrap and run mda from a fresh clone with nothing but Python 3.11+.

Usage:
    python3 run.py serve [mda serve options]   start mda on the embedded SQLite default
    python3 run.py test [pytest options]       run the whole test suite
    python3 run.py mda ARGS...                 any other `mda` command (e.g. `user add`)

The first call creates `.venv/` beside this file and installs mda with its test
dependencies into it; later calls reuse it (re-installing when `pyproject.toml` changed).
`test` also installs the Debian packages the tests drive (swaks, ...) through apt-get when
they are missing and we are root; without them those tests are skipped, except under
`CI=true`, where a missing tool is a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".mda-install-stamp"

# Debian packages whose programs the tests talk to, keyed by the program they provide.
DEBIAN_TEST_TOOLS = {
    "swaks": "swaks",
    "sieve-test": "dovecot-sieve",
    "sieve-connect": "sieve-connect",
    "doveadm": "dovecot-core",
    "postfix": "postfix",
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
    missing = [pkg for prog, pkg in DEBIAN_TEST_TOOLS.items() if shutil.which(prog) is None]
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
        ensure_debian_tools()
        args = [str(BIN / "python"), "-m", "pytest", *rest]
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
