"""Small file helpers: atomic JSON writes, so an interrupted run never leaves half a file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` atomically (temporary file in the same folder, then rename),
  with the permissions of any file the process creates (0666 less the umask)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    # mkstemp creates the file 0600 (private), which would keep colleagues out of a shared run.
    os.chmod(tmp, 0o666 & ~_umask())
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def write_json(path: str, obj: Any) -> str:
  """Writes `obj` as indented JSON, atomically."""
  return write_text(path, json.dumps(obj, indent=1, allow_nan=True) + '\n')


def read_json(path: str) -> Any:
  """Reads a JSON file; the error names the file."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e}).') from e


def files_under(root: str) -> list[str]:
  """The path of every file under `root`, recursively, in a fixed order (folders and names
  sorted; symlinked folders not followed, as `os.walk` does): what `files_digest` keys on."""
  paths = []
  for folder, subfolders, names in os.walk(root):
    subfolders.sort()
    paths += [os.path.join(folder, name) for name in sorted(names)]
  return paths


def files_digest(files, head: str = '') -> str | None:
  """A sha256 of `head` and, in order, each (name, path) of `files`: the name and the file's
  bytes, so that content, names and order all count (and not the modification times, which a
  copy can keep or a coarse clock can repeat). None when a file cannot be read: a key that
  matches nothing."""
  digest = hashlib.sha256(head.encode())
  for name, path in files:
    try:
      with open(path, 'rb') as f:
        content = f.read()
    except OSError:
      return None
    digest.update(f'\n{name} {len(content)}\n'.encode())
    digest.update(content)
  return digest.hexdigest()
