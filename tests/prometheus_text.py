#!/usr/bin/env python3
"""A strict reader of the Prometheus text exposition format (version 0.0.4),
for the tests: reads standard input, prints the families as JSON, and exits
1 naming the line of the first thing it does not accept.

Accepted: "# HELP name text" and "# TYPE name type" once each per family,
both before its samples; samples "name{label="value",...} value" with no
timestamp; every sample of a family together; no series twice; label values
with only the escapes \\\\, \\" and \\n; counters named *_total; a newline at
the end.  Anything else is an error.
"""
import json
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r"[-+]?(?:[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? ({VALUE})$")
PAIR = re.compile(rf'({LABEL})="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def fail(n, why):
    print(f"line {n}: {why}", file=sys.stderr)
    sys.exit(1)


def labels_of(n, text):
    labels, pos = {}, 0
    while pos < len(text):
        m = PAIR.match(text, pos)
        if not m:
            fail(n, f"bad labels at {text[pos:]!r}")
        if m.group(1) in labels:
            fail(n, f"label {m.group(1)} twice")
        labels[m.group(1)] = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if m.group(3) == "," and pos == len(text):
            fail(n, "a trailing comma in the labels")
    return labels


def main():
    text = sys.stdin.read()
    if not text.endswith("\n"):
        fail(text.count("\n") + 1, "no newline at the end")
    families, done, current, series = {}, set(), None, set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        if line.startswith("#"):
            m = re.match(rf"^# (HELP|TYPE) ({NAME}) (.+)$", line)
            if not m:
                fail(n, f"a comment that is neither HELP nor TYPE: {line!r}")
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"help": None, "type": None, "samples": []})
            if fam["samples"] or name in done:
                fail(n, f"{kind} for {name} after its samples")
            key = kind.lower()
            if fam[key] is not None:
                fail(n, f"{kind} for {name} twice")
            if kind == "TYPE" and rest not in TYPES:
                fail(n, f"unknown type {rest}")
            if kind == "TYPE" and rest == "counter" and not name.endswith("_total"):
                fail(n, f"counter {name} not named *_total")
            fam[key] = rest
            continue
        if not line:
            fail(n, "an empty line")
        m = SAMPLE.match(line)
        if not m:
            fail(n, f"not a sample: {line!r}")
        name, labels, value = m.group(1), labels_of(n, m.group(2) or ""), m.group(3)
        fam = families.get(name)
        if fam is None or fam["type"] is None or fam["help"] is None:
            fail(n, f"sample of {name} without HELP and TYPE before it")
        if current != name:
            if name in done:
                fail(n, f"samples of {name} are not together")
            if current is not None:
                done.add(current)
            current = name
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            fail(n, f"series {key} twice")
        series.add(key)
        fam["samples"].append({"labels": labels, "value": float(value)})
    print(json.dumps(families))


main()
