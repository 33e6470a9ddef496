#!/usr/bin/env bash
# Sets up and runs the whole test suite: a virtualenv in .venv, the project with its test
# extras, PostgreSQL on 127.0.0.1:5432 (started if it is installed but not running),
# then ruff, mypy --strict and pytest on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi

if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (Debian's; never a downloaded browser)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the e2e tests will be skipped"
fi

if ! command -v promtool >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing promtool (Debian's prometheus package), to check docs/prometheus-alerts.yml"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null) || echo "promtool could not be installed: its check of the alert rules is skipped"
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== node --test frontend/tests/"
if command -v node >/dev/null; then
  node --test frontend/tests/
else
  echo "node is missing: the frontend unit tests cannot run" >&2
  exit 1
fi
echo "== pytest"
# Most of the suite's time is servers starting and tasks waiting, so it runs as two pytest
# processes side by side: the tests that load the machine or time things (several server
# processes, SIGKILLs, a soak, the browser) one after another in one, the rest in the other,
# so that no two heavy tests run at once. With arguments, one process runs what they select.
HEAVY=(
  tests/e2e
  tests/test_soak.py
  tests/test_scale_out.py
  tests/test_workflows_processes.py
  tests/test_stall.py
  tests/test_races.py
  tests/test_recovery.py
  tests/test_durability.py
  tests/test_bench_smoke.py
  tests/test_retention.py
  tests/test_ws.py::test_reconnecting_with_the_last_seq_misses_nothing_and_sees_nothing_twice
)
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest "$@"
fi
LIGHT_ONLY=()
for path in "${HEAVY[@]}"; do
  case "$path" in
    *::*) LIGHT_ONLY+=(--deselect "$path") ;;
    *) LIGHT_ONLY+=(--ignore "$path") ;;
  esac
done
heavy_log=$(mktemp)
trap 'rm -f "$heavy_log"' EXIT
.venv/bin/pytest -p no:cacheprovider "${HEAVY[@]}" >"$heavy_log" 2>&1 &
heavy=$!
light_status=0
.venv/bin/pytest "${LIGHT_ONLY[@]}" || light_status=$?
heavy_status=0
wait "$heavy" || heavy_status=$?
echo "== pytest, the heavy tests (run beside the others)"
cat "$heavy_log"
echo "== pytest: the others exited $light_status, the heavy tests $heavy_status"
[ "$light_status" -eq 0 ] && [ "$heavy_status" -eq 0 ]
