"""Differential test: generated scripts and messages through mda and Pigeonhole's sieve-test.

Hypothesis builds Sieve scripts from the supported grammar (header, address, envelope,
exists, size, body, string, allof/anyof/not; match types :is/:contains/:matches and
relational :count/:value; the i;octet, i;ascii-casemap and i;ascii-numeric comparators;
subaddress parts; keep/fileinto (:copy, :flags)/redirect/discard/reject/stop, imap4flags
and variables with match variables) and MIME messages (encoded words in several
charsets, folded headers, address groups and display names, subaddresses, multipart
bodies in quoted-printable and base64). Each pair runs through mda's dry run and
through `sieve-test`; the normalised action lists (the conformance README's rules, same
code as the conformance test) must be equal.

The seed is fixed (`derandomize=True`) and CI runs `DEFAULT_EXAMPLES` examples; set
`MDA_DIFFERENTIAL_EXAMPLES=5000` to run longer by hand. Excluded on purpose, with the
reason (docs/sieve-deviations.md):
- a plain `fileinto` to a mailbox an earlier `fileinto :copy` used (conformance case
  174, RFC 3894 §3): `:copy` targets come from their own set of names;
- `extracttext :first` (case 306, RFC 5703 §7): not generated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.sieve.dryrun import dry_run
from mda.sieve.interpreter import Environment
from tests.conftest import MDA_BIN
from tests.sieve.test_conformance import normalise

DEFAULT_EXAMPLES = 150
EXAMPLES = int(os.environ.get("MDA_DIFFERENTIAL_EXAMPLES", DEFAULT_EXAMPLES))
ENVELOPE_FROM = "alice@example.org"
ENVELOPE_TO = "bob+work@example.com"
PIGEONHOLE_CONFIG = """\
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:{root}/mail
log_path = /dev/stderr
plugin {{
  sieve_extensions = +vacation-seconds +editheader +spamtest +spamtestplus +virustest
}}
"""

# -- messages -----------------------------------------------------------------------------

WORDS = ["alpha", "Beta", "report", "Größe", "naïve", "x", "LIST", "42", "007"]
ADDRESSES = ["alice@example.org", "bob+work@example.com", "Carol@Example.COM",
             "dave+@example.net", "eve@sub.example.org"]


def _encoded_word(text: str, charset: str, encoding: str) -> str:
    import base64
    import quopri

    data = text.encode(charset, errors="replace")
    if encoding == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = quopri.encodestring(data, header=True).decode("ascii").replace("=\n", "")
        payload = payload.replace("?", "=3F")
    return f"=?{charset}?{encoding}?{payload}?="


@st.composite
def header_text(draw: Any) -> str:
    """A header value: words, maybe RFC 2047 encoded, maybe folded."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
    out = []
    for word in words:
        if not word.isascii() or draw(st.booleans()) and draw(st.booleans()):
            charset = draw(st.sampled_from(["utf-8", "iso-8859-1"]))
            out.append(_encoded_word(word, charset, draw(st.sampled_from(["B", "Q"]))))
        else:
            out.append(word)
    separator = draw(st.sampled_from([" ", "\r\n ", "\r\n\t"]))
    return separator.join(out) if len(out) > 1 else out[0]


@st.composite
def address_field(draw: Any) -> str:
    """An address list: plain, display names (quoted, encoded), a group."""
    def one() -> str:
        addr = draw(st.sampled_from(ADDRESSES))
        form = draw(st.integers(0, 3))
        if form == 0:
            return addr
        if form == 1:
            return f"\"{draw(st.sampled_from(WORDS[:3]))} Person\" <{addr}>"
        if form == 2:
            return f"{_encoded_word('Jürgen', 'utf-8', 'Q')} <{addr}>"
        return f"<{addr}>"

    items = [one() for _ in range(draw(st.integers(1, 2)))]
    if draw(st.integers(0, 4)) == 0:
        return f"team: {', '.join(items)};"
    return ", ".join(items)


