"""The embedded default experiment: distil all-MiniLM-L6-v2 on BBC News.
(`configs/bbc_distill.py` is the same experiment.)

  python -m kdjax.main                                  # this config
  python -m kdjax.main --config kdjax/defaults.py:quick # a smoke test

Fine-tunes the real all-MiniLM-L6-v2 (6 layers x 384, 22.7M params) on BBC
News topic classification (5 classes), stores its logits, distils them into a
4-layer x 256 student and prints teacher vs student accuracy, size and speed.
On 2 CPU cores: 15 minutes with another job sharing them
(experiments/results/default_bbc.md); `:quick` about 1 minute.
"""
import ml_collections

from kdjax import config_sections as sections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = 'kd'                 # 'kd' | 'mtdnn_kd' | 'rl_kd' | 'mixed_vocab' (see configs/)
  sections.run_keys(c, eval_every=100, checkpoint_every=100, log_every=10)
  sections.speed_keys(c)
  c.data = sections.data_section(source='bbc', task='bbc', max_length=128)
  c.teacher = sections.teacher_section(epochs=1.0, batch_size=16)
  c.student = sections.student_section(num_layers=4, hidden_size=256, num_heads=4,
                                       intermediate_size=1024)
  c.distill = sections.distill_section(alpha=0.5, temperature=2.0, epochs=6.0, batch_size=32,
                                       learning_rate=3e-4)
  sections.plain_kd_keys(c)

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
