"""Config sections shared by the methods' configs, declared once.

Each function returns (or fills) a section with every key a pipeline reads,
each with its one-line meaning; a config file sets its method's own keys and
values on top. The same concept has the same key everywhere: `distill.alpha`
is the gold-loss weight, `*.epochs` a float number of passes, `teacher.member_*`
the per-member tuples of a teacher set.
"""
from __future__ import annotations

import os

import ml_collections

from kdjax.data.batching import DEFAULT_BUCKETS


def run_keys(c: ml_collections.ConfigDict, *, eval_every: int, checkpoint_every: int,
             log_every: int) -> None:
  """Run-wide keys: seed, precision and the logging / eval / checkpoint cadence."""
  c.seed = 0                      # student init, dropout, data order (teachers: teacher.seed)
  c.compute_dtype = 'float32'     # 'bfloat16': bf16 activations/matmuls, float32 weights and losses
  c.eval_every = eval_every       # steps between dev evaluations
  c.checkpoint_every = checkpoint_every  # steps between checkpoints (and one per phase end)
  c.keep_checkpoints = 2          # checkpoints kept per phase
  c.log_every = log_every         # steps between metrics.jsonl / TensorBoard points
  c.eval_batch_size = 64          # batch for evaluation, teacher outputs and speed tests


def speed_keys(c: ml_collections.ConfigDict) -> None:
  """For methods whose summary measures inference speed."""
  c.speed_repeats = 8             # timed forward batches per model in the summary


def data_section(*, source: str, task: str, max_length: int,
                 max_train_examples: int = 0) -> ml_collections.ConfigDict:
  """One task's data: where it comes from, how it is cut and encoded."""
  d = ml_collections.ConfigDict()
  d.source = source               # 'bbc' | 'glue_dir' | 'hub' | 'disk' | 'file'
  d.task = task                   # bbc, cola, sst2, mrpc, stsb, rte, wnli, qnli (or a name for 'file')
  d.glue_dir = os.environ.get('KDJAX_GLUE_DIR', '')  # GLUE root in the original TSV layout
  d.train_file = ''               # source=file: .csv/.tsv/.json/.jsonl (named or numbered columns)
  d.dev_file = ''                 # source=file: optional; else carved from train
  d.test_file = ''                # source=file: optional
  d.text_columns = ('text',)      # file/hub/disk: one column, or two for pairs ('0', '1': numbers)
  d.label_column = 'label'        # file/hub/disk: label (or score) column
  d.label_names = ()              # file/hub/disk: label order; default ClassLabel names or sorted values
  d.regression = False            # file/hub/disk: labels are scores
  d.header = 'auto'               # source=file CSV/TSV: 'yes' | 'no' (columns are '0', '1', ...) | 'auto'
  d.hub_name = ''                 # source=hub: any `datasets` name ('' = the GLUE task data.task)
  d.hub_config = ''               # source=hub: the dataset's config name, if it has several
  d.hub_splits = ('train', 'validation', 'test')  # hub/disk: train, dev, test split names ('' or absent: none)
  d.disk_dir = ''                 # source=disk: a directory written by datasets' save_to_disk
  d.max_length = max_length       # tokens per example at most (longer ones are truncated)
  d.buckets = DEFAULT_BUCKETS      # batch lengths; () = all at max_length
  d.max_train_examples = max_train_examples  # subsample the training set (0 = all)
  d.max_eval_examples = 0         # subsample evaluation splits (0 = all)
  d.split_seed = 0                # seed of splits and subsamples
  d.dev_fraction = 0.1            # sources without a dev split: share carved from train
  d.test_fraction = 0.1           # sources without a test split
  return d


def optimiser_keys(s: ml_collections.ConfigDict, *, batch_size: int,
                   learning_rate: float) -> ml_collections.ConfigDict:
  """A phase's optimiser: AdamW with linear warm-up and decay; returns `s`."""
  s.batch_size = batch_size       # global batch (a multiple of the device count)
  s.learning_rate = learning_rate  # AdamW peak learning rate
  s.warmup_fraction = 0.1         # share of steps with linear warm-up
  s.weight_decay = 0.01           # AdamW decoupled weight decay
  return s


