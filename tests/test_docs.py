"""Docs that cannot rot: the README's and docs/'s Python blocks run, and their commands parse.

- Every fenced ```python block of README.md and docs/*.md runs as written, in a fresh namespace,
  from a folder where `runs/cae` is a copy of the session's tiny CAE run (`tiny_run`): the docs
  name a finished run `runs/cae`, as a user's would be after the README's commands. A block that
  cannot run here (it needs torch, a download) is preceded by the line
  `<!-- docs-test: skip (the reason) -->`.
- Every command line naming `python -m experiments.X` (in a fenced block, or in an inline code
  span, which may wrap across lines) is parsed by that entry point's own absl flags, in a
  subprocess: the module imports, each --flag is defined, the config file exists and accepts its
  `:variant`, and each `--config.a.b=...` field exists in that config and takes the value. A
  span that is a fragment of a cross_validate command (it starts with `--config=` or
  `--config.`) is parsed as one. Placeholders: `MODEL` in a config path stands for every config
  file of its folder; `$VAR` for 0; `...` for elided flags (a required flag may then be missing).
- Every relative link between the pages names a file that exists, and a heading that exists.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shlex
import shutil
import sys

import pytest

from tests.helpers import REPO, last_json, python

PAGES = ['README.md', *sorted(os.path.relpath(p, REPO) for p in glob.glob(str(REPO / 'docs/*.md')))]
SKIP = re.compile(r'<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->')
FENCE = re.compile(r'^(?P<indent> *)```(?P<lang>[\w-]*)\s*$')
ELIDED = '...'


@dataclasses.dataclass
class Block:
  """A fenced block: its page, first line (1-based), language, text and skip reason."""

  page: str
  line: int
  lang: str
  text: str
  skip: str | None = None


def blocks(page: str) -> list[Block]:
  """The fenced blocks of a page, their indentation removed."""
  lines = (REPO / page).read_text().split('\n')
  out, i = [], 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    indent, body, start = len(m.group('indent')), [], i
    i += 1
    while i < len(lines) and lines[i].strip() != '```':
      body.append(lines[i][indent:])
      i += 1
    previous = next((t for t in reversed(lines[:start]) if t.strip()), '')
    skip = SKIP.search(previous)
    out.append(
      Block(page, start + 1, m.group('lang'), '\n'.join(body), skip and skip['reason'].strip())
    )
    i += 1
  return out


def prose(page: str) -> str:
  """A page's text outside fenced blocks."""
  lines, out, inside = (REPO / page).read_text().split('\n'), [], False
  for line in lines:
    if FENCE.match(line) or (inside and line.strip() == '```'):
      inside = not inside
      continue
    if not inside:
      out.append(line)
  return '\n'.join(out)


def python_blocks() -> list[Block]:
  """Every ```python block of the README and docs/."""
  return [b for page in PAGES for b in blocks(page) if b.lang == 'python']


# -- commands ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Command:
  """An entry point's command line as the docs give it.

  Attributes:
    where: 'page: text' for messages.
    module: 'experiments.X'.
    args: its arguments, placeholders substituted.
    elided: the docs elide flags here ('...', or a fragment): a required flag may be missing.
    any_config: a fragment without --config=: it must parse with one of the config files.
  """

  where: str
  module: str
  args: list[str]
  elided: bool = False
  any_config: bool = False


def shell_lines(text: str) -> list[str]:
  """A shell block's lines, backslash continuations joined."""
  return re.sub(r'\\\n', ' ', text).split('\n')


def command_of(text: str, where: str) -> Command | None:
  """The `python -m experiments.X ...` in one shell line or code span, else None."""
  try:
    tokens = shlex.split(text, comments=True)
  except ValueError:
    tokens = text.split()
  for k in range(len(tokens) - 1):
    if tokens[k] == '-m' and tokens[k + 1].startswith('experiments.'):
      args = []
      for token in tokens[k + 2 :]:
        if token in ('&', '&&', ';', '|', '||') or token.startswith(('>', '2>')):
          break
        args.append(token)
      return Command(where, tokens[k + 1], args)
  return None


