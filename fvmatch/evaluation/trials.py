"""Trial lists of the evaluation protocols (ARCHITECTURE.md section 7), drawn deterministically from a seed.

One row per trial, the same for every protocol:

    protocol    verification | 1:2 | 1:N | retrieval
    direction   verification: F-V (a face and a voice), F-F, V-V; matching and retrieval: F-V (a face probe
                against voices) or V-F (a voice probe against faces)
    stratum     U unconstrained; G, N, A: the trial's people share gender, nationality, age band; GNA, GN: all of those
    probe       an item, as its path relative to the corpus folder (faces/<id>/<video>/<file>; in a plain
                folder faces/<person>/<file>)
    candidates  verification: the one other item; 1:2 and 1:N: the N candidates; retrieval: none (the whole
                other-modality set of the split is ranked)
    target      verification: 1 same person, 0 different; 1:2 and 1:N: the position of the right candidate;
                retrieval: -1

1:N and retrieval trials are unconstrained (stratum U) only, and so is every trial of a plain folder, which
has no metadata. Each trial type (face-voice: verification F-V, 1:2, 1:N, retrieval; face-face; voice-voice) is
drawn over the items of the embedding space that scores it.

Strata constrain who the other people in a trial are: in a G verification pair the two people have the
same gender (same-person pairs trivially do); in a G 1:2 triplet the wrong candidate has the probe's gender.
Positives and negatives of a stratum are drawn from the same people: those with at least one partner that
fits. The age band is the decade (30-39, ...); a person with no age (or no gender, no nationality) is left
out of the strata that need it. Every block of trials (protocol, direction, stratum, N) has its own random
stream derived from the seed and the block's name, so the lists are identical for a seed and a block does
not change when the counts of another do.

Lists are written as CSV (the columns above; candidates joined by '|') or JSON (the same rows plus the seed
and counts), and read back from either. `read_trials` also reads published lists as their authors distribute
them, the format told from the content, their paths mapped onto the corpus (VGGFace1 names to VoxCeleb1 IDs
through meta.csv's name column):

    Nagrani et al. 2018 (Learnable PINs) verification lists, veriflist_test_<criterion>_<seenheard|unseenunheard>.txt:
        id,voice-speaker-id,face-speaker-id,label,voice-path,face-path
        2,2,493,0,A.R._Rahman/gaQqIoV_aLY_0000002.wav,Jesse_Spencer/FSfMyWtvPvI/0000825.jpg
      -> verification F-V, stratum from the file name (random U, G, N, A, GNA), target the label;
         <name>/<video>_<NNNNNNN>.wav is voices/<id>/<video>/<NNNNN>.wav, <name>/<video>/<frame>.jpg is
         faces/<id>/<video>/<frame>.jpg
    1:2 and 1:N matching lists, matching_<v2f|f2v>_<U|G|N|GN>.csv: space-separated, the probe, then the right
    candidate, then the wrong one(s):
        id10002/eNc4LrrvV80/00005.wav A.R._Rahman/1.6/gaQqIoV_aLY/0003650.jpg Toby_Stephens/1.6/s_fUJ9gYz7k/0004350.jpg
      -> 1:2 (two candidates) or 1:N, direction from the probe's modality, stratum from the file name (else U),
         target 0; <id>/<video>/<NNNNN>.wav is voices/..., <name>/1.6/<video>/<frame>.jpg is faces/<id>/<video>/<frame>.jpg
    VoxCeleb1's speaker-verification lists (veri_test.txt, veri_test2.txt, list_test_all2.txt, list_test_hard2.txt):
        1 id10270/x6uYqmx31kE/00002.wav id10270/GWXujl-xAVM/00035.wav
      -> verification V-V U, target the label
"""
from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument
from fvmatch.evaluation.trial import MODALITY_OF, Trial
from fvmatch.spaces import TRIAL_TYPES

