"""`Dockerfile`, `docker-compose.yml` and the `mta` image checked without a Docker engine.

- The compose file is read with PyYAML (its `${VAR:-default}` values filled in with their
  defaults) and by the real compose client (`docker compose config`, or Debian's
  `docker-compose`), which validates it against the Compose schema.
- Every `MDA_*` variable it or the Dockerfile sets must be a setting mda reads, with a value
  mda accepts; ports, healthchecks and `depends_on` conditions must fit together.
- The Dockerfile: a slim final stage without compilers, run as a user that is not root, with a
  HEALTHCHECK whose command really does tell a healthy `mda serve` from one whose database
  is gone (run here against a real `mda serve`).
- The `mta` image: its `main.cf` hands mail to the `mda` service's LMTP port and keeps
  docs/postfix.md's settings; its address lookup query runs on a real, migrated PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import yaml
from sqlalchemy.engine import make_url

import mda
from mda.config import Settings
from mda.server import ListenAddress
from mda.store.migrate import MIGRATIONS_DIR, upgrade
from tests.conftest import ROOT, database_away
from tests.e2e.conftest import launch_server, stop_servers

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
MTA_DIR = ROOT / "docker" / "mta"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> object:
    """`${VAR:-default}` and `${VAR-default}` replaced by the default, as compose does when
    VAR is unset (the test environment sets none of them)."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict) -> dict:
    return interpolate(raw_compose)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def mda_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def container_port(mapping: str) -> int:
    """The container side of a `ports:` entry (`[IP:]HOST:CONTAINER[/proto]`)."""
    return int(mapping.split("/")[0].rsplit(":", 1)[1])


def listen_port(text: str) -> int:
    port = ListenAddress.parse(text).port
    assert port is not None, text
    return port


# ---------------------------------------------------------------- the compose file


def test_compose_has_the_three_services(services: dict) -> None:
    assert set(services) == {"postgres", "mda", "mta"}


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_ready(compose: dict,
                                                                     services: dict) -> None:
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    volume, _, target = postgres["volumes"][0].partition(":")
    assert target.split(":")[0] == "/var/lib/postgresql/data"
    assert volume in compose["volumes"], "a named volume, not a host folder"
    test = " ".join(postgres["healthcheck"]["test"])
    env = postgres["environment"]
    assert f"pg_isready -U {env['POSTGRES_USER']} -d {env['POSTGRES_DB']}" in test


def test_every_mda_variable_is_a_setting_with_a_valid_value(services: dict) -> None:
    environment = mda_environment(services["mda"])
    unknown = {key for key in environment
               if key.startswith("MDA_") and key[4:].lower() not in Settings.model_fields}
    assert not unknown, f"not settings of mda.config.Settings: {sorted(unknown)}"
    settings = Settings(**{key[4:].lower(): value for key, value in environment.items()
                           if key.startswith("MDA_")})
    assert settings.allow_plaintext_auth or settings.tls_cert is not None, \
        "ManageSieve logins through a published port need TLS or plaintext auth"


