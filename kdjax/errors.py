"""The one exception kdjax raises for bad input; the CLI prints it as one line."""


class KdjaxError(Exception):
  """A user-facing problem: its message names what is wrong and how to fix it."""
