"""Errors raised by the Sieve engine.

Exception tree::

    SieveError
    ├── SieveCompileError   the script is not valid Sieve (RFC 5228 §8 grammar, §3.2 require,
    │                       a command's argument rules); carries line, column and kind
    └── SieveRuntimeError   raised inside evaluation only; `evaluate` turns it into
                            `Result.errors` plus implicit keep (RFC 5228 §2.10.6), so it
                            never reaches the caller

Compile error kinds (a closed set, see `ErrorKind`): `syntax`, `unknown-command`,
`unknown-extension`, `missing-require`, `require-position`, `bad-argument`,
`missing-argument`, `bad-value`, `limit`.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "syntax",
    "unknown-command",
    "unknown-extension",
    "missing-require",
    "require-position",
    "bad-argument",
    "missing-argument",
    "bad-value",
    "limit",
]


class SieveError(Exception):
    """Base class of every error of the Sieve engine."""


class SieveCompileError(SieveError):
    """The script does not compile.

    Attributes:
        line: 1-based line of the offending token.
        column: 1-based column (in characters) of the offending token.
        kind: one of `ErrorKind`.
        message: the reason, without the position; names the RFC rule where one applies.
        whole_script: the error is about the script as a whole (such as its size), not a
            position in it; `line` and `column` are then 1 and `str()` omits them.

    `str(error)` is the text to show: `line L, column C: <message>`, or just the message
    for a whole-script error.
    """

    def __init__(self, line: int, column: int, kind: ErrorKind, message: str, *,
                 whole_script: bool = False) -> None:
        super().__init__(message if whole_script else f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.kind = kind
        self.message = message
        self.whole_script = whole_script


class SieveRuntimeError(SieveError):
    """A run-time error: the script's actions are dropped and implicit keep applies.

    RFC 5228 §2.10.6: "If an error occurs during execution of a script, the implementation
    ... MUST ... implicitly keep". Caught by `evaluate`, never raised to its caller.

    Attributes:
        message: the reason, as it appears in `Result.errors`.
    """

    def __init__(self, message: str, line: int = 0) -> None:
        text = f"line {line}: {message}" if line else message
        super().__init__(text)
        self.message = text
