"""Resource limits of the Sieve engine, as one frozen value.

Hitting a compile-time limit is a `SieveCompileError` of kind `limit`; hitting a run-time
limit is a run-time error (RFC 5228 §2.10.6: implicit keep), never a hung worker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit the engine enforces.

    Attributes:
        script_size: maximum script size in bytes (default 1 MiB).
        max_actions: maximum number of actions one run may produce (default 32,
            RFC 5228 §2.10.5 allows such a limit).
        max_redirects: maximum number of redirect actions in one run (default 4).
        max_nesting: maximum nesting depth of blocks and tests (default 32).
        max_steps: maximum number of commands and tests evaluated in one run (default
            100 000); bounds the work of any script within the other limits.
        max_variable_size: maximum length of a variable value in characters (RFC 5229 §3
            allows truncation; default 4096).
        max_variables: maximum number of distinct variables (default 255).
        max_match_values: maximum number of match variables kept (RFC 5229 §3.2, default 32).
        regex_timeout: seconds a single `:regex` match may take (default 0.1).
        include_depth: maximum nesting of `include` (RFC 6609, default 10).
        max_includes: maximum number of scripts included in one run (default 255).
    """

    script_size: int = 1024 * 1024
    max_actions: int = 32
    max_redirects: int = 4
    max_nesting: int = 32
    max_steps: int = 100_000
    max_variable_size: int = 4096
    max_variables: int = 255
    max_match_values: int = 32
    regex_timeout: float = 0.1
    include_depth: int = 10
    max_includes: int = 255

    def __post_init__(self) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            if getattr(self, name) < 0:
                raise ValueError(f"limit {name} must not be negative")


DEFAULT_LIMITS = Limits()