def fragment_of(text: str, where: str) -> Command | None:
  """A cross_validate fragment (a code span starting with --config= or --config.), else None."""
  if not re.match(r'--config[=.]', text):
    return None
  args = shlex.split(text)
  named = any(a.startswith('--config=') for a in args)
  return Command(where, 'experiments.cross_validate', args, elided=True, any_config=not named)


def substituted(command: Command) -> list[Command]:
  """`command` with its placeholders replaced: `$VAR` by 0, `...` dropped (elided), and one
  command per config file where the config path names `MODEL`."""
  args = [re.sub(r'\$\w+', '0', a) for a in command.args if a != ELIDED]
  elided = command.elided or ELIDED in command.args
  out = [dataclasses.replace(command, args=args, elided=elided)]
  for k, arg in enumerate(args):
    m = re.match(r'--config=(configs/\w+)/MODEL\.py(:.*)?$', arg)
    if m:
      files = sorted(glob.glob(str(REPO / m.group(1) / '*.py')))
      names = [os.path.basename(f) for f in files if not f.endswith(('common.py', '__init__.py'))]
      out = [
        dataclasses.replace(
          command,
          args=[*args[:k], f'--config={m.group(1)}/{name}{m.group(2) or ""}', *args[k + 1 :]],
          elided=elided,
        )
        for name in names
      ]
  return out


def commands() -> list[Command]:
  """Every experiments.* command line of the README and docs/, placeholders substituted."""
  found = []
  for page in PAGES:
    for block in blocks(page):
      if block.lang in ('', 'bash', 'sh', 'shell', 'console'):
        for line in shell_lines(block.text):
          command = command_of(line, f'{page}:{block.line}: {line.strip()}')
          if command:
            found.append(command)
    for span in re.findall(r'`([^`]+)`', prose(page)):
      span = ' '.join(span.split())
      command = command_of(span, f'{page}: `{span}`') or fragment_of(span, f'{page}: `{span}`')
      if command:
        found.append(command)
  return [c for command in found for c in substituted(command)]


# The configs a fragment without --config= is tried with: each config file, plain and :cpu.
def _config_candidates() -> list[str]:
  files = sorted(glob.glob(str(REPO / 'configs/*/*.py')))
  names = [os.path.relpath(f, REPO) for f in files if not f.endswith(('common.py', '__init__.py'))]
  return [f'{n}{v}' for n in names for v in ('', ':cpu', ':quick')]


def parse_in_this_process(commands: list[dict]) -> list[str]:
  """Parses each command with its entry point's absl flags (run in a fresh process: absl's
  flags are global). Returns one message per command that does not parse."""
  import importlib

  from absl import flags

  FLAGS = flags.FLAGS
  errors = []

  def parse(module, args) -> str | None:
    argv = [module, *args]
    sys.argv = argv  # ml_collections reads --config.* overrides from sys.argv
    try:
      FLAGS(argv)
      for name in FLAGS:
        value = FLAGS[name].value
        if type(value).__name__ == '_ErrorConfig':  # ml_collections defers a config file's error
          value.to_dict()  # raises it
    except Exception as e:  # any failure to parse is the docs'
      return f'{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}'
    finally:
      FLAGS.unparse_flags()
      for name in [n for n in FLAGS if n.startswith('config.')]:
        delattr(FLAGS, name)  # the override flags of this config
    return None

  for module in sorted({c['module'] for c in commands}):
    mine = [c for c in commands if c['module'] == module]
    before = set(FLAGS)
    # Imported afresh: an entry point that imports another (fundus) defines that one's flags.
    for name in [m for m in sys.modules if m.split('.')[0] == 'experiments']:
      del sys.modules[name]
    try:
      importlib.import_module(module)
    except ImportError as e:
      errors += [f'{c["where"]}\n    no entry point {module}: {e}' for c in mine]
      continue
    for c in mine:
      tries = [c['args']]
      if c['any_config']:
        tries = [[f'--config={config}', *c['args']] for config in _config_candidates()]
      problems = []
      for args in tries:
        problem = parse(module, args)
        if problem and c['elided'] and 'must have a value other than None' in problem:
          problem = None  # a required flag the docs elided
        problems.append(problem)
        if problem is None:
          break
      if all(problems):
        errors.append(f'{c["where"]}\n    {module} {" ".join(c["args"])}\n    {problems[0]}')
    for name in set(FLAGS) - before:
      delattr(FLAGS, name)  # the next entry point defines its own
  return errors


