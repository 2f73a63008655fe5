"""How much a Stage-II student's states vary across inputs (a collapse check).

  python experiments/student_states.py STAGE2_STEP_DIR VOCAB_DIR [--task sst2] [--heads 2]

STAGE2_STEP_DIR is an orbax step directory of the Stage-II phase (e.g.
runs/mixed_exp/shared/stage2-<key>/800). Prints, per hidden state of the student
encoder on 64 dev sentences: the [CLS] vector's std across inputs (mean over
features), its norm, and the std of all token states. A collapsed student has a
[CLS] std far below its norm.
"""
import argparse
import os

import numpy as np
import orbax.checkpoint as ocp

from kdjax.data import sources
from kdjax.data.tokenize import encode, load_tokenizer
from kdjax.models.bert import BertConfig, BertEncoder


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage2_step_dir')
  parser.add_argument('vocab_dir')
  parser.add_argument('--task', default='sst2')
  parser.add_argument('--heads', type=int, default=2, help='student.num_heads of the run')
  parser.add_argument('--glue_dir', default=os.environ.get('KDJAX_GLUE_DIR', ''))
  args = parser.parse_args()
  tokenizer = load_tokenizer(args.vocab_dir)
  state = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(args.stage2_step_dir), 'default'))
  bert = state['params']['bert']
  hidden = bert['embeddings']['word_embeddings']['embedding'].shape[1]
  layers = sum(k.startswith('layer_') for k in bert)
  config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_layers=layers,
                      num_heads=args.heads,  # not recoverable from the weights' shapes
                      intermediate_size=bert['layer_0']['intermediate']['kernel'].shape[1],
                      max_position_embeddings=bert['embeddings']['position_embeddings']
                      ['embedding'].shape[0])
  examples = sources.load_glue_dir(args.task, args.glue_dir)['dev'].subset(range(64))
  enc = encode(tokenizer, examples, 64)
  out = BertEncoder(config).apply({'params': bert}, enc['input_ids'], enc['token_type_ids'],
                                  enc['attention_mask'], output_hidden_states=True)
  print('state  cls_std_across_inputs  cls_norm  token_std')
  for i, h in enumerate(out['hidden_states']):
    h = np.asarray(h)
    print(f'{i:5d}  {h[:, 0].std(0).mean():21.4f}  {np.linalg.norm(h[:, 0], axis=-1).mean():8.2f}'
          f'  {h.std(axis=(0, 1)).mean():9.4f}')


if __name__ == '__main__':
  main()
