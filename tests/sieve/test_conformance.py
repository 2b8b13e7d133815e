"""Every case of the Pigeonhole conformance corpus, through the real `mda sieve test --json`.

One test id per case (`tests/sieve/conformance/<case>/`). The harness settings come from
the corpus README: mailboxes INBOX, Archive, Lists, Lists/sieve, Trash, Work; time zone
UTC; recipient delimiter `+`. Both sides are normalised the same way (README
"Comparing"). A case whose script requires a capability the engine does not list yet is
skipped, naming it; the list comes from the engine itself, so cases switch on as
extensions land. Cases marked `dovecot_quirk` are checked against the RFC behaviour
recorded in `RFC_EXPECTED`, with the section that justifies it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mda.sieve.registry import REGISTRY
from tests.conftest import CONFORMANCE, MDA_BIN

MAILBOXES = ("INBOX", "Archive", "Lists", "Lists/sieve", "Trash", "Work")
CASES = sorted(p for p in CONFORMANCE.iterdir() if (p / "case.json").is_file())

#: where Pigeonhole departs from the RFC, the RFC result we assert instead
RFC_EXPECTED: dict[str, list[dict[str, Any]]] = {
    # RFC 5228 §4.1 + RFC 3894 §3: the plain fileinto cancels the implicit keep; filing
    # into the same mailbox twice files once.
    "174-copy-fileinto-then-plain-same-box": [
        {"action": "store", "mailbox": "Archive", "flags": []},
    ],
    # RFC 5703 §7: ":first" counts characters, so "Größe" gives "Grö".
    "306-extracttext-utf8-split-char": [
        {"action": "store", "mailbox": "cut-Grö", "flags": []},
    ],
}

#: the corpus README's spamtest/virustest configuration, as mda settings
SPAM_VIRUS_SETTINGS = {
    "MDA_SPAMTEST_HEADER": r"X-Spam-Score: score=(-?[0-9]+(\.[0-9]+)?)",
    "MDA_SPAMTEST_MAX": "10",
    "MDA_VIRUSTEST_HEADER": "X-Virus-Scan",
    "MDA_VIRUSTEST_TEXT_VALUES": "1=clean,3=suspicious,5=infected",
}

_REQUIRE = re.compile(r"\brequire\s+(\[[^\]]*\]|\"[^\"]*\")", re.I)


def required_capabilities(script: str) -> list[str]:
    """The capability names in the script's require commands."""
    names: list[str] = []
    for m in _REQUIRE.finditer(script):
        names.extend(re.findall(r'"([^"]*)"', m.group(1)))
    return names


def _sanitise(text: str) -> str:
    """Pigeonhole's printed form: control characters → '?', over 128 bytes → cut + '...'."""
    text = re.sub(r"[\x00-\x1f\x7f]", "?", text)
    if len(text.encode("utf-8")) > 128:
        data = text.encode("utf-8")[:125]
        text = data.decode("utf-8", errors="ignore") + "..."
    return text


def _domain_lower(address: str) -> str:
    address = address.strip().strip("<>")
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def normalise(actions: list[dict[str, Any]]) -> list[str]:
    """Normalise an action list as the corpus README says; returns sorted JSON texts."""
    out = set()
    for action in actions:
        action = dict(action)
        kind = action["action"]
        if kind in ("keep", "fileinto"):
            action["action"] = kind = "store"
        if kind == "store":
            mailbox = action.get("mailbox", "INBOX")
            mailbox = "INBOX" if mailbox.upper() == "INBOX" else mailbox
            action["mailbox"] = _sanitise(mailbox)
            action["flags"] = sorted({f.lower() for f in action.get("flags", [])})
        elif kind == "redirect":
            action["address"] = _domain_lower(action["address"])
        elif kind == "reject":
            action["reason"] = _sanitise(action["reason"])
        elif kind == "vacation":
            action["reason"] = action["reason"].replace("\r\n", "\n")
        out.add(json.dumps(action, sort_keys=True, ensure_ascii=False))
    return sorted(out)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    spec = json.loads((case / "case.json").read_text(encoding="utf-8"))
    script = (case / "script.sieve").read_text(encoding="utf-8", errors="replace")
    missing = [c for c in required_capabilities(script) if c not in REGISTRY.capabilities]
    if missing:
        pytest.skip(f"extension not supported yet: {', '.join(sorted(set(missing)))}")
    envelope = spec["envelope"]
    args = [MDA_BIN, "sieve", "test", str(case / "script.sieve"), str(case / "message.eml"),
            "--envelope-from", envelope["from"], "--envelope-to", envelope["to"], "--json"]
    for name in MAILBOXES:
        args += ["--mailbox", name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env.update(SPAM_VIRUS_SETTINGS)
    env.update(TZ="UTC", MDA_RECIPIENT_DELIMITER="+",
               MDA_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'unused.sqlite3'}")
    proc = subprocess.run(args, capture_output=True, env=env, timeout=180)
    assert proc.stdout, proc.stderr.decode(errors="replace")
    got = json.loads(proc.stdout)
    expected = spec["expected"]
    assert got["status"] == expected["status"], (got, expected)
    assert (proc.returncode == 0) == (got["status"] == "ok")
    if expected["status"] == "compile_error":
        assert got["actions"] == [] and got["errors"], got
        assert re.match(r"line \d+, column \d+: ", got["errors"][0]), got["errors"]
        return
    want = RFC_EXPECTED.get(case.name, expected["actions"])
    assert normalise(got["actions"]) == normalise(want), (got, spec.get("dovecot_quirk"))
