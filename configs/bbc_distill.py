"""BBC News: all-MiniLM-L6-v2 -> 4 x 256 student (the embedded default).

  python -m kdjax.main --config configs/bbc_distill.py --workdir runs/bbc
  python -m kdjax.main --config configs/bbc_distill.py:quick   # < 1 minute

15 minutes on 2 CPU cores (shared); test accuracy teacher 0.986, student 0.967
(experiments/results/default_bbc.md).
"""
from kdjax.defaults import get_config  # noqa: F401  (the same experiment)
