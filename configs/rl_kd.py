"""RL-KD: a policy picks, per training instance, which of three teachers a small
student learns from (METHODS.md, method 2).

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/rl_kd.py --workdir runs/rl_kd [--config.KEY=VALUE ...]
  ... --config configs/rl_kd.py:quick   # tiny run of all four stages, ~1.5 min on 2 CPU cores

Teachers (each fine-tuned from the bundled all-MiniLM-L6-v2): all 6 layers for
3 epochs, its first 2 layers for 3 epochs, and all 6 layers for 0.1 epoch.
Student: 2 layers x 128. `distill.weighting` picks the variant ('policy' is
RL-KD; 'equal' and 'single' are the baselines with the same step budget).
experiments/rl_kd.py runs every variant over several seeds and tasks.
"""
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'rl_kd'              # this pipeline (kdjax/methods/rlkd.py)
  c.seed = 0                      # student and policy init, dropout, data order, actions
  c.compute_dtype = 'float32'     # 'bfloat16': bf16 activations/matmuls, float32 weights and losses
  c.eval_every = 200              # steps between dev evaluations
  c.checkpoint_every = 200        # steps between checkpoints (and one per stage end)
  c.keep_checkpoints = 2          # checkpoints kept per stage
  c.log_every = 10                # steps between metrics.jsonl / TensorBoard points
  c.eval_batch_size = 64          # batch for evaluation and teacher outputs

  c.data = ml_collections.ConfigDict()
  c.data.source = 'glue_dir'      # 'glue_dir' | 'hub' | 'bbc' | 'disk' | 'file' (as in kdjax/defaults.py)
  c.data.task = 'sst2'            # the task
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
  c.data.max_length = 64          # tokens per example (static shape)
  c.data.max_train_examples = 2000  # training subsample before the held-out split (0 = all)
  c.data.max_eval_examples = 0    # evaluation subsample (0 = all)
  c.data.split_seed = 0           # seed of subsamples and splits
  c.data.dev_fraction = 0.1       # sources without a dev split: share carved from train
  c.data.test_fraction = 0.1      # sources without a test split

  c.teacher = ml_collections.ConfigDict()
  c.teacher.checkpoint = ''       # HF BERT directory; '' = bundled all-MiniLM-L6-v2
  c.teacher.store_dir = ''        # where teachers and their outputs live; '' = WORKDIR/teachers
  c.teacher.names = ('minilm_l6', 'minilm_l2', 'minilm_l6_brief')  # one per teacher
  c.teacher.layers = (0, 2, 0)    # layers kept from the checkpoint (0 = all)
  c.teacher.epochs = (3.0, 3.0, 0.1)  # fine-tuning epochs per teacher (0 = none)
  c.teacher.seed = 0              # teacher k: seed + 100 k
  c.teacher.batch_size = 32       # global batch
  c.teacher.learning_rate = 1e-4  # AdamW peak learning rate
  c.teacher.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.teacher.weight_decay = 0.01   # AdamW decoupled weight decay

  c.student = ml_collections.ConfigDict()
  c.student.num_layers = 2        # transformer layers
  c.student.hidden_size = 128     # width (the teacher's vocabulary is kept)
  c.student.num_heads = 2         # attention heads
  c.student.intermediate_size = 512  # feed-forward width
  c.student.init = 'teacher_embeddings'  # 'random' | 'teacher_embeddings' | 'teacher_layers'
  c.student.teacher_layers = ()   # init=teacher_layers: teacher layer per student layer

  c.distill = ml_collections.ConfigDict()
  c.distill.weighting = 'policy'  # 'policy' (RL-KD) | 'equal' | 'single'
  c.distill.single_teacher = 0    # weighting=single: index into teacher.names
  c.distill.alpha = 0.5           # weight of the gold loss; 1 - alpha weighs the teachers
  c.distill.temperature = 2.0     # KD softmax temperature
  c.distill.epochs = 4.0          # student epochs (the step budget of every variant)
  c.distill.batch_size = 32       # global batch
  c.distill.learning_rate = 5e-4  # AdamW peak learning rate
  c.distill.warmup_fraction = 0.1  # share of student steps with linear LR warm-up
  c.distill.weight_decay = 0.01   # AdamW decoupled weight decay
  c.distill.heldout_fraction = 0.1  # training rows held out (R3 rewards); same for all variants

  c.rl = ml_collections.ConfigDict()
  c.rl.selection = 'hard'         # 'hard': sampled actions; 'soft': normalised π as weights
  c.rl.reward = 'R1'              # 'R1' -gold CE | 'R2' R1 - weighted KD | 'R3' held-out acc gain
  c.rl.extra_features = ()        # any of student_probs, student_loss, teacher_student_kl, teacher_id
  c.rl.hidden_sizes = ()          # () = linear policy (the paper); e.g. (32,) for an MLP
  c.rl.learning_rate = 1e-2       # policy Adam learning rate
  c.rl.baseline_decay = 0.9       # moving-average reward baseline
  c.rl.warmup_fraction = 0.3      # share of student steps in stage 2 (equal-weight warm-up)
  c.rl.pretrain_steps = 100       # stage 3: policy steps with the student frozen
  c.rl.heldout_batch_size = 64    # R3: held-out instances per episode

  if arg == 'quick':
    c.data.task = 'rte'
    c.data.max_length = 32
    c.data.max_train_examples = 160
    c.data.max_eval_examples = 64
    c.teacher.epochs = (1.0, 1.0, 0.2)
    c.teacher.batch_size = 16
    c.distill.epochs = 2.0
    c.distill.batch_size = 16
    c.rl.pretrain_steps = 4
    c.rl.heldout_batch_size = 16
    c.eval_every = c.checkpoint_every = 4
    c.log_every = 1
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':quick' or nothing")
  return c
