# syntax=docker/dockerfile:1
# mda in a container: `docker build -t mda .`, or `docker compose up` (docker-compose.yml).
# docs/docker.md explains the settings, volumes and ports.

# ---- builder: build mda's wheel and install it with its dependencies into a venv -------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY mda ./mda

# Every dependency has binary wheels for CPython 3.11 on amd64 and arm64: no compiler.
RUN python -m venv /opt/mda \
 && /opt/mda/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/mda/bin/pip install /tmp/wheels/mda-*.whl

# The alembic revisions ship in the wheel (mda/migrations); fail the build now if the
# installed mda cannot find them.
RUN /opt/mda/bin/python -c "from mda.store.migrate import head_revision; print('schema revisions up to', head_revision())"

# ---- final: the venv on a slim Python, run as user mda ---------------------------------
FROM python:3.11-slim

RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/mda --no-create-home \
        --shell /usr/sbin/nologin mda \
 && install -d -o mda -g mda -m 0750 /var/lib/mda

COPY --from=builder /opt/mda /opt/mda
COPY sieve_scripts /etc/mda/sieve_scripts

# Defaults for a container: listen on every interface, keep the SQLite file (when no
# MDA_DATABASE_URL is given) in /var/lib/mda, the global Sieve scripts in /etc/mda.
ENV PATH=/opt/mda/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MDA_DATABASE_URL=sqlite+aiosqlite:////var/lib/mda/mda.sqlite3 \
    MDA_SIEVE_SCRIPTS_DIR=/etc/mda/sieve_scripts \
    MDA_LMTP_LISTEN=0.0.0.0:24 \
    MDA_MANAGESIEVE_LISTEN=0.0.0.0:4190 \
    MDA_HTTP_LISTEN=0.0.0.0:8080

# Mount a volume on /var/lib/mda to keep a SQLite database; compose uses PostgreSQL.
WORKDIR /var/lib/mda
USER mda

# LMTP, ManageSieve, HTTP (/healthz, /metrics). Port 24 needs no privilege: Docker lets
# unprivileged processes bind low ports inside a container's network namespace.
EXPOSE 24 4190 8080

# Healthy when /healthz answers 200, i.e. when the database answers (slim has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('MDA_HTTP_LISTEN', '').rpartition(':')[2] or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# `mda serve` applies the database migrations, then listens; SIGTERM stops it gracefully.
CMD ["mda", "serve"]
