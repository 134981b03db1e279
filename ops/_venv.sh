# Sourced by ops/* scripts: make sure ./.venv exists and has this checkout installed.
# Re-installs when pyproject.toml changed since the last install (a stamp file tracks it).
set -euo pipefail
PY=${TGFLEET_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "tgfleet needs Python 3.11 (set TGFLEET_PYTHON to its path)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PY ..." >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.tgfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing tgfleet and its dependencies into .venv ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  touch "$stamp"
fi
