"""The one exception type the training CLI turns into a single line and exit status 2."""
from __future__ import annotations


class TrainError(Exception):
    """Bad input to a training command (data, config, checkpoint): the message is one sentence."""
