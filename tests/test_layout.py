"""The package's layout: imports only point down its floors, and no module imports itself back.

The floors, lowest first, are those of README's "Layout": a module may import its own floor
and those below it, never one above (a family never imports the protocol; the shared building
blocks never import a family). Every import counts, a function's too: none may dodge a cycle.
"""

from __future__ import annotations

import ast
import pathlib

from tests.helpers import REPO

# uadjax's top-level modules and packages, lowest floor first.
FLOORS = (
  ('io',),
  ('nn', 'evaluation'),
  ('run',),
  ('data',),
  ('train',),
  ('families',),
  ('config',),
  ('inference',),
  ('segment',),
  ('reports',),
  ('protocol', 'predict'),
  ('ensemble', 'rescore'),
  ('runtime',),
)
FLOOR = {room: k for k, rooms in enumerate(FLOORS) for room in rooms}


def _modules() -> dict[str, pathlib.Path]:
  root = REPO / 'uadjax'
  out = {}
  for path in sorted(root.rglob('*.py')):
    parts = path.relative_to(REPO).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    out[name] = path
  return out


def _imports(path: pathlib.Path, modules) -> set[str]:
  """The uadjax modules `path` imports (the longest known prefix of each imported name)."""

  def known(name):
    parts = name.split('.')
    for k in range(len(parts), 0, -1):
      if '.'.join(parts[:k]) in modules:
        return '.'.join(parts[:k])
    return None

  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f'{node.module}.{a.name}' for a in node.names]
    found |= {m for m in map(known, names) if m and m != 'uadjax'}
  return found


def _room(module: str) -> str:
  return module.split('.')[1]


def _graph():
  modules = _modules()
  return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_top_level_module_has_a_floor():
  rooms = {_room(m) for m in _graph() if m != 'uadjax'}
  assert rooms == set(FLOOR), rooms ^ set(FLOOR)


def test_no_import_runs_up_a_floor():
  up = [
    f'{m} -> {d}'
    for m, deps in _graph().items()
    if m != 'uadjax'
    for d in deps
    if FLOOR[_room(d)] > FLOOR[_room(m)]
  ]
  assert not up, up


def test_no_module_imports_itself_back():
  graph = _graph()
  # Tarjan's strongly connected components: any with two or more modules is a cycle.
  index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for v in graph:
    if v not in index:
      visit(v)
  assert not cycles, cycles
