"""`mda sieve put` applies the per-user script quotas ManageSieve applies (RFC 5804 §1.3)."""

from __future__ import annotations

from tests.cli.conftest import Run, as_json, assert_one_line_error

JOE = "joe@example.com"


def test_put_refuses_past_the_script_count_and_storage(cli: Run,
                                                       mda_env: dict[str, str]) -> None:
    cli("user", "add", JOE, check=True)
    env = dict(mda_env, MDA_SIEVE_MAX_SCRIPTS="2", MDA_SIEVE_MAX_STORAGE="30")
    cli("sieve", "put", JOE, "a", "-", input=b"keep;" + b" " * 15, env=env, check=True)
    cli("sieve", "put", JOE, "b", "-", input=b"keep;", env=env, check=True)
    assert_one_line_error(cli("sieve", "put", JOE, "c", "-", input=b"keep;", env=env),
                          "Sieve script quota: this would make 3 scripts; at most 2 are "
                          "allowed")
    # Replacing "a" counts only the difference: 25 + 5 = 30 fits, 26 + 5 does not.
    cli("sieve", "put", JOE, "a", "-", input=b"keep;" + b" " * 20, env=env, check=True)
    assert_one_line_error(cli("sieve", "put", JOE, "a", "-", input=b"keep;" + b" " * 21,
                              env=env),
                          "Sieve script quota: all scripts together would take 31 octets; "
                          "at most 30 are allowed")
    assert [s["size"] for s in as_json(cli("sieve", "list", JOE, "--json"))] == [25, 5]
