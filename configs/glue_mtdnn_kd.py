"""MT-DNN-KD on GLUE: per-task ensembles of fine-tuned all-MiniLM-L6-v2 -> one
multi-task 4 x 256 student (METHODS.md, method 1).

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/glue_mtdnn_kd.py --workdir runs/mtdnn
  ... --config configs/glue_mtdnn_kd.py:quick   # 3 tiny tasks, ~2.5 minutes on 2 CPU cores

experiments/mtdnn_kd.py runs the whole comparison (teachers, ensemble, student
with and without KD over several seeds). CPU-sized by default: each task's
training set is subsampled to `data.max_train_examples`.
"""
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'mtdnn_kd'           # this pipeline (kdjax/methods/mtdnn.py)
  c.seed = 0                      # student init, dropout and task/data order
  c.compute_dtype = 'float32'     # 'bfloat16': bf16 activations/matmuls, float32 weights and losses
  c.eval_every = 400              # steps between dev evaluations (all tasks)
  c.checkpoint_every = 200        # steps between checkpoints (and one at the end)
  c.keep_checkpoints = 2          # checkpoints kept per phase
  c.log_every = 20                # steps between metrics.jsonl / TensorBoard points
  c.eval_batch_size = 64          # batch for evaluation and teacher outputs

  c.data = ml_collections.ConfigDict()
  c.data.source = 'glue_dir'      # 'glue_dir' (original TSV layout) | 'hub'
  c.data.glue_dir = os.environ.get('KDJAX_GLUE_DIR', '')  # GLUE root
  c.data.tasks = ('cola', 'sst2', 'mrpc', 'stsb', 'qnli', 'rte', 'wnli')  # tasks, head order
  c.data.max_length = 64          # tokens per example (static shape)
  c.data.max_train_examples = 600  # per-task training subsample (0 = all)
  c.data.max_eval_examples = 0    # per-task dev subsample (0 = all)
  c.data.split_seed = 0           # seed of subsamples and dev-only splits
  c.data.dev_only_train_fraction = 0.5  # tasks with only a dev file: share used to train

  c.teacher = ml_collections.ConfigDict()
  c.teacher.checkpoint = ''       # HF BERT directory; '' = bundled all-MiniLM-L6-v2
  c.teacher.seed = 0              # member k: seed + 100 k (independent of the student seed)
  c.teacher.tasks = ()            # tasks that get an ensemble; () = all
  c.teacher.dropouts = (0.1, 0.05, 0.15)  # one member per rate (each with its own seed)
  c.teacher.store_dir = ''        # where ensembles and soft targets live; '' = WORKDIR/teachers
  c.teacher.epochs = 2.0          # fine-tuning epochs per member
  c.teacher.batch_size = 16       # global batch
  c.teacher.learning_rate = 1e-4  # AdamW peak learning rate
  c.teacher.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.teacher.weight_decay = 0.01   # AdamW decoupled weight decay

  c.student = ml_collections.ConfigDict()
  c.student.num_layers = 4        # transformer layers of the shared encoder
  c.student.hidden_size = 256     # width (the teacher's vocabulary is kept)
  c.student.num_heads = 4         # attention heads
  c.student.intermediate_size = 1024  # feed-forward width
  c.student.init = 'teacher_embeddings'  # 'random' | 'teacher_embeddings' | 'teacher_layers'
  c.student.teacher_layers = ()   # init=teacher_layers: teacher layer per student layer

  c.distill = ml_collections.ConfigDict()
  c.distill.use_kd = True         # False: the same student on gold labels only
  c.distill.hard_weight = 0.5     # weight of the gold loss; 1 - it weighs the soft loss
  c.distill.temperature = 1.0     # student softmax temperature in the soft loss
  c.distill.epochs = 3.0          # passes over the union of task training sets
  c.distill.batch_size = 32       # global batch (one task per batch)
  c.distill.learning_rate = 3e-4  # AdamW peak learning rate
  c.distill.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.distill.weight_decay = 0.01   # AdamW decoupled weight decay

  if arg == 'quick':
    c.data.tasks = ('rte', 'stsb', 'qnli')
    c.data.max_length = 32
    c.data.max_train_examples = 64
    c.data.max_eval_examples = 64
    c.teacher.epochs = 1.0
    c.teacher.dropouts = (0.1, 0.05, 0.15)
    c.distill.epochs = 2.0
    c.eval_every = c.checkpoint_every = 4
    c.log_every = 1
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':quick' or nothing")
  return c
