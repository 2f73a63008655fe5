"""The docs stay true to the code: each method's page lists every key of its
config, the layout page every module, and relative links resolve."""
import glob
import os
import re

import pytest

from tests.conftest import REPO, load_config
from tests.test_configs import flat_keys

PAGES = {'defaults': 'kd.md', 'glue_mtdnn_kd': 'mtdnn_kd.md', 'rl_kd': 'rl_kd.md',
         'mixed_vocab': 'mixed_vocab.md'}


def _config(name):
  if name == 'defaults':
    from kdjax.defaults import get_config
    return get_config()
  return load_config(name)


@pytest.mark.parametrize('name', sorted(PAGES))
def test_every_config_key_is_documented_on_its_page(name):
  text = open(os.path.join(REPO, 'docs', PAGES[name]), encoding='utf-8').read()
  missing = [k for k in flat_keys(_config(name)) if f'`{k}`' not in text]
  assert not missing, f'docs/{PAGES[name]} lacks {missing}'


def test_layout_lists_every_module():
  text = open(os.path.join(REPO, 'docs', 'layout.md'), encoding='utf-8').read()
  modules = sorted(os.path.relpath(p, REPO) for p in glob.glob(
      os.path.join(REPO, 'kdjax', '**', '*.py'), recursive=True))
  missing = [m for m in modules if os.path.basename(m) != '__init__.py'
             and os.path.relpath(m, 'kdjax') not in text and m not in text]
  assert not missing, f'docs/layout.md lacks {missing}'


def test_relative_links_resolve():
  broken = []
  for page in [os.path.join(REPO, 'README.md')] + glob.glob(os.path.join(REPO, 'docs', '*.md')):
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', open(page, encoding='utf-8').read()):
      if '://' in target:
        continue
      if not os.path.exists(os.path.join(os.path.dirname(page), target)):
        broken.append(f'{os.path.relpath(page, REPO)} -> {target}')
  assert not broken, broken