def parse_commands(found: list[Command]) -> list[str]:
  """`parse_in_this_process` in a subprocess; its messages."""
  commands = json.dumps([dataclasses.asdict(c) for c in found])
  return last_json(python('-m', 'tests.test_docs', input=commands))


# -- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def docs_cwd(tiny_run, tmp_path_factory):
  """A folder whose runs/cae is a copy of the tiny CAE run (the snippets may write beside it)."""
  folder = tmp_path_factory.mktemp('docs')
  shutil.copytree(tiny_run, folder / 'runs' / 'cae')
  return folder


@pytest.mark.parametrize('block', python_blocks(), ids=lambda b: f'{b.page}:{b.line}')
def test_python_block_runs(block, docs_cwd, monkeypatch):
  if block.skip:
    pytest.skip(f'{block.page}:{block.line}: {block.skip}')
  monkeypatch.chdir(docs_cwd)
  # Compiled as the page's own lines: a traceback names the page and the line that failed.
  code = compile('\n' * block.line + block.text, str(REPO / block.page), 'exec')
  exec(code, {'__name__': '__docs__'})


def test_docs_have_python_blocks_and_commands():
  """The scan finds what the docs hold (a scanner that finds nothing would pass everything)."""
  found = python_blocks()
  assert any(b.page == 'README.md' and not b.skip for b in found)
  assert all(b.skip for b in found if b.skip is not None), 'a skip marker needs its reason'
  modules = {c.module for c in commands()}
  assert {'experiments.cross_validate', 'experiments.predict', 'experiments.fundus'} <= modules


def slug(heading: str) -> str:
  """A heading's anchor as GitHub writes it: lower case, punctuation dropped, spaces as '-'."""
  text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
  return text.replace(' ', '-')


def test_every_link_between_pages_resolves():
  """Relative links of the README and docs/ name files that exist, and headings that exist."""
  broken = []
  for page in PAGES:
    for target in re.findall(r'\]\(([^)\s]+)\)', prose(page)):
      if re.match(r'[a-z]+:', target):
        continue  # an absolute URL
      path, _, anchor = target.partition('#')
      file = (REPO / page).parent / path if path else REPO / page
      if not file.exists():
        broken.append(f'{page}: ({target}): no file {file}')
      elif anchor and file.suffix == '.md':
        headings = re.findall(r'^#+ (.+)$', prose(os.path.relpath(file, REPO)), re.M)
        if anchor not in {slug(h) for h in headings}:
          broken.append(f'{page}: ({target}): no heading #{anchor} in {path or page}')
  assert not broken, '\n'.join(broken)


def test_every_command_parses():
  found = commands()
  errors = parse_commands(found)
  assert not errors, f'{len(errors)} of {len(found)} commands do not parse:\n' + '\n'.join(errors)


def test_a_broken_command_is_reported():
  """The check fails where the docs are wrong: each of these breaks one thing."""
  good = '--config=configs/headct/cae.py:cpu --workdir=RUN'
  bad = [
    f'python -m experiments.no_such_entry_point {good}',
    f'python -m experiments.cross_validate {good} --no_such_flag=1',
    'python -m experiments.cross_validate --config=configs/headct/no_such.py --workdir=RUN',
    'python -m experiments.cross_validate --config=configs/headct/cae.py:no_such --workdir=RUN',
    f'python -m experiments.cross_validate {good} --config.train.no_such_field=1',
    f'python -m experiments.cross_validate {good} --config.train.epochs=many',
    'python -m experiments.cross_validate --config=configs/headct/cae.py',  # no --workdir
  ]
  found = [command_of(line, line) for line in bad]
  found.append(fragment_of('--config.no_such.field=1', '--config.no_such.field=1'))
  ok = command_of(f'python -m experiments.cross_validate {good}', 'the good command')
  errors = parse_commands([*found, ok])
  assert len(errors) == len(found), '\n'.join(errors)
  assert not any(e.startswith('the good command') for e in errors)


if __name__ == '__main__':
  print(json.dumps(parse_in_this_process(json.load(sys.stdin))))
