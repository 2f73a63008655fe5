"""How much an encoder's states vary across inputs (a collapse check).

  python experiments/student_states.py STAGE2_STEP_DIR VOCAB_DIR [--task sst2] [--heads 2]
  python experiments/student_states.py --hf [HF_DIR]   # a HF BERT directory; default the
                                                       # bundled all-MiniLM-L6-v2

STAGE2_STEP_DIR is an orbax step directory of the Stage-II phase (e.g.
runs/mixed_exp/shared/stage2-<key>/800). Prints, per hidden state of the encoder
on 64 dev sentences: the [CLS] vector's std across inputs (mean over features),
its norm, the same for the mean over the sentence's tokens, and the std of all
token states. A [CLS] std far below its norm means the [CLS] state hardly depends
on the input, so a classifier on it starts from almost no signal.
"""
import argparse
import os

import numpy as np

from kdjax.data import sources
from kdjax.data.tokenize import encode, load_tokenizer
from kdjax.models.bert import BertConfig, BertEncoder


def stage2_student(step_dir: str, vocab_dir: str, heads: int):
  """(BertConfig, encoder params, tokenizer) of a Stage-II checkpoint."""
  import orbax.checkpoint as ocp
  tokenizer = load_tokenizer(vocab_dir)
  state = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(step_dir), 'default'))
  bert = state['params']['bert']
  hidden = bert['embeddings']['word_embeddings']['embedding'].shape[1]
  layers = sum(k.startswith('layer_') for k in bert)
  config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_layers=layers,
                      num_heads=heads,  # not recoverable from the weights' shapes
                      intermediate_size=bert['layer_0']['intermediate']['kernel'].shape[1],
                      max_position_embeddings=bert['embeddings']['position_embeddings']
                      ['embedding'].shape[0])
  return config, bert, tokenizer


def hf_encoder(hf_dir: str):
  """(BertConfig, encoder params, tokenizer) of a HF BERT directory."""
  from kdjax.models.hf import load_hf_checkpoint
  from kdjax.teachers import resolve_teacher_dir
  hf_dir = resolve_teacher_dir(hf_dir)
  ckpt = load_hf_checkpoint(hf_dir)
  return ckpt.config, ckpt.encoder_params, load_tokenizer(hf_dir)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage2_step_dir', nargs='?')
  parser.add_argument('vocab_dir', nargs='?')
  parser.add_argument('--hf', nargs='?', const='', default=None, metavar='HF_DIR',
                      help='measure a HF BERT directory instead (no value: the bundled teacher)')
  parser.add_argument('--task', default='sst2')
  parser.add_argument('--heads', type=int, default=2, help='student.num_heads of the run')
  parser.add_argument('--glue_dir', default=os.environ.get('KDJAX_GLUE_DIR', ''))
  args = parser.parse_args()
  if args.hf is not None:
    config, params, tokenizer = hf_encoder(args.hf)
  elif args.stage2_step_dir and args.vocab_dir:
    config, params, tokenizer = stage2_student(args.stage2_step_dir, args.vocab_dir, args.heads)
  else:
    parser.error('give STAGE2_STEP_DIR VOCAB_DIR, or --hf')
  examples = sources.load_glue_dir(args.task, args.glue_dir)['dev'].subset(range(64))
  enc = encode(tokenizer, examples, 64)
  out = BertEncoder(config).apply({'params': params}, enc['input_ids'], enc['token_type_ids'],
                                  enc['attention_mask'], output_hidden_states=True)
  mask = enc['attention_mask'][..., None]
  print('state  cls_std_across_inputs  cls_norm  mean_std_across_inputs  mean_norm  token_std')
  for i, h in enumerate(out['hidden_states']):
    h = np.asarray(h)
    mean = (h * mask).sum(1) / mask.sum(1)
    print(f'{i:5d}  {h[:, 0].std(0).mean():21.4f}  {np.linalg.norm(h[:, 0], axis=-1).mean():8.2f}'
          f'  {mean.std(0).mean():22.4f}  {np.linalg.norm(mean, axis=-1).mean():9.2f}'
          f'  {h.std(axis=(0, 1)).mean():9.4f}')


if __name__ == '__main__':
  main()
