"""RL-KD: a policy picks, per training instance, which of three teachers a
3-layer pre-trained student learns from.

  KDJAX_GLUE_DIR=../shared/data/glue python -m kdjax.main \
      --config configs/rl_kd.py --workdir runs/rl_kd [--config.KEY=VALUE ...]
  ... --config configs/rl_kd.py:quick   # tiny run of all four stages, a few minutes on 2 CPU cores

Student (the paper's BERT3, built as patient KD builds it): the first 3 layers
of the pre-trained all-MiniLM-L6-v2 at its width (384, 12 heads). Teachers,
each fine-tuned from all-MiniLM-L6-v2 and differing in kind: all 6 layers on
all rows (the strongest); all 6 layers on a random half of the rows with
dropout 0.3 (other data, stronger regularisation: right and wrong on other
instances); its first 4 layers on all rows (shallower). `distill.weighting`
picks the variant ('policy' is RL-KD; 'equal' and 'single' are the baselines
with the same student steps). experiments/rl_kd.py runs every variant over
seeds and tasks; experiments/rl_kd_policy_steps.py measures how long the
policy needs to separate the teachers (the source of the rl.* defaults).
"""
import ml_collections

from kdjax import config_sections as sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'rl_kd'              # this pipeline (kdjax/methods/rl_kd/)
  sections.run_keys(c, eval_every=200, checkpoint_every=200, log_every=10)
  c.data = sections.data_section(source='glue_dir', task='sst2', max_length=64,
                                 max_train_examples=2000)  # subsampled before the held-out split
  c.data.dev_only_train_fraction = 0.5  # tasks with only a dev file (QNLI): share used to train

  c.teacher = sections.teacher_section(batch_size=32)
  c.teacher.member_names = ('minilm_l6', 'minilm_l6_half', 'minilm_l4')  # one per teacher
  c.teacher.member_layers = (0, 0, 4)        # layers kept from the checkpoint (0 = all)
  c.teacher.member_epochs = (3.0, 3.0, 3.0)  # fine-tuning epochs per teacher (0 = none)
  c.teacher.member_dropouts = (0.1, 0.3, 0.1)  # hidden and attention dropout per teacher
  c.teacher.member_train_fractions = (1.0, 0.5, 1.0)  # share of the training rows per teacher

  c.student = sections.student_section(num_layers=3, hidden_size=384, num_heads=12,
                                       intermediate_size=1536)
  c.student.init = 'teacher_layers'  # the checkpoint's own layers, at its width
  c.student.layer_choice = 'first'   # layers 0-2, as patient KD builds BERT3

  c.distill = sections.distill_section(alpha=0.5, temperature=2.0, epochs=3.0, batch_size=32,
                                       learning_rate=1e-4)
  c.distill.weighting = 'policy'  # 'policy' (RL-KD) | 'equal' | 'single'
  c.distill.single_teacher = 0    # weighting=single: index into teacher.member_names
  c.distill.heldout_fraction = 0.1  # training rows held out (R3 rewards); same for all variants

  # learning_rate, baseline and pretrain_steps: from experiments/rl_kd_policy_steps.py (its
  # results file); the largest rate whose policy did not collapse to every teacher.
  c.rl = ml_collections.ConfigDict()
  c.rl.selection = 'hard'         # sampled teachers weigh 'hard': equally | 'soft': by π
  c.rl.reward = 'R1'              # 'R1' -gold CE | 'R2' R1 - weighted KD | 'R3' held-out acc gain
  c.rl.extra_features = ()        # any of student_probs, student_loss, teacher_student_kl, teacher_id
  c.rl.hidden_sizes = ()          # () = linear policy (the paper); e.g. (32,) for an MLP
  c.rl.learning_rate = 1e-2       # policy Adam learning rate
  c.rl.baseline = 'before_step'   # 'before_step' (own reward before the step) | 'moving_average'
  c.rl.baseline_decay = 0.9       # moving-average reward baseline
  c.rl.warmup_fraction = 0.3      # share of student steps in stage 2 (equal-weight warm-up)
  c.rl.pretrain_steps = 300       # stage 3: policy steps with the student frozen
  c.rl.heldout_batch_size = 64    # R3: held-out instances per episode

  if arg == 'quick':
    c.data.task = 'rte'
    c.data.max_length = 32
    c.data.max_train_examples = 160
    c.data.max_eval_examples = 64
    c.teacher.member_epochs = (1.0, 1.0, 1.0)
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
