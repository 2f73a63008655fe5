"""Mixed-vocabulary distillation: all-MiniLM-L6-v2 -> a student as deep as the
teacher (6 x 128, feed-forward 384) with its own 5,000-token WordPiece
vocabulary, 6.7 MB in fp32.

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/mixed_vocab.py --workdir runs/mixed [--config.data.task=mrpc ...]
  ... --config configs/mixed_vocab.py:quick   # all three stages, tiny, ~2 min on 2 CPU cores

Stage I trains the teacher to read text mixed from both vocabularies (dual MLM);
Stage II distils it into the student (MLM + hidden states through one shared
projection); Stage III fine-tunes the student on the task with KD from the
fine-tuned teacher. `--config.mixed.pretrain=False --config.distill.alpha=1`
is the same student without distillation, starting from the teacher-derived
embeddings (the control arm; add `--config.mixed.embedding_init=random` for
random ones). experiments/mixed_vocab.py compares them.
"""
import ml_collections

from kdjax import config_sections as sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'mixed_vocab'        # this pipeline (kdjax/methods/mixed_vocab/)
  sections.run_keys(c, eval_every=200, checkpoint_every=200, log_every=10)
  sections.speed_keys(c)
  c.data = sections.data_section(source='glue_dir', task='sst2', max_length=64,
                                 max_train_examples=4000)  # the task of Stage III
  c.teacher = sections.teacher_section(epochs=2.0, batch_size=32)  # the task teacher (KD targets)

  # As deep as the teacher (the paper's setting). Under 7 MB in fp32 with a
  # 5,000-token vocabulary: a 512 feed-forward would make it 7.45 MB, so the
  # feed-forward is 3x the width (384) rather than 4x; the width, which the
  # teacher-derived word table is reduced to, and the positions stay.
  c.student = ml_collections.ConfigDict()  # its own vocabulary
  c.student.num_layers = 6        # transformer layers
  c.student.hidden_size = 128     # width d_S (= its embedding width)
  c.student.num_heads = 2         # attention heads
  c.student.intermediate_size = 384  # feed-forward width
  c.student.max_positions = 128   # position table (>= data.max_length)

  c.mixed = ml_collections.ConfigDict()
  c.mixed.pretrain = True         # Stages I and II (False: task training only, the control arms)
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

  # Stages I-II run once per corpus and are shared by every task and seed
  # (mixed.shared_dir); on 2 CPU cores a Stage-I step takes ~2.1 CPU seconds and
  # a Stage-II step ~0.7, so these lengths cost about an hour of CPU together.
  c.stage1 = ml_collections.ConfigDict()  # dual-vocabulary MLM of the teacher
  c.stage1.steps = 1000           # optimisation steps
  c.stage1.batch_size = 32        # global batch
  c.stage1.learning_rate = 1e-4   # AdamW peak learning rate
  c.stage1.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.stage1.weight_decay = 0.01    # AdamW decoupled weight decay
  c.stage1.p_student = 0.5        # final p_SV (share of words in the student vocabulary)
  c.stage1.ramp_fraction = 0.5    # p_SV rises linearly from 0 over this share of the steps

  c.stage2 = ml_collections.ConfigDict()  # student MLM + shared-projection hidden MSE
  c.stage2.steps = 2000           # optimisation steps
  c.stage2.batch_size = 32        # global batch
  c.stage2.learning_rate = 5e-4   # AdamW peak learning rate
  c.stage2.warmup_fraction = 0.1  # share of steps with linear warm-up
  c.stage2.weight_decay = 0.01    # AdamW decoupled weight decay
  c.stage2.layer_map = ()         # teacher layer (0-based) per student layer; () = evenly spaced
  c.stage2.hidden_weight = 1.0    # weight of the hidden-state MSE next to the MLM loss
  c.stage2.projection = 'up'      # 'up': U maps student states to d_T; 'down': teacher to d_S

  # Stage III, the task; alpha = 1: no KD from the task teacher.
  c.distill = sections.distill_section(alpha=0.5, temperature=2.0, epochs=4.0, batch_size=32,
                                       learning_rate=5e-4)
  sections.transfer_set_keys(c.distill)  # Stage III on teacher-labelled copies too (off)

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
