#!/usr/bin/env bash
# The device suite on the GPU machine: installs the carried wheels (.whl/, from
# tools/prepare_device.sh), puts them and the repository on PYTHONPATH, and runs
# tools/device_suite.py, writing to $OUT. Arguments go to device_suite.py:
#
#   bash tools/device_suite.sh                  # the full suite, about 9 minutes
#   bash tools/device_suite.sh --skip=torch     # any of its flags (--help lists them)
#
# Through the device tool: run(command='bash tools/device_suite.sh', carry=['.whl', '.device'],
# timeout_s=600).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
if compgen -G '.whl/*.whl' > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo 'no wheels in .whl/ (run bash tools/prepare_device.sh before the device call)' >&2
fi
export PYTHONPATH="$PWD:$PYTHONPATH"
export PYTHONUNBUFFERED=1
exec "$PY" tools/device_suite.py --out="${OUT:-runs/device_suite}" "$@"
