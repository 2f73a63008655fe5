"""Range checks of config values, by key name, before a run writes anything.

ml_collections already refuses a value of the wrong type; what it accepts and
a run would only trip over much later (a negative size, a NaN learning rate,
heads that do not divide the width) is refused here with the key's full name.
The rules go by key name, so they cover every method's config and sections.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from kdjax.errors import KdjaxError

Rule = tuple[Callable[[Any], bool], str]

_POSITIVE_INT: Rule = (lambda v: v >= 1, 'a positive integer')
_COUNT: Rule = (lambda v: v >= 0, 'an integer >= 0')
_POSITIVE: Rule = (lambda v: v > 0, 'a number > 0')
_NON_NEGATIVE: Rule = (lambda v: v >= 0, 'a number >= 0')
_FRACTION: Rule = (lambda v: 0 <= v < 1, 'in [0, 1)')
_WEIGHT: Rule = (lambda v: 0 <= v <= 1, 'in [0, 1]')

RULES: dict[str, Rule] = {
    **{k: _POSITIVE_INT for k in (
        'num_layers', 'hidden_size', 'num_heads', 'intermediate_size', 'batch_size',
        'eval_batch_size', 'heldout_batch_size', 'max_length', 'max_positions', 'eval_every',
        'checkpoint_every', 'log_every', 'keep_checkpoints', 'speed_repeats', 'vocab_size',
        'max_predictions', 'steps')},
    **{k: _COUNT for k in ('max_train_examples', 'max_eval_examples', 'max_corpus_texts',
                           'seed', 'split_seed', 'pretrain_seed', 'pretrain_steps',
                           'single_teacher', 'augment_copies')},
    **{k: _POSITIVE for k in ('learning_rate', 'temperature')},
    **{k: _NON_NEGATIVE for k in ('epochs', 'weight_decay', 'hidden_weight',
                                  'attention_weight')},
    **{k: _FRACTION for k in ('warmup_fraction', 'dev_fraction', 'test_fraction',
                              'heldout_fraction', 'baseline_decay', 'ramp_fraction',
                              'dev_only_train_fraction')},
    **{k: _WEIGHT for k in ('alpha', 'p_student', 'mask_prob', 'augment_mask_prob',
                            'augment_replace_prob', 'augment_repair_prob')},
}


# Keys with a closed set of values, by full dotted name (where a config has them).
CHOICES: dict[str, tuple[str, ...]] = {
    'compute_dtype': ('float32', 'bfloat16'),
    'mixed.embedding_init': ('teacher', 'random'),
    'student.init': ('random', 'teacher_embeddings', 'teacher_layers'),
    'student.layer_choice': ('evenly_spaced', 'first'),
    'data.source': ('bbc', 'glue_dir', 'hub', 'disk', 'file'),
    'data.header': ('auto', 'yes', 'no'),
    'distill.weighting': ('policy', 'equal', 'single'),
    'rl.selection': ('hard', 'soft'),
    'rl.reward': ('R1', 'R2', 'R3'),
    'rl.baseline': ('moving_average', 'before_step'),
}


def check(config: dict) -> None:
  """Raises KdjaxError naming the first out-of-range value of `config` (a dict)."""
  for name, allowed in CHOICES.items():
    *sections, key = name.split('.')
    section = config
    for part in sections:
      section = section.get(part) if isinstance(section, dict) else None
    if isinstance(section, dict) and key in section and section[key] not in allowed:
      raise KdjaxError(f'{name} is {section[key]!r}; use one of {list(allowed)}')
  _check_section(config, '')


def _check_section(section: dict, prefix: str) -> None:
  for key, value in section.items():
    name = prefix + key
    if isinstance(value, dict):
      _check_section(value, name + '.')
      continue
    if isinstance(value, float) and not math.isfinite(value):
      raise KdjaxError(f'{name} is {value}; give a finite number')
    rule = RULES.get(key)
    if rule is None or isinstance(value, (bool, str, tuple, list)) or value is None:
      continue
    accepts, wanted = rule
    if not accepts(value):
      raise KdjaxError(f'{name} is {value}; it must be {wanted}')
  hidden, heads = section.get('hidden_size'), section.get('num_heads')
  if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
    raise KdjaxError(f'{prefix}hidden_size {hidden} is not a multiple of '
                     f'{prefix}num_heads {heads}')
