"""Training runs the tests share: a run stopped after its first epoch, then resumed."""
from __future__ import annotations

import pytest

from fvmatch.training.trainer import train


def stopped_after_first_epoch_then_resumed(prepared, out, settings, **resume_options):
    """Train `settings` into `out`, stopped by a KeyboardInterrupt once its first epoch is written, then resumed with
    `resume_options` (e.g. on_step); the resumed run's result."""
    def interrupt_after_first_epoch(record):
        if record["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(prepared, out, settings, on_epoch=interrupt_after_first_epoch)
    return train(prepared, out, settings, resume=True, **resume_options)
