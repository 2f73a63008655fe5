"""The embedded default experiment: distil all-MiniLM-L6-v2 on BBC News.
(`configs/bbc_distill.py` is the same experiment.)

  python -m kdjax.main                                  # this config
  python -m kdjax.main --config kdjax/defaults.py:quick # a smoke test

Fine-tunes the real all-MiniLM-L6-v2 (6 layers x 384, 22.7M params) on BBC
News topic classification (5 classes), caches its logits, distils them into a
4-layer x 256 student and prints teacher vs student accuracy, size and speed.
On 2 CPU cores: 9 to 10.5 minutes (experiments/results/default_bbc.md); `:quick` under 1 minute.
"""
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'kd'                 # 'kd' (single teacher) | 'mtdnn_kd' (configs/glue_mtdnn_kd.py)
  c.seed = 0                      # model init, dropout and data order
  c.compute_dtype = 'float32'     # 'bfloat16': bf16 activations/matmuls, float32 weights and losses
  c.eval_every = 100              # steps between dev evaluations
  c.checkpoint_every = 100        # steps between checkpoints (and one at the end)
  c.keep_checkpoints = 2          # checkpoints kept per phase
  c.log_every = 10                # steps between metrics.jsonl / TensorBoard points
  c.eval_batch_size = 64          # batch for evaluation, caching and speed tests
  c.speed_repeats = 8             # timed forward batches per model in the summary

  c.data = ml_collections.ConfigDict()
  c.data.source = 'bbc'           # 'bbc' | 'glue_dir' | 'hub' | 'disk' | 'file'
  c.data.task = 'bbc'             # bbc, cola, sst2, mrpc, stsb, rte, wnli, qnli (or a name for 'file')
  c.data.glue_dir = os.environ.get('KDJAX_GLUE_DIR', '')  # GLUE root in the original TSV layout
  c.data.train_file = ''          # source=file: .csv/.tsv/.json/.jsonl (named or numbered columns)
  c.data.dev_file = ''            # source=file: optional; else carved from train
  c.data.test_file = ''           # source=file: optional
  c.data.text_columns = ('text',)  # file/hub/disk: one column, or two for pairs ('0', '1': numbers)
  c.data.label_column = 'label'   # file/hub/disk: label (or score) column
  c.data.label_names = ()         # file/hub/disk: label order; default ClassLabel names or sorted values
  c.data.regression = False       # file/hub/disk: labels are scores
  c.data.header = 'auto'          # source=file CSV/TSV: 'yes' | 'no' (columns are '0', '1', ...) | 'auto'
  c.data.hub_name = ''            # source=hub: any `datasets` name ('' = the GLUE task data.task)
  c.data.hub_config = ''          # source=hub: the dataset's config name, if it has several
  c.data.hub_splits = ('train', 'validation', 'test')  # hub/disk: train, dev, test split names ('' or absent: none)
  c.data.disk_dir = ''            # source=disk: a directory written by datasets' save_to_disk
  c.data.max_length = 128         # tokens per example (padded/truncated; static shape)
  c.data.max_train_examples = 0   # subsample the training set (0 = all)
  c.data.max_eval_examples = 0    # subsample evaluation splits (0 = all)
  c.data.split_seed = 0           # seed of splits and subsamples
  c.data.dev_fraction = 0.1       # sources without a dev split: share carved from train
  c.data.test_fraction = 0.1      # sources without a test split

  c.teacher = ml_collections.ConfigDict()
  c.teacher.checkpoint = ''       # HF BERT directory; '' = bundled all-MiniLM-L6-v2
  c.teacher.epochs = 1.0          # fine-tuning epochs (0 = use the checkpoint as is)
  c.teacher.batch_size = 16       # global batch (a multiple of the device count)
  c.teacher.learning_rate = 1e-4  # AdamW peak learning rate
  c.teacher.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.teacher.weight_decay = 0.01   # AdamW decoupled weight decay

  c.student = ml_collections.ConfigDict()
  c.student.num_layers = 4        # transformer layers
  c.student.hidden_size = 256     # width (the teacher's vocabulary is kept)
  c.student.num_heads = 4         # attention heads (divide hidden_size)
  c.student.intermediate_size = 1024  # feed-forward width
  c.student.init = 'teacher_embeddings'  # 'random' | 'teacher_embeddings' | 'teacher_layers'
  c.student.teacher_layers = ()   # init=teacher_layers: teacher layer per student layer

  c.distill = ml_collections.ConfigDict()
  c.distill.alpha = 0.5           # weight of the gold-label loss (1 - alpha: soft loss)
  c.distill.temperature = 2.0     # softmax temperature of the soft loss
  c.distill.epochs = 6.0          # student epochs
  c.distill.batch_size = 32       # global batch
  c.distill.learning_rate = 3e-4  # AdamW peak learning rate
  c.distill.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.distill.weight_decay = 0.01   # AdamW decoupled weight decay

  if arg == 'quick':
    c.data.max_length = 64
    c.data.max_train_examples = 160
    c.data.max_eval_examples = 64
    c.teacher.epochs = 1.0
    c.distill.epochs = 2.0
    c.eval_every = c.checkpoint_every = 5
    c.log_every = 1
    c.speed_repeats = 2
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':quick' or nothing")
  return c
