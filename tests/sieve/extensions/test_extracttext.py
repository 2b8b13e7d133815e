"""extracttext (RFC 5703 §7). Expected values were checked against sieve-test, except
:first, which counts characters as the RFC says (Pigeonhole counts octets)."""

from __future__ import annotations

import pytest

from mda.sieve import SieveCompileError, compile_script
from mda.sieve.extensions.extracttext import html_to_text
from tests.sieve.extensions.mime_messages import NESTED
from tests.sieve.helpers import stores

REQ = 'require ["foreverypart", "mime", "extracttext", "variables", "fileinto"];\n'


def test_text_of_each_part() -> None:
    script = REQ + 'foreverypart { extracttext "t"; fileinto "t-${t}"; }'
    # multiparts and message/rfc822 give ""; QP and latin-1 decoded; HTML as text
    assert stores(script, NESTED) == ["t-", "t-Größe one", "t-inner html ", "t-inner plain",
                                      "t-xyz"]


def test_first_counts_characters_then_modifiers_apply() -> None:
    script = REQ + ('foreverypart { if header :mime :contenttype "content-type" '
                    '"text/plain" { extracttext :upper :first 3 "t"; fileinto "t-${t}"; } }')
    assert stores(script, NESTED) == ["t-GRÖ", "t-INN"]


def test_length_modifier() -> None:
    script = REQ + ('foreverypart { if header :mime :subtype "content-type" "html" '
                    '{ extracttext :length "t"; fileinto "n-${t}"; } }')
    assert stores(script, NESTED) == ["n-11"]


@pytest.mark.parametrize(("html", "text"), [
    ("<p>inner <b>html</b></p>", "inner html "),
    ("<html><head><title>T</title><style>x{}</style></head><body>A&amp;B&nbsp;C<br>D"
     "<div>E</div>F &lt;g&gt; <script>z</script>end</body></html>",
     "T A&B C D E F <g> end "),
])
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize("script", [
    'extracttext "t";',                                 # outside foreverypart
    'foreverypart { extracttext "${x}"; }',             # name must be constant
    'foreverypart { extracttext "a-b"; }',              # invalid variable name
    'foreverypart { extracttext :first "3" "t"; }',     # :first takes a number
])
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveCompileError):
        compile_script(REQ + script)


def test_needs_variables() -> None:
    with pytest.raises(SieveCompileError):
        compile_script('require ["foreverypart", "extracttext"];\n'
                       'foreverypart { extracttext "t"; }')