def test_mda_uses_the_postgres_service_with_its_credentials(raw_compose: dict,
                                                            services: dict) -> None:
    url = make_url(mda_environment(services["mda"])["MDA_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.database, url.username, url.password) == (
        "postgres", postgres["POSTGRES_DB"], postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"])
    raw_url = raw_compose["services"]["mda"]["environment"]["MDA_DATABASE_URL"]
    raw_password = raw_compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert raw_password in raw_url, "one variable sets both passwords"
    mta = services["mta"]["environment"]
    assert (mta["MTA_DB_HOST"], mta["MTA_DB_NAME"], mta["MTA_DB_USER"],
            mta["MTA_DB_PASSWORD"]) == ("postgres", url.database, url.username, url.password)


def test_mda_listens_where_its_ports_and_the_mta_point(services: dict) -> None:
    environment = mda_environment(services["mda"])
    published = {container_port(p) for p in services["mda"]["ports"]}
    assert {listen_port(environment["MDA_MANAGESIEVE_LISTEN"]),
            listen_port(environment["MDA_HTTP_LISTEN"])} == published
    for name in ("MDA_LMTP_LISTEN", "MDA_MANAGESIEVE_LISTEN", "MDA_HTTP_LISTEN"):
        assert ListenAddress.parse(environment[name]).host == "0.0.0.0", \
            f"{name}: other containers must reach it"
    assert listen_port(environment["MDA_LMTP_LISTEN"]) not in published, \
        "LMTP stays inside the compose network"
    assert environment["MDA_SUBMISSION_URL"] == "smtp://mta:25"
    assert [container_port(p) for p in services["mta"]["ports"]] == [25]
    assert services["mta"]["ports"][0].rsplit(":", 1)[0].endswith(":2525")


def test_published_ports_listen_on_loopback_only(services: dict) -> None:
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_services_start_in_order_of_health(services: dict) -> None:
    assert services["mda"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["mta"]["depends_on"] == {"mda": {"condition": "service_healthy"}}


def test_the_mda_healthcheck_asks_healthz_on_the_http_port(services: dict) -> None:
    check = services["mda"]["healthcheck"]
    port = listen_port(mda_environment(services["mda"])["MDA_HTTP_LISTEN"])
    assert check["test"][0] == "CMD"
    assert f"http://127.0.0.1:{port}/healthz" in check["test"][-1]
    assert int(check["timeout"].rstrip("s")) < int(check["interval"].rstrip("s"))


def test_docker_waits_for_the_graceful_shutdown(services: dict) -> None:
    grace = int(services["mda"]["stop_grace_period"].rstrip("s"))
    assert grace > Settings.model_fields["shutdown_timeout"].default


def compose_command(require_tool: Callable[[str], str]) -> list[str]:
    """`docker compose` when the Docker CLI has the compose plugin, else `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=60).returncode == 0:
        return [docker, "compose"]
    return [require_tool("docker-compose")]


def test_the_compose_client_validates_the_file(require_tool: Callable[[str], str],
                                               services: dict) -> None:
    """`config` checks the file against the Compose schema and fills in the variables; no
    engine is needed."""
    variables = {match.group(1) for match in _VARIABLE.finditer(COMPOSE_FILE.read_text())}
    env = {key: value for key, value in os.environ.items() if key not in variables}
    proc = subprocess.run([*compose_command(require_tool), "-f", str(COMPOSE_FILE), "config"],
                          capture_output=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    rendered = yaml.safe_load(proc.stdout)["services"]
    assert mda_environment(rendered["mda"]) == mda_environment(services["mda"])
    assert rendered["mta"]["depends_on"]["mda"]["condition"] == "service_healthy"


# ---------------------------------------------------------------- the Dockerfile


def instructions(path: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), with continuation
    lines joined and comments dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)[-1]


def arguments_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for name, arguments in stage if name == keyword]


def dockerfile_environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    environment = {}
    for arguments in arguments_of(stage, "ENV"):
        for word in shlex.split(arguments):
            key, _, value = word.partition("=")
            environment[key] = value
    return environment


def test_the_image_is_built_in_two_stages_on_slim_python() -> None:
    stages = instructions(DOCKERFILE)
    assert len(stages) == 2
    assert arguments_of(stages[0], "FROM") == ["python:3.11-slim AS builder"]
    assert arguments_of(stages[1], "FROM") == ["python:3.11-slim"]
    assert ["--from=builder /opt/mda /opt/mda"] == [
        a for a in arguments_of(stages[1], "COPY") if a.startswith("--from")]


def test_the_final_stage_has_no_compiler_and_installs_nothing(
        final_stage: list[tuple[str, str]]) -> None:
    commands = " ".join(arguments_of(final_stage, "RUN"))
    for word in ("apt-get", "build-essential", "gcc", "pip install", "python3-dev"):
        assert word not in commands


def test_the_final_stage_runs_as_a_user_that_is_not_root(
        final_stage: list[tuple[str, str]]) -> None:
    users = arguments_of(final_stage, "USER")
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert "--user-group --uid 10001" in " ".join(arguments_of(final_stage, "RUN"))


def test_the_image_exposes_and_listens_on_the_same_ports(
        final_stage: list[tuple[str, str]]) -> None:
    assert arguments_of(final_stage, "EXPOSE") == ["24 4190 8080"]
    environment = dockerfile_environment(final_stage)
    assert {listen_port(environment[name]) for name in (
        "MDA_LMTP_LISTEN", "MDA_MANAGESIEVE_LISTEN", "MDA_HTTP_LISTEN")} == {24, 4190, 8080}
    assert arguments_of(final_stage, "CMD") == ['["mda", "serve"]']


def test_every_mda_variable_of_the_image_is_a_setting(
        final_stage: list[tuple[str, str]]) -> None:
    environment = {key: value for key, value in dockerfile_environment(final_stage).items()
                   if key.startswith("MDA_")}
    unknown = {key for key in environment if key[4:].lower() not in Settings.model_fields}
    assert not unknown, sorted(unknown)
    Settings(**{key[4:].lower(): value for key, value in environment.items()})


def test_the_migrations_go_where_mda_looks_for_them() -> None:
    """The alembic revisions are part of the `mda` package (so of the wheel the builder
    installs), which is where `mda.store.migrate` looks (`MIGRATIONS_DIR`); the build checks
    that the installed mda finds them. tests/docker/test_wheel.py installs a real wheel."""
    assert MIGRATIONS_DIR == Path(mda.__file__).resolve().parent / "migrations"
    builder = " ".join(arguments_of(instructions(DOCKERFILE)[0], "RUN"))
    assert "pip wheel" in builder and "pip install /tmp/wheels/mda-" in builder
    assert "migrations" not in " ".join(arguments_of(instructions(DOCKERFILE)[0], "COPY"))
    assert "head_revision()" in builder, "the build fails when mda cannot find them"


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = set()
    for stage in instructions(DOCKERFILE):
        for arguments in arguments_of(stage, "COPY"):
            if not arguments.startswith("--from"):
                copied.update(arguments.split()[:-1])
    assert copied == {"pyproject.toml", "README.md", "mda", "sieve_scripts"}
    assert not copied & ignored
    for path in copied:
        assert (ROOT / path).exists(), path


def healthcheck_command(final_stage: list[tuple[str, str]]) -> list[str]:
    (arguments,) = arguments_of(final_stage, "HEALTHCHECK")
    options, _, command = arguments.partition(" CMD ")
    assert "--timeout=5s" in options and "--start-period" in options
    return yaml.safe_load(command)  # the exec form is a JSON array


def test_the_healthcheck_tells_healthy_from_a_lost_database(
        final_stage: list[tuple[str, str]], mda_env: dict[str, str], database_url: str,
        tmp_path: Path) -> None:
    """The HEALTHCHECK command itself, run against a real `mda serve`: exit 0 while the
    database answers, not 0 while it is gone (/healthz answers 503), 0 once it is back."""
    command = healthcheck_command(final_stage)
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    upgrade(database_url)
    server = launch_server({**mda_env, "MDA_HTTP_LISTEN": "127.0.0.1:0"}, tmp_path)
    try:
        where = re.search(r"listening for HTTP on (\S+)",
                          server.wait_for_log("listening for HTTP")).group(1)  # type: ignore[union-attr]
        probe_env = {**mda_env, "MDA_HTTP_LISTEN": where}

        def probe() -> int:
            return subprocess.run([sys.executable, "-c", command[2]], env=probe_env,
                                  capture_output=True, timeout=30).returncode

        assert probe() == 0
        with database_away(database_url):
            assert probe() != 0
        assert probe() == 0
    finally:
        stop_servers([server])


# ---------------------------------------------------------------- the mta image


def main_cf() -> dict[str, str]:
    settings = {}
    for line in (MTA_DIR / "main.cf").read_text().splitlines():
        if line.strip() and not line.startswith(("#", " ", "\t")):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def documented_main_cf() -> dict[str, str]:
    """The main.cf lines of docs/postfix.md (the block after its test marker)."""
    text = (ROOT / "docs" / "postfix.md").read_text()
    block = text.split("<!-- postfix-test: main.cf -->", 1)[1].split("```")[1]
    settings = {}
    for line in block.splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def test_postfix_hands_mail_to_the_mda_service(services: dict) -> None:
    port = listen_port(mda_environment(services["mda"])["MDA_LMTP_LISTEN"])
    assert main_cf()["virtual_transport"] == f"lmtp:inet:mda:{port}"
    assert main_cf()["lmtp_host_lookup"] == "native"


def test_postfix_keeps_the_documented_settings() -> None:
    """docs/postfix.md's lines, except the ones compose changes on purpose."""
    changed = {"virtual_transport", "virtual_mailbox_maps", "mynetworks"}
    documented = {name: value for name, value in documented_main_cf().items()
                  if name not in changed}
    ours = main_cf()
    assert {name: ours.get(name) for name in documented} == documented
    assert "mynetworks" not in ours and ours["mynetworks_style"] == "subnet"
    assert int(ours["message_size_limit"]) <= Settings.model_fields["max_message_size"].default


def test_the_mta_image_runs_postfix_with_the_pgsql_map() -> None:
    stages = instructions(MTA_DIR / "Dockerfile")
    assert len(stages) == 1
    assert arguments_of(stages[0], "FROM") == ["debian:bookworm-slim"]
    run = " ".join(arguments_of(stages[0], "RUN"))
    assert "postfix postfix-pgsql" in run and "No configuration" in run
    assert "postconf -F '*/*/chroot = n'" in run, "unchrooted daemons resolve `mda`"
    assert arguments_of(stages[0], "CMD") == ['["postfix", "start-fg"]']
    assert main_cf()["virtual_mailbox_maps"] == "pgsql:/etc/postfix/pgsql-mailboxes.cf"


def test_the_entrypoint_is_valid_sh() -> None:
    script = MTA_DIR / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()


def pgsql_query() -> str:
    (line,) = [line for line in (MTA_DIR / "pgsql-mailboxes.cf").read_text().splitlines()
               if line.startswith("query")]
    return line.partition("=")[2].strip()


async def lookup(url: str, key: str) -> list[str]:
    """Run the map's query as Postfix's pgsql table does: the key lower-cased, escaped as a
    string literal (quotes doubled) and put in place of %s."""
    query = pgsql_query().replace("%s", key.lower().replace("'", "''"))
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql")
                                       .render_as_string(hide_password=False))
    try:
        return [row[0] for row in await connection.fetch(query)]
    finally:
        await connection.close()


@pytest.mark.postgresql_only
def test_the_address_lookup_query_finds_mda_users(database_url: str,
                                                  mda: Callable[..., object]) -> None:
    mda("db", "upgrade", check=True)
    mda("user", "add", "Dave@Example.org", check=True)
    found = {key: asyncio.run(lookup(database_url, key)) for key in (
        "dave@example.org", "DAVE@EXAMPLE.ORG", "bob@example.org", "@example.org",
        "x' OR '1'='1@example.org")}
    assert found == {"dave@example.org": ["OK"], "DAVE@EXAMPLE.ORG": ["OK"],
                     "bob@example.org": [], "@example.org": [],
                     "x' OR '1'='1@example.org": []}

