"""A GLUE task from a local GLUE directory: all-MiniLM-L6-v2 -> 4 x 256 student.

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/glue_distill.py --workdir runs/rte --config.data.task=rte
  ... --config configs/glue_distill.py:quick                  # < 1 minute

Any of cola, sst2, mrpc, stsb (regression), rte, wnli. Reports on the dev split.
Large training sets (SST-2: 67k) are best subsampled on CPU with
--config.data.max_train_examples.
"""
import ml_collections

from kdjax.defaults import get_config as default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default_config(arg)
  c.data.source = 'glue_dir'
  c.data.task = 'rte'
  if arg != 'quick':
    c.data.max_train_examples = 8000  # CPU-sized; 0 = the whole training set
    c.teacher.epochs = 2.0
    c.distill.epochs = 4.0
  return c
