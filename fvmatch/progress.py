"""Rich progress bars for long work, on stderr (stdout is kept for results and JSON)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, from rich's own speed estimate; blank until there is one (no "- items/s")."""

    def __init__(self, unit: str = "items") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else "")


def item_progress(console: Console, label: str, unit: str = "items", transient: bool = False) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=transient)
