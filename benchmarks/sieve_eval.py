"""Benchmark: Sieve compile time and evaluation time per message (issue 3).

Prints, for a 20-rule and a 200-rule script: compile time, evaluation time per message
with message parsing included and excluded. "parse+evaluate" parses the same bytes each
time; "distinct" gives every message its own From and Subject, so nothing parsed for one
message (address lists are cached by their text) helps the next.
Run: `python benchmarks/sieve_eval.py [N]`.
"""

from __future__ import annotations

import sys
import time

from mda.sieve import Envelope, compile_script, evaluate, parse_message

MESSAGE = (b"From: \"Alice\" <alice@example.org>\r\nTo: bob@example.com\r\n"
           b"Subject: Quarterly report 42\r\nList-Id: <dev.lists.example.org>\r\n\r\n"
           + b"Hello Bob, here is the report.\r\n" * 300)


def script(rules: int) -> str:
    lines = ['require ["fileinto", "envelope", "variables", "relational", "imap4flags"];']
    for i in range(rules):
        kind = i % 4
        if kind == 0:
            lines.append(f'if header :contains "subject" "topic{i}" {{ fileinto "T{i}"; stop; }}')
        elif kind == 1:
            lines.append(f'if address :domain :is "from" "d{i}.example" {{ fileinto "D{i}"; }}')
        elif kind == 2:
            lines.append(f'if header :matches "list-id" "*<l{i}.*>*" {{ fileinto "L${{1}}"; }}')
        else:
            lines.append(f'if allof(size :over {i}K, envelope :is "to" "x{i}@example.com") '
                         f'{{ addflag "$big"; }}')
    lines.append('fileinto "Archive";')
    return "\n".join(lines)


def distinct(n: int) -> bytes:
    """MESSAGE with a From and Subject no other message has."""
    return MESSAGE.replace(b"alice@example.org", f"alice{n}@d{n}.example.org".encode()) \
        .replace(b"report 42", f"report {n}".encode())


def timed(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    envelope = Envelope("alice@example.org", "bob@example.com")
    message = parse_message(MESSAGE)
    for rules in (20, 200):
        source = script(rules)
        compile_s = timed(lambda: compile_script(source), max(5, repeat // 50))
        program = compile_script(source)
        eval_s = timed(lambda: evaluate(program, message, envelope), repeat)
        both_s = timed(lambda: evaluate(program, parse_message(MESSAGE), envelope), repeat)
        counter = iter(range(10**9))
        distinct_s = timed(lambda: evaluate(program, parse_message(distinct(next(counter))),
                                            envelope), repeat)
        print(f"{rules:4d} rules: compile {compile_s * 1e3:8.2f} ms   "
              f"evaluate {eval_s * 1e3:7.3f} ms/msg   "
              f"parse+evaluate {both_s * 1e3:7.3f} ms/msg   "
              f"distinct {distinct_s * 1e3:7.3f} ms/msg")


if __name__ == "__main__":
    main()
