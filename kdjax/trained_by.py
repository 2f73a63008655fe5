"""Which code trained a phase's steps: a journal beside its checkpoints.

A phase may be trained by several invocations (stopped, resumed), each perhaps
at another commit, and a finished phase resumed later trains nothing but still
ends with a new summary.json. So a run records the code versions of the
invocations that trained its phases, read from each phase's journal
(`<checkpoint_dir>-trained_by.json`), not the version of the process that
happened to write the summary last.
"""
from __future__ import annotations

import datetime
import json
import os

from kdjax import atomic


def journal_path(checkpoint_dir: str) -> str:
  return checkpoint_dir.rstrip(os.sep) + '-trained_by.json'


def read(checkpoint_dir: str) -> list[dict]:
  """The phase's entries, oldest first: {'from_step', 'code_version', 'started'}
  (each trained from its step to the next entry's, the last one to the end);
  [] for a phase trained before journals were kept."""
  path = journal_path(checkpoint_dir)
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def record(checkpoint_dir: str, from_step: int, version: dict) -> list[dict]:
  """Notes that `version` trains the phase from `from_step` on; returns the journal.

  Entries from `from_step` on are dropped: their steps came after the
  checkpoint training resumes from, so they are trained again."""
  entries = [e for e in read(checkpoint_dir) if e['from_step'] < from_step]
  entries.append({'from_step': from_step, 'code_version': version,
                  'started': datetime.datetime.now(datetime.timezone.utc).isoformat()})
  atomic.write_json(journal_path(checkpoint_dir), entries)
  return entries


def latest(journals: dict[str, list[dict]]) -> dict | None:
  """The code version that trained last, over every phase's journal (None if none)."""
  entries = [e for entries in journals.values() for e in entries]
  if not entries:
    return None
  return max(entries, key=lambda e: e['started'])['code_version']


def versions_of(summary: dict) -> list[dict]:
  """Every distinct code version that trained a run, from its summary.json
  (`code_version` alone for a run from before `trained_by` was recorded)."""
  found = [e['code_version'] for entries in summary.get('trained_by', {}).values()
           for e in entries]
  found = found or [summary.get('code_version', {'commit': 'unknown', 'dirty': None})]
  distinct = []
  for version in found:
    if version not in distinct:
      distinct.append(version)
  return distinct