FORMAT = "fvmatch-trials/1"
COLUMNS = ("protocol", "direction", "stratum", "probe", "candidates", "target")
CANDIDATE_SEPARATOR = "|"
VERIFICATION_STRATA = ("U", "G", "N", "A", "GNA")
MATCHING_STRATA = ("U", "G", "N", "GN")
ONE_TO_N_SIZES = tuple(range(2, 11))
AGE_BAND_YEARS = 10
DIRECTIONS = {"verification": ("F-V", "F-F", "V-V"), "1:2": ("F-V", "V-F"), "1:N": ("F-V", "V-F"),
              "retrieval": ("F-V", "V-F")}
STRATA = ("U", "G", "N", "A", "GNA", "GN")


@dataclass(frozen=True)
class TrialCounts:
    """How many trials to draw per block. Defaults keep the sampling error well under the identity bootstrap's."""

    verification: int = 10_000  # face-voice pairs per stratum, half of them same person
    same_modality: int = 10_000  # face-face and voice-voice pairs (unconstrained), half same person
    matching: int = 5_000  # 1:2 triplets per stratum and direction
    one_to_n: int = 1_000  # 1:N trials per N (2..10) and direction


@dataclass
class TrialList:
    trials: list[Trial]
    seed: int | None = None  # None for a list read from a file that does not say
    counts: dict | None = None  # the TrialCounts it was drawn with
    source: str = "generated"
    shortfalls: list[str] = field(default_factory=list)  # blocks that could not be drawn, and why
    list_format: str = FORMAT  # FORMAT, or the published format it was read from (PUBLISHED_FORMATS)

    def blocks(self) -> dict[tuple[str, str, str, int], list[Trial]]:
        """Trials grouped by (protocol, direction, stratum, number of candidates), in list order."""
        grouped: dict[tuple[str, str, str, int], list[Trial]] = {}
        for trial in self.trials:
            grouped.setdefault((trial.protocol, trial.direction, trial.stratum, len(trial.candidates)), []).append(trial)
        return grouped


def age_band(age: int | None) -> str | None:
    """The decade an age falls in ('30-39'), None when the age is unknown."""
    if age is None or age == "":
        return None
    start = int(age) // AGE_BAND_YEARS * AGE_BAND_YEARS
    return f"{start}-{start + AGE_BAND_YEARS - 1}"


def stratum_key(person: Mapping, stratum: str) -> tuple | None:
    """What two people must share to be in one trial of `stratum`; None when the person lacks that metadata."""
    key = []
    for letter in "" if stratum == "U" else stratum:
        value = {"G": person.get("gender"), "N": person.get("nationality"), "A": age_band(person.get("age"))}[letter]
        if value in (None, ""):
            return None
        key.append(value)
    return tuple(key)


def trial_type_of(protocol: str, direction: str) -> str:
    """The trial type a protocol's direction scores: verification F-F and V-V are same-modality, the rest face-voice."""
    if protocol == "verification" and direction in ("F-F", "V-V"):
        return "face-face" if direction == "F-F" else "voice-voice"
    return "face-voice"


