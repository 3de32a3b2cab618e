#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what tools/device_suite.sh needs on the GPU machine, which has
# no network: wheels of the packages uadjax needs beyond what is installed there (.whl/), and the
# real head CT and the PyTorch peer (.device/). Both folders are git-ignored; the device tool
# carries them when its call names them: carry [".whl", ".device"]. Prints the sizes: the working
# tree and the carried folders together must stay under the tool's 64 MiB.
#
#   bash tools/prepare_device.sh            # SHARED=../shared by default
#   COMPACT=1 bash tools/prepare_device.sh  # head CT as 8-bit gray PNGs (15 MB instead of 25 MB)
#
# COMPACT gives identical preprocessed images (uadjax converts every image to 8-bit gray first;
# checked below), but other bytes: the run's data fingerprint no longer matches the study's set,
# so its summary omits the study's rows. The default copies the files as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# The GPU machine (Python 3.12, x86-64) has jax with CUDA, flax, optax, orbax-checkpoint, absl-py,
# chex, numpy, scipy, scikit-learn, pillow, matplotlib, PyYAML, typing-extensions,
# opencv-python-headless and torch. Missing there: ml-collections and pydicom (uadjax's own
# needs), and albumentations with its needs (the host-loop mode only). pydantic 2.11 needs
# typing-extensions >= 4.12.2 (2.12 and later want 4.14+), safer against an older one there.
WHEELS=(
  ml-collections==1.1.0
  pydicom==3.0.2
  albumentations==2.0.8
  albucore==0.0.24
  pydantic==2.11.7
  pydantic-core==2.33.2
  annotated-types==0.7.0
  typing-inspection==0.4.1
  simsimd==6.5.16
  stringzilla==3.12.6
)
rm -rf .whl
mkdir -p .whl
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)

# The head CT and the PyTorch peer.
rm -rf .device
mkdir -p .device
[ -f "$SHARED/data/head_ct/labels.csv" ] || { echo "no head CT at $SHARED/data/head_ct" >&2; exit 1; }
if [ "${COMPACT:-0}" = 1 ]; then
  "$PY" - "$SHARED/data/head_ct" .device/head_ct <<'EOF'
import os, shutil, sys

from PIL import Image

src, dst = sys.argv[1:]
os.makedirs(dst)
for name in sorted(os.listdir(src)):
  path = os.path.join(src, name)
  if not name.lower().endswith('.png'):
    shutil.copy(path, dst)
    continue
  with Image.open(path) as image:
    image.load()
    # As uadjax.data.preprocess.to_gray: alpha dropped, then ITU-R 601 luma in 8 bits.
    if image.mode in ('RGBA', 'LA', 'P', 'PA'):
      image = image.convert('RGB')
    image.convert('L').save(os.path.join(dst, name), optimize=True)
EOF
  "$PY" - "$SHARED/data/head_ct" .device/head_ct <<'EOF'
import sys

import ml_collections
import numpy as np

from configs.headct import cae
from uadjax import data

config = cae.get_config().data
loaded = []
for root in sys.argv[1:]:
  config.root = root
  loaded.append(data.load(config))
a, b = loaded
same = np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
print(f'compact head CT: preprocessed images and labels identical to the originals: {same}')
sys.exit(0 if same else 1)
EOF
else
  cp -r "$SHARED/data/head_ct" .device/head_ct
fi
cp "$SHARED/peer/torch_cae.py" .device/torch_cae.py

# Sizes: what one device call sends (the tracked files, untracked ones git does not ignore, and
# the carried folders).
bytes_of() { xargs -0 -r du -cb 2>/dev/null | awk 'END {print ($1 == "" ? 0 : $1)}'; }
tracked=$(git ls-files -z | bytes_of)
untracked=$(git ls-files -z -o --exclude-standard | bytes_of)
whl=$(du -sb .whl | cut -f1)
dev=$(du -sb .device | cut -f1)
total=$((tracked + untracked + whl + dev))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "wheels (.whl, $(ls .whl | wc -l) files): $(mib "$whl")"
echo "head CT and peer (.device): $(mib "$dev")"
echo "tracked files: $(mib "$tracked"); untracked, not ignored: $(mib "$untracked")"
echo "one device call sends $(mib "$total") of at most 64 MiB"
[ "$total" -lt $((56 * 1048576)) ] || { echo 'too close to the 64 MiB limit' >&2; exit 1; }
