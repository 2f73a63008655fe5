"""The real-data distillation job of `bench_real_data.py`, written the way
TextBrewer's users write it: a PyTorch `DataLoader` with per-batch dynamic
padding, the teacher run at every step (`GeneralDistiller`), then teacher and
student evaluated on the same split kdjax reports.

Runs in the throwaway torch venv (never needed by kdjax or its tests):
  /tmp/ref/bin/python experiments/textbrewer_job.py --config glue_distill \
      --teacher DIR [--config.KEY=VALUE ...]

The data (rows, splits, subsample) come from kdjax's own loader with the same
config the kdjax job runs, so both frameworks see the same examples. Prints
one JSON line: phase times, steps and metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

START = time.perf_counter()  # the job's time starts before torch is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402
import textbrewer  # noqa: E402
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,  # noqa: E402
                          BertConfig, BertForSequenceClassification, DataCollatorWithPadding,
                          get_linear_schedule_with_warmup)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_overrides, load_config  # noqa: E402


def encoded_rows(tokenizer, examples, max_length: int) -> list[dict]:
  """One dict of token lists per example, truncated and unpadded (the collator
  pads each batch to its longest row)."""
  args = ((examples.texts_a,) if examples.texts_b is None
          else (examples.texts_a, examples.texts_b))
  enc = tokenizer(*args, truncation=True, max_length=max_length)
  rows = [{k: enc[k][i] for k in ('input_ids', 'token_type_ids', 'attention_mask')}
          for i in range(len(examples))]
  for row, label in zip(rows, examples.labels):
    row['labels'] = int(label)
  return rows


def logits_of(model, loader) -> np.ndarray:
  model.eval()
  out = []
  with torch.no_grad():
    for batch in loader:
      batch.pop('labels')
      out.append(model(**batch).logits.numpy())
  return np.concatenate(out)


def adaptor(batch, outputs) -> dict:
  # The hard-label loss comes from the model itself (labels are in the batch).
  return {'logits': outputs.logits, 'losses': [outputs.loss]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='a configs/ name, e.g. glue_distill')
  parser.add_argument('--teacher', required=True, help='the fine-tuned teacher (HF dir)')
  args, overrides = parser.parse_known_args()
  config = load_config(args.config)
  apply_overrides(config, overrides)
  from kdjax.data.sources import final_eval_split, load_task, subsample
  spec, splits = load_task(config.data)
  final = final_eval_split(splits)
  eval_examples = subsample(splits[final], config.data.max_eval_examples,
                            config.data.split_seed)
  torch.manual_seed(config.seed)

  tokenizer = AutoTokenizer.from_pretrained(args.teacher)
  pad = DataCollatorWithPadding(tokenizer)

  def collate(rows):
    # TextBrewer calls model(**batch) for a plain dict only (not a BatchEncoding).
    return dict(pad(rows))
  max_length, d = config.data.max_length, config.distill
  train_rows = encoded_rows(tokenizer, splits['train'], max_length)
  eval_rows = encoded_rows(tokenizer, eval_examples, max_length)
  train_loader = torch.utils.data.DataLoader(train_rows, batch_size=d.batch_size, shuffle=True,
                                             collate_fn=collate)
  eval_loader = torch.utils.data.DataLoader(eval_rows, batch_size=config.eval_batch_size,
                                            collate_fn=collate)

  teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher)
  t = teacher.config
  student = BertForSequenceClassification(BertConfig(
      vocab_size=t.vocab_size, max_position_embeddings=t.max_position_embeddings,
      type_vocab_size=t.type_vocab_size, hidden_size=config.student.hidden_size,
      num_hidden_layers=config.student.num_layers,
      num_attention_heads=config.student.num_heads,
      intermediate_size=config.student.intermediate_size, num_labels=spec.num_outputs))

  steps = int(round(d.epochs * len(train_loader)))
  optimizer = torch.optim.AdamW(student.parameters(), lr=d.learning_rate,
                                weight_decay=d.weight_decay)
  with tempfile.TemporaryDirectory() as out_dir:
    distiller = textbrewer.GeneralDistiller(
        # A checkpoint per epoch (TextBrewer's default); every `steps` when the
        # job ends mid-epoch.
        train_config=textbrewer.TrainingConfig(device='cpu', output_dir=out_dir, log_dir=None,
                                               ckpt_steps=steps),
        # TextBrewer's soft loss is the cross-entropy to softmax(z_T / tau) without
        # the tau^2 factor: weighting it (1 - alpha) tau^2 gives kdjax's loss.
        distill_config=textbrewer.DistillationConfig(
            temperature=d.temperature, kd_loss_type='ce',
            kd_loss_weight=(1 - d.alpha) * d.temperature ** 2, hard_label_weight=d.alpha),
        model_T=teacher, model_S=student, adaptor_T=adaptor, adaptor_S=adaptor)
    setup_s = time.perf_counter() - START
    started = time.perf_counter()
    with distiller:
      length = ({'num_epochs': int(d.epochs)} if float(d.epochs).is_integer()
                else {'num_steps': steps})
      distiller.train(optimizer, train_loader, **length, max_grad_norm=1.0,
                      scheduler_class=get_linear_schedule_with_warmup,
                      scheduler_args={'num_warmup_steps': int(d.warmup_fraction * steps),
                                      'num_training_steps': steps})
    distill_s = time.perf_counter() - started

  from kdjax.metrics import compute_metrics
  labels = np.asarray(eval_examples.labels)
  timed = {}
  for role, model in (('teacher', teacher), ('student', student)):
    started = time.perf_counter()
    timed[role] = compute_metrics(spec.metrics, logits_of(model, eval_loader), labels,
                                  spec.regression)
    timed[f'{role}_eval_s'] = time.perf_counter() - started
  print(json.dumps({
      'framework': f'TextBrewer {textbrewer.__version__}, torch {torch.__version__}',
      'eval_split': final, 'train_examples': len(train_rows), 'eval_examples': len(eval_rows),
      'steps': steps, 'setup_s': setup_s, 'distill_s': distill_s,
      'teacher_eval_s': timed['teacher_eval_s'], 'student_eval_s': timed['student_eval_s'],
      'teacher_metrics': timed['teacher'], 'student_metrics': timed['student'],
      'job_s': time.perf_counter() - START}))


if __name__ == '__main__':
  main()
