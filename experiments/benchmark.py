r"""Training throughput by mode and dtype, per-layer convolution timings, and the feature
families' extraction rate beside the CPU's matrix-multiply rate; prints tables and writes them
as JSON. Speed is shown here, never asserted in tests.

  python -m experiments.benchmark --out=runs/benchmark.json
  python -m experiments.benchmark --modes=fold_parallel --dtypes=bfloat16 --epochs=20
  python -m experiments.benchmark --modes= --nolayers --features=configs/headct/patchcore.py
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from tools import benchmark
from uadjax import io, runtime
from uadjax.families import DTYPES

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/headct/cae.py', 'Model config.')
_MODES = flags.DEFINE_list('modes', list(benchmark.MODES), 'Training modes to time.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes.')
_EPOCHS = flags.DEFINE_integer('epochs', 10, 'Measured epochs per mode (after compiling).')
_LAYERS = flags.DEFINE_bool('layers', True, 'Also time each convolution layer (plain vs fast).')
_FEATURES = flags.DEFINE_list(
  'features',
  ['configs/headct/feature_gaussian.py'],
  'Feature-family configs whose extraction (images/s, GFLOP/s) to time; empty for none.',
)
_OUT = flags.DEFINE_string('out', 'runs/benchmark.json', 'Where to write the JSON.')


def main(argv):
  del argv
  runtime.setup()
  result = {'environment': benchmark.environment(), 'modes': []}
  print(json.dumps(result['environment']))
  for dtype in _DTYPES.value:
    for mode in _MODES.value:
      row = benchmark.measure(_CONFIG.value, mode, dtype, _EPOCHS.value)
      result['modes'].append(row)
      print(json.dumps(row), flush=True)
  if result['modes']:
    print(benchmark.format_rows(result['modes']))
  if _LAYERS.value:
    from tools import profiling

    for dtype in _DTYPES.value:
      rows = profiling.layer_table(dtype=DTYPES[dtype])
      result.setdefault('layers', {})[dtype] = rows
      print(f'\nPer-layer timings, batch 30, {dtype}:')
      print(profiling.format_table(rows))
  if _FEATURES.value:
    result['matmul_gflop_per_s'] = round(benchmark.matmul_rate(), 1)
    print(f'\nfloat32 2048x2048 matrix multiply: {result["matmul_gflop_per_s"]} GFLOP/s')
    for path in _FEATURES.value:
      config = benchmark.load_config(path)
      for dtype in _DTYPES.value:
        row = benchmark.measure_features(config, dtype)
        result.setdefault('features', []).append(row)
        print(json.dumps(row), flush=True)
  io.write_json(_OUT.value, result)
  print(f'\nWritten to {os.path.abspath(_OUT.value)}')


if __name__ == '__main__':
  app.run(main)
