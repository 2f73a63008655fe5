"""MT-DNN-KD on GLUE: per-task ensembles of fine-tuned all-MiniLM-L6-v2 -> one
multi-task student of the same architecture, initialised from the same
pre-trained encoder (shared encoder, one head per task), as the paper distils
an MT-DNN ensemble into one MT-DNN.

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/glue_mtdnn_kd.py --workdir runs/mtdnn
  ... --config configs/glue_mtdnn_kd.py:quick   # 3 tiny tasks, ~2.5 minutes on 2 CPU cores
  ... --config configs/glue_mtdnn_kd.py:small   # a 4 x 256 student (embeddings from the teacher)

experiments/mtdnn_kd.py runs the whole comparison (teachers, ensemble, student
with and without KD over several seeds). CPU-sized by default: each task's
training set is subsampled to `data.max_train_examples`.
"""
import os

import ml_collections

from kdjax import config_sections as sections
from kdjax.data.batching import DEFAULT_BUCKETS


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'mtdnn_kd'           # this pipeline (kdjax/methods/mtdnn_kd/)
  sections.run_keys(c, eval_every=400, checkpoint_every=200, log_every=20)

  c.data = ml_collections.ConfigDict()
  c.data.source = 'glue_dir'      # 'glue_dir' (original TSV layout) | 'hub'
  c.data.glue_dir = os.environ.get('KDJAX_GLUE_DIR', '')  # GLUE root
  c.data.tasks = ('cola', 'sst2', 'mrpc', 'stsb', 'qnli', 'rte', 'wnli')  # tasks, head order
  c.data.max_length = 64          # tokens per example at most (longer ones are truncated)
  c.data.buckets = DEFAULT_BUCKETS  # batch lengths; () = all at max_length
  c.data.max_train_examples = 2500  # per-task training subsample (0 = all; 2500 keeps all of RTE)
  # Fine-tuned on CoLA, MiniLM answers the majority class for its first ~8,000
  # examples, which 2,500 rows x 2 epochs never get past (`python -m kdjax.main
  # --config configs/glue_distill.py --config.data.task=cola
  # --config.data.max_train_examples=0`: teacher dev MCC 0 at steps 100-500 of
  # batch 16, 0.18 at 600, 0.21 at 700).
  c.data.full_train_tasks = ('cola',)  # tasks trained on all their rows, whatever max_train_examples
  c.data.max_eval_examples = 0    # per-task dev subsample (0 = all)
  c.data.split_seed = 0           # seed of subsamples and dev-only splits
  c.data.dev_only_train_fraction = 0.5  # tasks with only a dev file: share used to train

  c.teacher = sections.teacher_section(epochs=2.0, batch_size=16)
  c.teacher.tasks = ()            # tasks that get an ensemble; () = all
  c.teacher.member_dropouts = (0.1, 0.05, 0.15)  # one member per rate; member k seeded seed + 100 k

  # The teachers' architecture, every layer copied from the pre-trained encoder.
  c.student = sections.student_section(num_layers=6, hidden_size=384, num_heads=12,
                                       intermediate_size=1536)
  c.student.init = 'teacher_layers'
  # distill.alpha = 1: the same student on gold labels only (no teachers trained).
  c.distill = sections.distill_section(alpha=0.5, temperature=1.0, epochs=2.0, batch_size=32,
                                       learning_rate=1e-4)

  if arg == 'small':
    # A student 1/6 of the teacher's encoder size, fit for a CPU: it learns far less
    # from a few thousand examples per task than the pre-trained one.
    c.student = sections.student_section(num_layers=4, hidden_size=256, num_heads=4,
                                         intermediate_size=1024)
    c.distill.epochs, c.distill.learning_rate = 3.0, 3e-4

  if arg == 'quick':
    c.data.tasks = ('rte', 'stsb', 'qnli')
    c.data.max_length = 32
    c.data.max_train_examples = 64
    c.data.max_eval_examples = 64
    c.teacher.epochs = 1.0
    c.distill.epochs = 1.0
    c.eval_every = c.checkpoint_every = 4
    c.log_every = 1
  elif arg not in (None, '', 'small'):
    raise ValueError(f"unknown config argument {arg!r}; use ':quick', ':small' or nothing")
  return c