def make_trials(identities: Sequence[Mapping], faces: Mapping[str, Sequence[str]], voices: Mapping[str, Sequence[str]],
                seed: int, counts: TrialCounts = TrialCounts(), trial_types: Collection[str] = TRIAL_TYPES,
                stratified: bool = True) -> TrialList:
    """Draw the protocols' trials over these people (meta.csv rows) and their items (identity -> item paths).

    Only the blocks of `trial_types` are drawn (face-voice: verification F-V, 1:2, 1:N, retrieval), and without
    `stratified` only the unconstrained (U) ones; a block's trials do not depend on which others are drawn. A
    block that cannot be drawn is named in `shortfalls` (the face-voice ones once when a modality has no items).
    """
    people = sorted(identities, key=lambda person: person["identity"])
    items = {"face": {label: sorted(refs) for label, refs in faces.items() if refs},
             "voice": {label: sorted(refs) for label, refs in voices.items() if refs}}
    trials: list[Trial] = []
    shortfalls: list[str] = []

    def add(block: list[Trial] | str) -> None:
        if isinstance(block, str):
            shortfalls.append(block)
        else:
            trials.extend(block)

    cross_modal = "face-voice" in trial_types
    missing = [f"{modality}s" for modality in ("face", "voice") if not items[modality]]
    if cross_modal and missing:
        shortfalls.append(f"face-voice (verification F-V, 1:2, 1:N, retrieval): no {' and no '.join(missing)} "
                          "to pair")
        cross_modal = False
    for stratum in VERIFICATION_STRATA if cross_modal and stratified else ("U",) if cross_modal else ():
        add(_pairs(seed, people, items, "F-V", stratum, counts.verification))
    for direction in ("F-F", "V-V"):
        if trial_type_of("verification", direction) in trial_types:
            add(_pairs(seed, people, items, direction, "U", counts.same_modality))
    for direction in ("F-V", "V-F") if cross_modal else ():
        for stratum in MATCHING_STRATA if stratified else ("U",):
            add(_matching(seed, people, items, "1:2", direction, stratum, 2, counts.matching))
        for size in ONE_TO_N_SIZES:
            add(_matching(seed, people, items, "1:N", direction, "U", size, counts.one_to_n))
    for direction in ("F-V", "V-F") if cross_modal else ():
        probes = items[MODALITY_OF[direction[0]]]
        trials.extend(Trial("retrieval", direction, "U", ref, (), -1)
                      for person in people for ref in probes.get(person["identity"], []))
    return TrialList(trials, seed=seed, counts=asdict(counts), shortfalls=shortfalls)


def _block_rng(seed: int, *name: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, name)).encode())])


class _Groups:
    """The people who can probe a stratum's trials, and for each the others they may be paired with.

    A probe needs probe items, `same_items_needed` candidate items of its own, the stratum's metadata and at
    least one other person with candidate items and the same key. Groups are shared lists (one per key), so
    drawing stays linear in the number of people even for the unconstrained stratum.
    """

    def __init__(self, people: Sequence[Mapping], probe_items: Mapping, candidate_items: Mapping, stratum: str,
                 same_items_needed: int) -> None:
        members: dict[tuple, list[str]] = {}
        keys = {person["identity"]: stratum_key(person, stratum) for person in people}
        self.position: dict[str, int] = {}
        for label, key in keys.items():
            if key is not None and label in candidate_items:
                self.position[label] = len(members.setdefault(key, []))
                members[key].append(label)
        self.group: dict[str, list[str]] = {}
        for label, key in keys.items():
            if key is None or label not in probe_items or len(candidate_items.get(label, ())) < same_items_needed:
                continue
            if len(members[key]) > 1:  # the probe is in its group: it has candidate items
                self.group[label] = members[key]
        self.probes = list(self.group)

    def partners(self, label: str) -> int:
        return len(self.group[label]) - 1

    def others(self, rng: np.random.Generator, label: str, count: int) -> list[str]:
        """`count` distinct people of the probe's group, not the probe, drawn uniformly."""
        group, own = self.group[label], self.position[label]
        picks = rng.choice(len(group) - 1, count, replace=False) if count > 1 else [rng.integers(len(group) - 1)]
        return [group[int(pick) + (pick >= own)] for pick in picks]


def _pick(rng: np.random.Generator, choices: Sequence):
    return choices[int(rng.integers(len(choices)))]


def _pairs(seed: int, people: Sequence[Mapping], items: Mapping, direction: str, stratum: str,
           count: int) -> list[Trial] | str:
    """Verification pairs of a block: count // 2 of one person, the rest of two people sharing the stratum's key."""
    first, second = (items[MODALITY_OF[letter]] for letter in direction.split("-"))
    same_modality = first is second
    groups = _Groups(people, first, second, stratum, 2 if same_modality else 1)
    probes = groups.probes
    if not probes:
        return (f"verification {direction} {stratum}: no person has both items and another person who fits "
                f"the stratum{' (same-person pairs need two items of one modality)' if same_modality else ''}")
    rng = _block_rng(seed, "verification", direction, stratum)
    trials = []
    for index in range(count):
        label = _pick(rng, probes)
        if index < count // 2:
            if same_modality:
                mine = first[label]
                one = int(rng.integers(len(mine)))
                other = int(rng.integers(len(mine) - 1))
                trials.append(Trial("verification", direction, stratum, mine[one], (mine[other + (other >= one)],), 1))
            else:
                trials.append(Trial("verification", direction, stratum, _pick(rng, first[label]),
                                    (_pick(rng, second[label]),), 1))
        else:
            other = groups.others(rng, label, 1)[0]
            trials.append(Trial("verification", direction, stratum, _pick(rng, first[label]),
                                (_pick(rng, second[other]),), 0))
    order = rng.permutation(count)  # interleave same and different person
    return [trials[index] for index in order]


