"""Long lists of skipped items said in a few lines: counts by reason and a few examples (the full list goes to
--json or a file), so that a partial VoxCeleb download does not print a thousand lines."""
from __future__ import annotations

from collections.abc import Callable, Sequence

EXAMPLES_PER_REASON = 3


def reason_counts(entries: Sequence[dict], reason_key: str) -> dict[str, int]:
    """{reason: how many entries give it}, most frequent first (ties in order of first appearance)."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry[reason_key]] = counts.get(entry[reason_key], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def skip_summary(entries: Sequence[dict], reason_key: str, name: Callable[[dict], str],
                 examples: int = EXAMPLES_PER_REASON) -> list[str]:
    """One line per reason: '<count> <reason> (e.g. <first examples>)', most frequent first."""
    lines = []
    for reason, count in reason_counts(entries, reason_key).items():
        shown = [name(entry) for entry in entries if entry[reason_key] == reason][:examples]
        more = ", ..." if count > len(shown) else ""
        lines.append(f"{count:,} {reason} (e.g. {', '.join(shown)}{more})")
    return lines


def say_skipped(summary: dict, data) -> None:
    """An import's skipped identities and unlisted speaker folders on stderr, summarised (all of them: import.json)."""
    from fvmatch.commands.common import say_line, stderr

    skipped = summary["skipped"]
    if skipped:
        say_line(stderr, f"fvmatch: skipped {len(skipped):,} of {len(skipped) + summary['identities']:,} identities "
                         f"(all of them in {data}/import.json and --json):")
        for line in skip_summary(skipped, "reason", lambda entry: f"{entry['identity']} ({entry['name']})"):
            say_line(stderr, f"  {line}")
    unlisted = summary.get("unlisted_speakers", [])
    if unlisted:
        shown = ", ".join(unlisted[:EXAMPLES_PER_REASON]) + (", ..." if len(unlisted) > EXAMPLES_PER_REASON else "")
        say_line(stderr, f"fvmatch: {len(unlisted):,} speaker folder(s) with voices are not in the meta file, "
                         f"ignored: {shown}")