def teacher_section(*, batch_size: int, learning_rate: float = 1e-4,
                    epochs: float | None = None) -> ml_collections.ConfigDict:
  """The teacher checkpoint, where fine-tuned teachers are stored, their seed and
  optimiser; `epochs` (omitted by methods whose members set their own)."""
  t = ml_collections.ConfigDict()
  t.checkpoint = ''               # HF BERT directory; '' = bundled all-MiniLM-L6-v2
  t.store_dir = ''                # fine-tuned teachers and their outputs, shared by runs; '' = in the workdir
  t.seed = 0                      # teacher head init, dropout and data order
  if epochs is not None:
    t.epochs = epochs             # fine-tuning epochs (0 = use the checkpoint as is)
  t.keep_best = False             # end fine-tuning with the best dev evaluation's weights
  return optimiser_keys(t, batch_size=batch_size, learning_rate=learning_rate)


def student_section(*, num_layers: int, hidden_size: int, num_heads: int,
                    intermediate_size: int) -> ml_collections.ConfigDict:
  """A student that keeps the teacher's vocabulary, and how it is initialised."""
  s = ml_collections.ConfigDict()
  s.num_layers = num_layers       # transformer layers
  s.hidden_size = hidden_size     # width (the teacher's vocabulary is kept)
  s.num_heads = num_heads         # attention heads (divide hidden_size)
  s.intermediate_size = intermediate_size  # feed-forward width
  s.init = 'teacher_embeddings'   # 'random' | 'teacher_embeddings' | 'teacher_layers'
  s.teacher_layers = ()           # init=teacher_layers: teacher layer per student layer
  s.layer_choice = 'evenly_spaced'  # init=teacher_layers, teacher_layers=(): 'evenly_spaced' | 'first'
  return s


def distill_section(*, alpha: float, temperature: float, epochs: float, batch_size: int,
                    learning_rate: float) -> ml_collections.ConfigDict:
  """The student's loss weights and optimiser."""
  d = ml_collections.ConfigDict()
  d.alpha = alpha                 # weight of the gold-label loss (1 - alpha: the teachers')
  d.temperature = temperature     # softmax temperature of the soft loss
  d.epochs = epochs               # student epochs
  d.keep_best = True              # end with the best dev evaluation's weights (not the last step's)
  return optimiser_keys(d, batch_size=batch_size, learning_rate=learning_rate)


def transfer_set_keys(d: ml_collections.ConfigDict) -> None:
  """A distill section's transfer set (kdjax/data/augment.py): perturbed copies
  of the training examples that the teacher labels, trained on with them."""
  d.augment_copies = 0            # perturbed copies per training example (labelled by the teacher); 0 = off
  d.augment_mask_prob = 0.1       # chance that a word of a copy becomes the mask token
  d.augment_replace_prob = 0.1    # chance that a word becomes a word drawn from the training texts
  d.augment_repair_prob = 0.25    # pair tasks: chance that a copy's second text is another example's


def plain_kd_keys(c: ml_collections.ConfigDict) -> None:
  """Plain KD's own keys (method 'kd'): several teachers, layer-wise losses to
  the first teacher and a transfer set (all off by default)."""
  c.teacher.checkpoints = ()      # several teachers: HF directories ('' = bundled); () = teacher.checkpoint alone
  c.distill.teacher_weights = ()  # several teachers: fixed weights of their soft losses (normalised); () = equal
  c.distill.hidden_weight = 0.0   # weight of the hidden-state MSE to the first teacher (embeddings + mapped layers); 0 = off
  c.distill.attention_weight = 0.0  # weight of the attention-distribution KL on mapped layers; 0 = off
  c.distill.layer_map = ()        # teacher layer (0-based) per student layer; () = evenly spaced, ending with the last
  transfer_set_keys(c.distill)