def _matching(seed: int, people: Sequence[Mapping], items: Mapping, protocol: str, direction: str, stratum: str,
              size: int, count: int) -> list[Trial] | str:
    """1:N trials of a block: a probe, its person's candidate item and size - 1 other people's, in random order."""
    probe_items, candidate_items = (items[MODALITY_OF[letter]] for letter in direction.split("-"))
    groups = _Groups(people, probe_items, candidate_items, stratum, 1)
    probes = [label for label in groups.probes if groups.partners(label) >= size - 1]
    if not probes:
        return f"{protocol} {direction} {stratum} N={size}: no person has {size - 1} others who fit the stratum"
    rng = _block_rng(seed, protocol, direction, stratum, size)
    trials = []
    for _ in range(count):
        label = _pick(rng, probes)
        candidates = [_pick(rng, candidate_items[other]) for other in groups.others(rng, label, size - 1)]
        target = int(rng.integers(size))
        candidates.insert(target, _pick(rng, candidate_items[label]))
        trials.append(Trial(protocol, direction, stratum, _pick(rng, probe_items[label]), tuple(candidates), target))
    return trials


def write_trials(trials: TrialList, path: str | Path) -> None:
    """Write a list as CSV (path ending .csv) or JSON (anything else)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    rows = ([t.protocol, t.direction, t.stratum, t.probe, CANDIDATE_SEPARATOR.join(t.candidates), t.target]
            for t in trials.trials)
    if path.suffix.lower() == ".csv":
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    else:
        document = {"format": FORMAT, "seed": trials.seed, "counts": trials.counts, "source": trials.source,
                    "shortfalls": trials.shortfalls, "columns": list(COLUMNS), "trials": list(rows)}
        temporary.write_text(json.dumps(document) + "\n")
    temporary.replace(path)


def read_trials(path: str | Path, names: Mapping[str, str] | None = None) -> TrialList:
    """Read a list written by `write_trials`, or a published one in its authors' format (the module docstring), told
    from the content. `names`: VGGFace1 name -> identity (meta.csv's name and identity columns), to map a published
    list's paths onto the corpus; a name it lacks is kept as the identity folder. BadArgument names the file and the
    line of anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise BadArgument(path, "no such trial list")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
        if path.suffix.lower() == ".json" or first.lstrip().startswith("{"):
            document = json.loads(path.read_text())
        elif tuple(name.strip() for name in first.split(",")) == COLUMNS:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                next(fields for fields in reader if fields)  # the header (blank lines before it skipped)
                trials = [_checked_trial(path, reader.line_num, fields) for fields in reader if fields]
            return TrialList(trials, source=str(path))
        else:
            from fvmatch.evaluation.published_trials import PUBLISHED_FORMATS, published_reader

            reader = published_reader(path, first)
            with open(path, encoding="utf-8-sig") as handle:
                trials = [reader(path, number, line, names or {}) for number, line in enumerate(handle, 1)
                          if line.strip()]
            kind = PUBLISHED_FORMATS[reader]
            return TrialList([trial for trial in trials if trial is not None], source=str(path), list_format=kind)
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise BadArgument(path, f"not a readable trial list ({type(error).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BadArgument(path, f"not an {FORMAT} document")
    trials = [_checked_trial(path, f"trial {number}", row) for number, row in enumerate(document.get("trials", []), 1)]
    return TrialList(trials, seed=document.get("seed"), counts=document.get("counts"), source=str(path),
                     shortfalls=list(document.get("shortfalls", [])))


def locate_nested_frames(trials: TrialList, data: str | Path) -> tuple[TrialList, int]:
    """The list with each face frame it names flat (`faces/<id>/<video>/<frame>.jpg`, as the published face-voice
    lists name them after VoxCeleb1's flat frame release) but the corpus holds one folder down, in a folder per
    utterance (`faces/<id>/<video>/<utterance>/<frame>.jpg`, as the nested release keeps them), named where it is;
    and how many items were so found. A frame's number is its place in the video, so one video's utterances never
    share a name; a name found in two utterance folders is left as it is (absent)."""
    data = Path(data)
    frames_of: dict[Path, dict[str, str]] = {}

    def located(item: str) -> str:
        parts = item.split("/")
        if len(parts) != 4 or parts[0] != "faces" or (data / item).is_file():
            return item
        video = data.joinpath(*parts[:3])
        if video not in frames_of:
            found: dict[str, list[str]] = {}
            for frame in (video.glob("*/*") if video.is_dir() else ()):
                found.setdefault(frame.name, []).append(f"{item.rsplit('/', 1)[0]}/{frame.parent.name}/{frame.name}")
            frames_of[video] = {name: paths[0] for name, paths in found.items() if len(paths) == 1}
        return frames_of[video].get(parts[3], item)

    moved = 0
    trials_found = []
    for trial in trials.trials:
        items = [located(item) for item in (trial.probe, *trial.candidates)]
        moved += sum(new != old for new, old in zip(items, (trial.probe, *trial.candidates)))
        trials_found.append(replace(trial, probe=items[0], candidates=tuple(items[1:])))
    return replace(trials, trials=trials_found), moved


def absent_items(trials: TrialList, data: str | Path) -> tuple[int, list[str]]:
    """How many trials name a file that is not in the corpus folder, and those files (sorted)."""
    data = Path(data)
    present: dict[str, bool] = {}
    absent = 0
    for trial in trials.trials:
        found = [present.setdefault(item, (data / item).is_file()) for item in (trial.probe, *trial.candidates)]
        absent += not all(found)
    return absent, sorted(item for item, found in present.items() if not found)


def _checked_trial(path: Path, where: object, fields: Sequence) -> Trial:
    def bad(problem: str) -> BadArgument:
        return BadArgument(path, f"{'line ' if isinstance(where, int) else ''}{where}: {problem}")

    if len(fields) != len(COLUMNS):
        raise bad(f"{len(fields)} fields, expected {len(COLUMNS)}")
    protocol, direction, stratum, probe = (str(value).strip() for value in fields[:4])
    candidates = tuple(c for c in str(fields[4]).split(CANDIDATE_SEPARATOR) if c)
    if protocol not in DIRECTIONS:
        raise bad(f"protocol {protocol!r} is not one of {', '.join(DIRECTIONS)}")
    if direction not in DIRECTIONS[protocol]:
        raise bad(f"direction {direction!r} is not one of {', '.join(DIRECTIONS[protocol])} for {protocol}")
    if stratum not in STRATA:
        raise bad(f"stratum {stratum!r} is not one of {', '.join(STRATA)}")
    if protocol in ("1:N", "retrieval") and stratum != "U":
        raise bad(f"{protocol} trials are unconstrained (stratum U), not {stratum!r}")
    try:
        target = int(fields[5])
    except ValueError:
        raise bad(f"target {fields[5]!r} is not a whole number") from None
    expected = {"verification": (1, 1), "1:2": (2, 2), "1:N": (2, None), "retrieval": (0, 0)}[protocol]
    if len(candidates) < expected[0] or (expected[1] is not None and len(candidates) > expected[1]):
        raise bad(f"{len(candidates)} candidates for a {protocol} trial")
    valid = {"verification": target in (0, 1), "retrieval": target == -1}.get(protocol, 0 <= target < len(candidates))
    if not probe or not valid:
        raise bad(f"target {target} does not fit a {protocol} trial with {len(candidates)} candidates"
                  if probe else "empty probe")
    return Trial(protocol, direction, stratum, probe, candidates, target)
