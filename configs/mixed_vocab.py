"""Mixed-vocabulary distillation: all-MiniLM-L6-v2 -> a 4 x 128 student with its
own 5,000-token WordPiece vocabulary, under 7 MB (METHODS.md, method 3).

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/mixed_vocab.py --workdir runs/mixed [--config.data.task=mrpc ...]
  ... --config configs/mixed_vocab.py:quick   # all three stages, tiny, ~2 min on 2 CPU cores

Stage I trains the teacher to read text mixed from both vocabularies (dual MLM);
Stage II distils it into the student (MLM + hidden states through one shared
projection); Stage III fine-tunes the student on the task with KD from the
fine-tuned teacher. `--config.mixed.pretrain=False --config.distill.alpha=1`
is the same student without distillation. experiments/mixed_vocab.py compares them.
"""
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'mixed_vocab'        # this pipeline (kdjax/methods/mixed_kd.py)
  c.seed = 0                      # inits, dropout, data order, segmentation and masking
  c.compute_dtype = 'float32'     # 'bfloat16': bf16 activations/matmuls, float32 weights and losses
  c.eval_every = 200              # steps between dev evaluations (task stages)
  c.checkpoint_every = 200        # steps between checkpoints (and one per stage end)
  c.keep_checkpoints = 2          # checkpoints kept per stage
  c.log_every = 10                # steps between metrics.jsonl / TensorBoard points
  c.eval_batch_size = 64          # batch for evaluation, teacher outputs, speed tests
  c.speed_repeats = 8             # timed forward batches per model in the summary

  c.data = ml_collections.ConfigDict()
  c.data.source = 'glue_dir'      # 'glue_dir' | 'hub' | 'bbc' | 'disk' | 'file' (as in kdjax/defaults.py)
  c.data.task = 'sst2'            # the downstream task of Stage III
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
  c.data.max_length = 64          # tokens per sequence, both vocabularies (static shape)
  c.data.max_train_examples = 4000  # task training subsample (0 = all)
  c.data.max_eval_examples = 0    # evaluation subsample (0 = all)
  c.data.split_seed = 0           # seed of subsamples and splits
  c.data.dev_fraction = 0.1       # sources without a dev split: share carved from train
  c.data.test_fraction = 0.1      # sources without a test split

  c.teacher = ml_collections.ConfigDict()
  c.teacher.checkpoint = ''       # HF BERT directory; '' = bundled all-MiniLM-L6-v2
  c.teacher.store_dir = ''        # shared task-teacher dir (per task); '' = the workdir
  c.teacher.seed = 0              # teacher head init and data order
  c.teacher.epochs = 2.0          # task fine-tuning epochs of the teacher (its metric, KD targets)
  c.teacher.batch_size = 32       # global batch
  c.teacher.learning_rate = 1e-4  # AdamW peak learning rate
  c.teacher.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.teacher.weight_decay = 0.01   # AdamW decoupled weight decay

  c.student = ml_collections.ConfigDict()
  c.student.num_layers = 4        # transformer layers
  c.student.hidden_size = 128     # width d_S (= its embedding width)
  c.student.num_heads = 2         # attention heads
  c.student.intermediate_size = 512  # feed-forward width
  c.student.max_positions = 128   # position table (>= data.max_length)

  c.mixed = ml_collections.ConfigDict()
  c.mixed.pretrain = True         # Stages I and II (False: task training only, the baseline)
  c.mixed.vocab_size = 5000       # student WordPiece vocabulary
  c.mixed.vocab_dir = ''          # an existing student vocab.txt directory; '' = train one
  c.mixed.shared_dir = ''         # vocabulary + Stages I-II shared by runs; '' = workdir
  c.mixed.pretrain_seed = 0       # seed of Stages I-II (shared by runs with other seeds)
  c.mixed.corpus = 'glue'         # 'task' | 'bbc' | 'glue' (all GLUE train sentences) | 'files'
  c.mixed.corpus_files = ()       # corpus=files: text files, one passage per line
  c.mixed.max_corpus_texts = 20000  # corpus subsample (0 = all)
  c.mixed.embedding_init = 'teacher'  # 'teacher': student tables from the teacher's | 'random'
  c.mixed.mask_prob = 0.15        # MLM: share of word pieces chosen
  c.mixed.max_predictions = 12    # MLM: most chosen positions per sequence (static)

  c.stage1 = ml_collections.ConfigDict()  # dual-vocabulary MLM of the teacher
  c.stage1.steps = 400            # optimisation steps
  c.stage1.batch_size = 32        # global batch
  c.stage1.learning_rate = 1e-4   # AdamW peak learning rate
  c.stage1.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.stage1.weight_decay = 0.01    # AdamW decoupled weight decay
  c.stage1.p_student = 0.5        # final p_SV (share of words in the student vocabulary)
  c.stage1.ramp_fraction = 0.5    # p_SV rises linearly from 0 over this share of the steps

  c.stage2 = ml_collections.ConfigDict()  # student MLM + shared-projection hidden MSE
  c.stage2.steps = 800            # optimisation steps
  c.stage2.batch_size = 32        # global batch
  c.stage2.learning_rate = 5e-4   # AdamW peak learning rate
  c.stage2.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.stage2.weight_decay = 0.01    # AdamW decoupled weight decay
  c.stage2.layer_map = ()         # teacher layer (0-based) per student layer; () = evenly spaced
  c.stage2.hidden_weight = 1.0    # weight of the hidden-state MSE next to the MLM loss
  c.stage2.projection = 'up'      # 'up': U maps student states to d_T; 'down': teacher to d_S

  c.distill = ml_collections.ConfigDict()  # Stage III: the task
  c.distill.alpha = 0.5           # weight of the gold loss; 1 - alpha: KD from the task teacher
  c.distill.temperature = 2.0     # KD softmax temperature
  c.distill.epochs = 4.0          # student epochs on the task
  c.distill.batch_size = 32       # global batch
  c.distill.learning_rate = 5e-4  # AdamW peak learning rate
  c.distill.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.distill.weight_decay = 0.01   # AdamW decoupled weight decay

  if arg == 'quick':
    c.data.task = 'rte'
    c.data.max_length = 32
    c.data.max_train_examples = 128
    c.data.max_eval_examples = 64
    c.teacher.epochs = 1.0
    c.teacher.batch_size = 16
    c.mixed.corpus = 'task'
    c.mixed.vocab_size = 1000
    c.mixed.max_predictions = 6
    c.stage1.steps = 6
    c.stage1.batch_size = 16
    c.stage2.steps = 6
    c.stage2.batch_size = 16
    c.distill.epochs = 1.0
    c.distill.batch_size = 16
    c.eval_every = c.checkpoint_every = 4
    c.log_every = 1
    c.speed_repeats = 2
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use ':quick' or nothing")
  return c
