"""The pure pieces import with jax, flax and optax alone: none of them pulls in
the training loop, checkpointing, progress bars, signal handling or transformers,
so they can be used in other JAX code as they are."""
import json
import subprocess
import sys

import pytest

PURE = ('kdjax.losses', 'kdjax.steps', 'kdjax.methods.kd.pieces',
        'kdjax.methods.mtdnn_kd.pieces', 'kdjax.methods.rl_kd.pieces',
        'kdjax.methods.mixed_vocab.pieces')
# What the loop and the pipelines bring; a pure module must not load any of it.
# (kdjax.data.batching, a pure numpy sampler, is allowed.)
HEAVY = ('orbax', 'tqdm', 'transformers', 'tokenizers', 'datasets', 'tensorboardX',
         'matplotlib', 'kdjax.loop', 'kdjax.checkpoint', 'kdjax.interrupt', 'kdjax.observe',
         'kdjax.scaffold', 'kdjax.teachers', 'kdjax.data.sources', 'kdjax.data.vocab')


def loaded_after_import(module: str) -> list[str]:
  code = (f'import sys, json; import {module}; '
          'print(json.dumps(sorted(sys.modules)))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('module', PURE)
def test_pure_pieces_load_nothing_of_the_loop(module):
  loaded = loaded_after_import(module)
  assert module in loaded
  offending = sorted(m for m in loaded if any(m == h or m.startswith(h + '.') for h in HEAVY))
  assert not offending, f'{module} loads {offending}'


def test_the_check_can_fail():
  """The same check on a pipeline module finds the loop it needs."""
  loaded = loaded_after_import('kdjax.methods.kd.pipeline')
  assert 'kdjax.loop' in loaded and any(m.startswith('orbax') for m in loaded)
