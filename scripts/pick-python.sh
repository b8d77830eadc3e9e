#!/usr/bin/env bash
# Print the interpreter `make install` builds .venv from: Debian's /usr/bin/python3
# when it is 3.11 or newer, else the first python3 on PATH.
#
# Why: Debian builds CPython with PGO and LTO; a source build (pyenv's default) has
# neither. Measured here: the mesh spent ~30% less user CPU per proxied HTTP request
# on Debian's 3.11.2 than on pyenv's 3.11.7 (docs/benchmarks.md, README).
set -euo pipefail
ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
for cand in /usr/bin/python3 python3; do
    if ok "$cand"; then
        echo "$cand"
        exit 0
    fi
done
echo "pick-python: no Python 3.11 or newer found" >&2
echo python3
