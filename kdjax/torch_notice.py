"""Drops transformers' "PyTorch was not found" notice from kdjax's commands.

kdjax uses transformers for tokenizers and configs only and never needs torch,
so the notice (printed when transformers is imported) only misleads. The filter
matches that one message; every other transformers warning still shows.
"""
from __future__ import annotations

import logging

_NOTICE = 'PyTorch was not found.'


def _not_the_notice(record: logging.LogRecord) -> bool:
  return not str(record.msg).startswith(_NOTICE)


def silence() -> None:
  """Installs the filter on transformers' root logger (before transformers is
  imported: the notice comes at import time)."""
  logger = logging.getLogger('transformers')
  if _not_the_notice not in logger.filters:
    logger.addFilter(_not_the_notice)