@st.composite
def text_part(draw: Any) -> tuple[str, bytes]:
    """(header lines, body bytes) of a text/plain part in some charset and encoding."""
    import base64
    import quopri

    text = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)))
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "us-ascii"]))
    data = text.encode(charset, errors="replace")
    cte = draw(st.sampled_from(["7bit", "quoted-printable", "base64"]))
    if cte == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":
        body = quopri.encodestring(data).replace(b"\n", b"\r\n") + b"\r\n"
    else:
        body = text.encode("utf-8") + b"\r\n"
        charset = "utf-8"
    head = (f"Content-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n")
    return head, body


@st.composite
def messages(draw: Any) -> bytes:
    """A whole message (CRLF), single part or multipart/mixed."""
    lines = [f"From: {draw(address_field())}", f"To: {draw(address_field())}"]
    if draw(st.booleans()):
        lines.append(f"Cc: {draw(address_field())}")
    lines.append(f"Subject: {draw(header_text())}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"X-Tag: {draw(header_text())}")
    lines.append("MIME-Version: 1.0")
    if draw(st.booleans()):
        head, body = draw(text_part())
        return ("\r\n".join(lines) + "\r\n" + head + "\r\n").encode("utf-8") + body
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            parts.append((b"Content-Type: application/octet-stream\r\n"
                          b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBAo=\r\n"))
        else:
            head, body = draw(text_part())
            parts.append(head.encode("ascii") + b"\r\n" + body)
    lines.append('Content-Type: multipart/mixed; boundary="=-b1"')
    out = ("\r\n".join(lines) + "\r\n\r\npreamble\r\n").encode("utf-8")
    for part in parts:
        out += b"--=-b1\r\n" + part
    return out + b"--=-b1--\r\n"


# -- scripts ------------------------------------------------------------------------------

def quote(text: str) -> str:
    """A Sieve quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_list(items: list[str]) -> str:
    """A Sieve string list (or a single string)."""
    return quote(items[0]) if len(items) == 1 else "[" + ", ".join(map(quote, items)) + "]"


class Script:
    """A script under construction: the capabilities its parts need."""

    def __init__(self) -> None:
        self.required: set[str] = set()

    def need(self, *capabilities: str) -> None:
        self.required.update(capabilities)

    def text(self, body: str) -> str:
        if not self.required:
            return body
        return f"require {string_list(sorted(self.required))};\n{body}"


KEYS = WORDS + ["*", "a*", "*ta", "?eta", "*@example.org", "alice@*", "*+*", "gr??e", "",
                "example.com", "bob", "work"]


@st.composite
def match_args(draw: Any, script: Script, numeric_ok: bool = True) -> tuple[str, list[str]]:
    """(match type and comparator tags, keys)."""
    kind = draw(st.integers(0, 9 if numeric_ok else 7))
    if kind <= 5:
        match = draw(st.sampled_from(["", ":is ", ":contains ", ":matches "]))
        comparator = draw(st.sampled_from(["", ':comparator "i;octet" ',
                                           ':comparator "i;ascii-casemap" ']))
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3))
        return match + comparator, keys
    if kind <= 7:
        relop = draw(st.sampled_from(["gt", "ge", "lt", "le", "eq", "ne"]))
        script.need("relational")
        return f':value "{relop}" ', draw(st.lists(st.sampled_from(KEYS), min_size=1,
                                                   max_size=2))
    script.need("relational", "comparator-i;ascii-numeric")
    relop = draw(st.sampled_from(["gt", "ge", "lt", "le", "eq", "ne"]))
    match = draw(st.sampled_from([":count", ":value"]))
    keys = draw(st.lists(st.sampled_from(["0", "1", "2", "3", "42", "7"]), min_size=1,
                         max_size=2))
    return f'{match} "{relop}" :comparator "i;ascii-numeric" ', keys


@st.composite
def sieve_tests(draw: Any, script: Script, depth: int = 0) -> str:
    """One Sieve test."""
    kind = draw(st.integers(0, 10 if depth < 2 else 7))
    if kind == 0:
        names = draw(st.lists(st.sampled_from(["subject", "x-tag", "to", "cc", "X-Missing"]),
                              min_size=1, max_size=2))
        tags, keys = draw(match_args(script))
        return f"header {tags}{string_list(names)} {string_list(keys)}"
    if kind == 1:
        part = draw(st.sampled_from(["", ":all ", ":localpart ", ":domain ", ":user ",
                                     ":detail "]))
        if part in (":user ", ":detail "):
            script.need("subaddress")
        names = draw(st.lists(st.sampled_from(["from", "to", "cc"]), min_size=1,
                              max_size=2))
        tags, keys = draw(match_args(script))
        return f"address {part}{tags}{string_list(names)} {string_list(keys)}"
    if kind == 2:
        script.need("envelope")
        part = draw(st.sampled_from(["", ":localpart ", ":domain ", ":detail "]))
        if part == ":detail ":
            script.need("subaddress")
        tags, keys = draw(match_args(script))
        which = draw(st.sampled_from([["from"], ["to"], ["from", "to"]]))
        return f"envelope {part}{tags}{string_list(which)} {string_list(keys)}"
    if kind == 3:
        names = draw(st.lists(st.sampled_from(["subject", "x-tag", "cc", "X-Missing"]),
                              min_size=1, max_size=2))
        return f"exists {string_list(names)}"
    if kind == 4:
        return (f"size {draw(st.sampled_from([':over', ':under']))} "
                f"{draw(st.sampled_from(['10', '300', '1K', '100K']))}")
    if kind == 5:
        script.need("body")
        transform = draw(st.sampled_from(["", ":text ", ":raw ", ':content "text" ']))
        keys = draw(st.lists(st.sampled_from(WORDS[:6]), min_size=1, max_size=2))
        return f"body {transform}:contains {string_list(keys)}"
    if kind == 6:
        script.need("variables")
        tags, keys = draw(match_args(script))
        return f"string {tags}{quote(draw(st.sampled_from(['${v}', '${1}', 'a${v}b'])))} " \
               f"{string_list(keys)}"
    if kind == 7:
        return draw(st.sampled_from(["true", "false"]))
    if kind == 8:
        return f"not {draw(sieve_tests(script, depth + 1))}"
    inner = draw(st.lists(sieve_tests(script, depth + 1), min_size=1, max_size=3))
    return f"{'allof' if kind == 9 else 'anyof'}({', '.join(inner)})"


@st.composite
def sieve_commands(draw: Any, script: Script, depth: int = 0) -> str:
    """One Sieve command."""
    kind = draw(st.integers(0, 11 if depth < 2 else 9))
    if kind == 0:
        script.need("fileinto")
        name = "Box-" + draw(st.sampled_from(["a", "b", "${1}", "${v}"]))
        if "$" in name:
            script.need("variables")
        flags = ""
        if draw(st.booleans()):
            script.need("imap4flags")
            flags = ":flags " + string_list(draw(st.lists(
                st.sampled_from(["\\Seen", "\\Flagged", "$Work", "\\seen"]), min_size=1,
                max_size=2))) + " "
        return f"fileinto {flags}{quote(name)};"
    if kind == 1:
        # :copy targets have their own names (RFC 3894 quirk of Pigeonhole, case 174)
        script.need("fileinto", "copy")
        return f"fileinto :copy {quote('Copy-' + draw(st.sampled_from(['a', 'b'])))};"
    if kind == 2:
        if draw(st.booleans()):
            script.need("imap4flags")
            return 'keep :flags "\\\\Answered";'
        return "keep;"
    if kind == 3:
        return "discard;"
    if kind == 4:
        copy = ""
        if draw(st.booleans()):
            script.need("copy")
            copy = ":copy "
        return f"redirect {copy}{quote(draw(st.sampled_from(ADDRESSES)))};"
    if kind == 5:
        script.need("imap4flags")
        verb = draw(st.sampled_from(["addflag", "setflag", "removeflag"]))
        flag = draw(st.sampled_from(["\\Flagged", "$Work", "\\Seen"]))
        return f"{verb} {quote(flag)};"
    if kind == 6:
        script.need("variables")
        modifier = draw(st.sampled_from(["", ":lower ", ":upper ", ":length ",
                                         ":upperfirst "]))
        value = draw(st.sampled_from(["x", "Beta", "${1}", "${v}${v}", "naïve"]))
        return f'set {modifier}"v" {quote(value)};'
    if kind == 7:
        return "stop;"
    if kind == 8:
        script.need("reject")
        return 'reject "not wanted";'
    if kind == 9:
        return "keep;"
    body = draw(st.lists(sieve_commands(script, depth + 1), min_size=1, max_size=3))
    text = f"if {draw(sieve_tests(script))} {{\n  " + "\n  ".join(body) + "\n}"
    if draw(st.booleans()):
        other = draw(st.lists(sieve_commands(script, depth + 1), min_size=1, max_size=2))
        text += " else {\n  " + "\n  ".join(other) + "\n}"
    return text


@st.composite
def scripts(draw: Any) -> str:
    """A whole script with the require it needs."""
    script = Script()
    body = draw(st.lists(sieve_commands(script), min_size=1, max_size=5))
    return script.text("\n".join(body) + "\n")


# -- the two implementations --------------------------------------------------------------

@pytest.fixture(scope="module")
def pigeonhole() -> Iterator[Any]:
    """Run sieve-test on a script and a message; returns the parsed result."""
    binary = shutil.which("sieve-test")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sieve-test is not installed; .ci/run should have installed it")
        pytest.skip("sieve-test (Debian dovecot-sieve) is not installed")
    uid, gid = os.getuid(), os.getgid()
    # as root, sieve-test drops privileges to mail_uid: the files must be reachable by
    # that user, so they live in a directory of their own directly under the system
    # temporary directory (pytest's tmp_path is private to root)
    with tempfile.TemporaryDirectory(prefix="mda-pigeonhole-") as name:
        root = Path(name)
        (root / "mail").mkdir()
        if uid == 0:
            uid = gid = 65534
            root.chmod(0o777)
            (root / "mail").chmod(0o777)
        yield _runner(binary, root, uid, gid)


def _runner(binary: str, root: Path, uid: int, gid: int) -> Any:
    config = root / "dovecot.conf"
    config.write_text(PIGEONHOLE_CONFIG.format(uid=uid, gid=gid, root=root))
    counter = iter(range(10**9))

    def run(script: str, message: bytes) -> dict[str, Any]:
        n = next(counter)
        script_path, message_path = root / f"s{n}.sieve", root / f"m{n}.eml"
        script_path.write_text(script, encoding="utf-8")
        message_path.write_bytes(message)
        for path in (script_path, message_path):
            path.chmod(0o666)
        proc = subprocess.run([binary, "-c", str(config), "-C", "-f", ENVELOPE_FROM,
                               "-a", ENVELOPE_TO, "-r", ENVELOPE_TO, str(script_path),
                               str(message_path)], capture_output=True, timeout=60,
                              env={**os.environ, "TZ": "UTC"})
        for path in (script_path, message_path):
            path.unlink()
        return parse_sieve_test(proc.stdout.decode("utf-8", "replace"),
                                proc.stderr.decode("utf-8", "replace"))

    return run


def parse_sieve_test(stdout: str, stderr: str) -> dict[str, Any]:
    """sieve-test's listing as the dry-run JSON shape (status and actions only)."""
    if "failed to compile" in stderr or "failed to compile" in stdout:
        return {"status": "compile_error", "actions": [], "text": stderr}
    if "resolved with successful implicit keep" in stderr:
        return {"status": "ok", "runtime_error": True, "text": stdout + stderr,
                "actions": [{"action": "store", "mailbox": "INBOX", "flags": []}]}
    actions: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        item = line.strip()
        if item.startswith("* "):
            what = item[2:]
            if what == "keep" or what.startswith("store message in folder: "):
                mailbox = "INBOX" if what == "keep" else what.split(": ", 1)[1]
                actions.append({"action": "store", "mailbox": mailbox, "flags": []})
            elif what.startswith("redirect message to: "):
                actions.append({"action": "redirect", "address": what.split(": ", 1)[1]})
            elif what.startswith("reject message with reason: "):
                actions.append({"action": "reject", "reason": what.split(": ", 1)[1]})
            elif what == "discard":
                actions.append({"action": "discard"})
            else:
                actions.append({"action": "unknown", "text": what})
        elif item.startswith("+ add IMAP flags: ") and actions[-1]["action"] == "store":
            actions[-1]["flags"] = item.split(": ", 1)[1].split()
    return {"status": "ok", "actions": actions, "text": stdout + stderr}


def mda_result(script: str, message: bytes) -> dict[str, Any]:
    """mda's dry run in-process (the function behind `mda sieve test --json`)."""
    return dry_run(script.encode("utf-8"), message, envelope_from=ENVELOPE_FROM,
                   envelope_to=ENVELOPE_TO, environment=Environment(timezone="UTC"))


def _same(script: str, message: bytes, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    context = f"\n--- script\n{script}\n--- message\n{message.decode('utf-8', 'replace')}" \
              f"\n--- sieve-test\n{theirs.get('text', '')}\n--- mda\n{ours}"
    assert ours["status"] == theirs["status"], context
    drop = {"discard"}  # sieve-test lists a discard; so do we, but it carries nothing
    want = [a for a in theirs["actions"] if a["action"] not in drop]
    got = [a for a in ours["actions"] if a["action"] not in drop]
    assert normalise(got) == normalise(want), context


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(script=scripts(), message=messages())
def test_same_actions_as_pigeonhole(pigeonhole: Any, script: str, message: bytes) -> None:
    _same(script, message, mda_result(script, message), pigeonhole(script, message))


@settings(max_examples=5, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(script=scripts(), message=messages())
def test_same_actions_through_the_cli(pigeonhole: Any, tmp_path: Path, script: str,
                                      message: bytes) -> None:
    (tmp_path / "s.sieve").write_text(script, encoding="utf-8")
    (tmp_path / "m.eml").write_bytes(message)
    proc = subprocess.run([MDA_BIN, "sieve", "test", str(tmp_path / "s.sieve"),
                           str(tmp_path / "m.eml"), "--envelope-from", ENVELOPE_FROM,
                           "--envelope-to", ENVELOPE_TO, "--json"], capture_output=True,
                          timeout=120, env={**{k: v for k, v in os.environ.items()
                                               if not k.startswith("MDA_")}, "TZ": "UTC"})
    _same(script, message, json.loads(proc.stdout), pigeonhole(script, message))


def test_the_parser_reads_sieve_test_listings() -> None:
    listing = ("\nPerformed actions:\n\n * store message in folder: A\n"
               "        + add IMAP flags: \\seen $work\n * redirect message to: <a@x.y>\n"
               " * keep\n\nImplicit keep:\n\n  (none)\n")
    assert parse_sieve_test(listing, "sieve-test: Info: final result: success")["actions"] \
        == [{"action": "store", "mailbox": "A", "flags": ["\\seen", "$work"]},
            {"action": "redirect", "address": "<a@x.y>"},
            {"action": "store", "mailbox": "INBOX", "flags": []}]
    assert parse_sieve_test("error: x.", "final result: failed; resolved with successful "
                            "implicit keep")["runtime_error"]
    assert re.search("compile", parse_sieve_test("", "Fatal: failed to compile")["status"])
