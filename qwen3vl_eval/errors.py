"""Typed errors. Anything derived from `InputError` is the user's input being wrong: the CLI prints its
message on one line and exits 2, with no traceback."""

from __future__ import annotations


class InputError(Exception):
    """Bad usage or input: a file, field or value that cannot be used. CLI exit code 2."""


class CheckpointError(InputError):
    """A checkpoint directory, config or weight file that cannot be loaded."""


class ProcessorError(InputError):
    """A message, image or video that cannot be turned into model inputs."""


class GoldenError(InputError):
    """A golden case that is missing or malformed."""


class TaskError(InputError):
    """A task definition, data file or prediction file that cannot be used."""
