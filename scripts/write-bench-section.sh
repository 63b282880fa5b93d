#!/usr/bin/env bash
# Replaces one section of BENCHMARKS.md (between <!-- NAME:begin --> and <!-- NAME:end -->) with
# the contents of FILE, adding the section at the end when it is not there yet, so that each
# benchmark script refreshes its own figures and leaves the others' alone.
# Usage: scripts/write-bench-section.sh NAME FILE
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
file=$2
python3 - "$name" "$file" <<'PY'
import pathlib, sys
name, path = sys.argv[1], sys.argv[2]
target = pathlib.Path("BENCHMARKS.md")
header = "# Benchmarks\n\nEach section below is written by the script it names, from one run on this machine.\n"
text = target.read_text() if target.exists() else header
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{pathlib.Path(path).read_text().rstrip()}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip() + "\n\n" + block + "\n"
target.write_text(text)
PY
