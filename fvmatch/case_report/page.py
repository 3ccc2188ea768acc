"""The report page: one HTML file, every picture inline, every value from the data escaped, nothing external.

The page is rendered from the Jinja2 templates beside this module (templates/report.html.j2 and the sections it
imports); this module gathers what they show. Autoescape is on, and every value a template prints goes through
`esc`: text from the data (identity labels, query ids, paths, errors) is HTML-escaped, and the templates wrap it in
<bdi> (the `bdi` filter), so a right-to-left label cannot reorder the text around it; invisible and
direction-changing characters are shown as their code points (U+202E) rather than obeyed, since in a forensic report
what a label really holds must be visible. The Content-Security-Policy forbids scripts and every external resource:
the page works offline and cannot call home even if a value slipped through unescaped.
"""
from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
DETAIL_LIMIT = 50
ROW_JSON_CHARACTERS = 20_000  # an audit row's inputs/result shown in full up to this size
TEMPLATES = Path(__file__).parent / "templates"
# control and format characters (bidi overrides and isolates, zero-width ones, BOM) and lone surrogates
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069"
                        "\ufeff\ud800-\udfff]")

# a template's indented line continues the line above: directly after a tag or a {% %} statement, else after a space
_CONTINUED_AFTER_MARKUP = re.compile(r"(?<=>)\n[ \t]+|(?<=%})\n[ \t]+")
_CONTINUED = re.compile(r"\n[ \t]+")


# ----- escaping -------------------------------------------------------------------------------------------------
def esc(value: object) -> str:
    """Text from the data, safe in HTML text: escaped, invisible characters shown as their code points."""
    text = html.escape("" if value is None else str(value), quote=True)
    return _INVISIBLE.sub(lambda m: f'<span class="cc">U+{ord(m.group()):04X}</span>', text)


def bdi(value: object) -> str:
    """A value from the data in running text, isolated so right-to-left text cannot reorder what surrounds it."""
    return f"<bdi>{esc(value)}</bdi>"


def attr(value: object) -> str:
    """Text from the data, safe inside a quoted attribute."""
    text = _INVISIBLE.sub(lambda m: f"U+{ord(m.group()):04X}", "" if value is None else str(value))
    return html.escape(text, quote=True)


def _number(value: object, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "–"


def _json(value: object, limit: int = ROW_JSON_CHARACTERS) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit:,} more characters: see `fvmatch audit log --json`)"
    return text


def template_source(source: str) -> str:
    """A template as Jinja2 reads it: indented lines joined to the line above (see _CONTINUED_AFTER_MARKUP)."""
    return _CONTINUED.sub(" ", _CONTINUED_AFTER_MARKUP.sub("", source))


@functools.cache
def environment():
    """The Jinja2 environment of the report's templates: autoescape on, every printed value through `esc`.

    Imported here, not at the top: only `fvmatch report` needs Jinja2 (the CLI's --help imports nothing heavy)."""
    import jinja2
    import jinja2.ext
    from markupsafe import Markup

    class JoinedLines(jinja2.ext.Extension):
        def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
            return template_source(source) if name and name.endswith(".html.j2") else source

    def escaped(value: object) -> Markup:
        # autoescape's own escaping would let invisible characters through and write ' as &#39;: every value
        # printed goes through esc instead; markup made by the filters below (or by macros) is kept
        return value if hasattr(value, "__html__") else Markup(esc(value))

    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, finalize=escaped,
                                   undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                   keep_trailing_newline=True, extensions=[JoinedLines])
    templates.filters.update({
        "bdi": lambda value: Markup(bdi(value)),
        "attribute": lambda value: Markup(attr(value)),  # inside a quoted attribute
        "number": _number,
        "joined": lambda values, separator: separator.join(str(value) for value in values),
        "json_text": _json,  # an audit row's inputs or result, indented, cut at ROW_JSON_CHARACTERS
        "json_line": lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True),
    })
    templates.globals["csp"] = Markup(CSP)  # our constant, written as it is (its quotes are the policy's syntax)
    return templates


# ----- the page -------------------------------------------------------------------------------------------------
def render_report(records: Sequence[dict], gallery, card: dict, audit_rows: Sequence[dict], *, kind: str,
                  source: dict, detailed: Sequence[dict] | None = None, verdicts: Sequence[str | None] | None = None,
                  findings: Sequence[str] = (), arguments: Sequence[str] = ()) -> str:
    """The HTML of a report on `records` (audit result dicts, query-file order) answered against `gallery`.

    kind: "audit run" or "query"; source: {"label", "path", "sha256"} of the results or query file; detailed:
    the records (some of the same dicts) given a full section (default: the first DETAIL_LIMIT answered);
    verdicts: per record, what the audit trail says of it (results.run_rows); audit_rows: the trail rows that
    produced the results.
    """
    from fvmatch.audit.trail import verify_chain
    from fvmatch.case_report.pictures import best_faces, enrolled_faces
    from fvmatch.case_report.spaces import describe_space, spaces_used
    from fvmatch.evidence.rules import effective_calibration
    from fvmatch.spaces import JOINT

    detailed = list(detailed) if detailed is not None else [r for r in records if r["status"] == "ok"][:DETAIL_LIMIT]
    anchors = {id(record): f"q{number}" for number, record in enumerate(records, start=1)}
    if any(id(record) not in anchors for record in detailed):
        raise ValueError("detailed records must be records of the report (the same dicts)")
    candidates = [c for record in detailed for c in record.get("candidates") or []]
    labels = {c["identity"] for c in candidates}
    best = best_faces(gallery, labels)
    gone = {label for label in labels if best[label] is None and not gallery.has_identity(label)}
    faces = enrolled_faces(gallery, {media_id for c in candidates if (media_id := _face_of(c, best)) is not None})
    face_class = {media_id: f"f{number}" for number, media_id in enumerate(sorted(faces))
                  if faces[media_id].picture.uri}
    shown_faces = _CandidateFaces(faces, face_class, best, gone)
    calibration = effective_calibration(card)
    uses = spaces_used(records, detailed)
    chain = verify_chain(gallery)
    title = (f"fvmatch report: audit run, {len(records)} queries" if kind == "audit run"
             else f"fvmatch report: {records[0].get('modality', '')} query {records[0]['query_id']}")
    detailed_ids = {id(record) for record in detailed}
    head = ["#", "query id", "line", "modality", "task", "status", "top candidate", "score", "scored in", "log10 LR",
            "decision"] + (["audit trail"] if verdicts is not None else [])
    rows = [{"number": number, "record": record, "top": _top(record),
             "anchor": anchors[id(record)] if id(record) in detailed_ids else None,
             **({"verdict": verdicts[number - 1]} if verdicts is not None else {})}
            for number, record in enumerate(records, start=1)]
    return environment().get_template("report.html.j2").render(
        title=title, generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=_version(), command=" ".join(["fvmatch", *arguments]), source=source, records=records,
        answered=sum(record["status"] == "ok" for record in records), gallery=gallery, card=card, uses=uses,
        face_rules=[(face_class[media_id], faces[media_id].picture.uri) for media_id in face_class],
        joint=_joint_banner(card, uses), chain=chain, findings=findings, head=head, rows=rows,
        detailed=[_query(record, anchors[id(record)], shown_faces, calibration) for record in detailed],
        card_pairs=_card_facts(card), descriptions={use.space: describe_space(use.space, card) for use in uses},
        joint_used=any(use.space == JOINT for use in uses), calibration_rows=_calibration_rows(calibration, uses),
        calibration=calibration, counts=gallery.counts(), labels=labels, audit_rows=audit_rows, kind=kind,
        read_only=bool(getattr(gallery, "read_only", None)))


def _version() -> str:
    from fvmatch import __version__

    return __version__


def _joint_banner(card: dict, uses) -> dict | None:
    """What the banner over a shown score of the synthetic-trained joint space says; None: no such score shown."""
    from fvmatch.evidence.rules import joint_trained_on_synthetic
    from fvmatch.spaces import JOINT

    joint = [use for use in uses if use.space == JOINT]
    if not (joint and joint_trained_on_synthetic(card)):
        return None
    return {"count": sum(use.shown for use in joint), "names": " and ".join(use.name for use in joint),
            "model_id": str(card.get("model_id"))[:16], "training_data": card.get("training_data"),
            "warnings": sorted({warning for use in joint for warning in use.warnings})}


def _top(record: dict) -> dict:
    candidates = record.get("candidates") or []
    return candidates[0] if candidates else {}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _quality(record: dict) -> str:
    quality = record.get("quality")
    if not isinstance(quality, dict):
        return "–"
    if record.get("modality") == "video":  # its face track's and soundtrack's figures (the provenance is drawn)
        return "; ".join(f"{part}: " + (", ".join(f"{k} {_text(v)}" for k, v in figures.items() if k != "video")
                                        if isinstance(figures, dict) else "none")
                         for part, figures in quality.items())
    return ", ".join(f"{key} {'–' if value is None else value}" for key, value in quality.items())


def _conditions(record: dict) -> str:
    """Each trial's condition match: the questioned item's condition and the references' (or why not matched)."""
    from fvmatch.analysis.matching import describe_condition

    trials = [trial for trial in record.get("trials") or [] if isinstance(trial, dict)]
    return "; ".join(f"{_text(trial.get('trial_type'))}: {describe_condition(trial.get('condition'))}"
                     for trial in trials if isinstance(trial.get("condition"), dict)) or "–"


def _query(record: dict, anchor: str, faces: _CandidateFaces, calibration: dict) -> dict:
    """What a query's detail article shows (templates/sections.html.j2, query_article)."""
    from fvmatch.case_report.pictures import query_picture
    from fvmatch.case_report.score_plots import score_plot

    timing = record.get("timing_ms")
    query = {"record": record, "anchor": anchor, "quality": _quality(record), "conditions": _conditions(record),
             "timing": timing if isinstance(timing, dict) else None}
    if record["status"] != "ok":
        return query
    unjudged = dict.fromkeys(f"{c.get('space', 'joint')} {c.get('trial_type')}"
                             for c in record.get("candidates") or [] if c.get("log10_lr") is None)
    return query | {"picture": query_picture(record), "plot": score_plot(record, calibration)[0],
                    "unjudged": " and ".join(unjudged),
                    "candidates": [_candidate(candidate, faces) for candidate in record.get("candidates") or []]}


def _candidate(candidate: dict, faces: _CandidateFaces) -> dict:
    """A candidate's row: its face, its sex reading (for sex evidence: shown instead of a score) and matched file."""
    reading = (candidate.get("readings") or {}).get(candidate.get("matched_modality"))
    source = candidate.get("source_path")
    return {"candidate": candidate, "face": _face_cell(candidate, faces), "source": source,
            "reading": reading if candidate.get("space") == "sex" and isinstance(reading, dict) else None,
            "source_name": Path(str(source)).name if source else "–"}


@dataclass(frozen=True)
class _CandidateFaces:
    """The faces the candidates' rows show: thumbnails by media id (pictures.EnrolledFace), their CSS classes, each
    identity's best face (for a candidate matched by a voice) and the identities no longer in the gallery."""

    faces: dict
    classes: dict
    best: dict
    gone: set


def _face_of(candidate: dict, best: dict) -> int | None:
    """The face a candidate's row shows: the matched item where it is a face, else the identity's best face."""
    if candidate.get("matched_modality") == "face" and isinstance(candidate.get("media_id"), int):
        return candidate["media_id"]
    return best.get(candidate["identity"])


def _face_cell(candidate: dict, shown: _CandidateFaces) -> dict:
    """The face cell of a candidate's row (templates/sections.html.j2, face_cell): which kind, and its texts."""
    label = candidate["identity"]
    matched = candidate.get("matched_modality") == "face" and isinstance(candidate.get("media_id"), int)
    media_id = _face_of(candidate, shown.best)
    face = shown.faces.get(media_id)
    if face is None:
        return {"kind": "none", "note": "no longer in the gallery" if label in shown.gone else "no enrolled face"}
    if matched and face.label is not None and (face.label != label or face.source_path != candidate.get("source_path")):
        return {"kind": "replaced", "media_id": media_id}
    if face.picture.uri is None:
        return {"kind": "unshown", "note": face.picture.note}
    if matched:
        what, caption = f"the matched face of {label}", "matched face"
    else:
        what = f"the enrolled face of {label}, not the matched item (a {candidate.get('matched_modality')})"
        caption = f"enrolled face; the match was a {candidate.get('matched_modality')}"
    return {"kind": "face", "css_class": shown.classes[media_id], "what": what, "note": face.picture.note,
            "caption": caption}


# ----- model, gallery, audit trail --------------------------------------------------------------------------------
CARD_FIELDS = ("model_id", "format", "created", "embedding_dim", "training_data", "notes")


def _card_facts(card: dict) -> list[tuple[str, str, object]]:
    """The joint checkpoint's card as (name, how to show it, value): code, lines (of code), config, text or bdi."""
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    pairs = [(key.replace("_", " "), "code" if key == "model_id" else "bdi", card[key])
             for key in CARD_FIELDS if card.get(key) not in (None, "")]
    if config:
        pairs.append(("config", "config", config))
    recipe = card.get("recipe")
    if isinstance(recipe, list) and recipe:
        pairs.append(("recipe", "lines", recipe))
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    for key, value in training.items():
        if key == "history" and isinstance(value, list):
            pairs.append(("training history", "text", f"{len(value)} validation records (in the card)"))
        elif value not in (None, "", [], {}):
            pairs.append((f"training {key.replace('_', ' ')}", "code",
                          json.dumps(value, ensure_ascii=False, sort_keys=True)))
    if card.get("metrics") not in (None, {}):
        pairs.append(("metrics", "code", json.dumps(card["metrics"], ensure_ascii=False, sort_keys=True)))
    return pairs


def _entry_name(key: str) -> str:
    """A calibration key as the reader knows it: the joint space's entries are keyed by trial type alone."""
    from fvmatch.calibration.scoring import TRIAL_TYPES

    return f"joint {key}" if key.split(" @")[0] in TRIAL_TYPES else key


def _calibration_rows(calibration: dict, uses) -> list[dict]:
    """The calibration scores are judged by (fvmatch.evidence.rules.effective_calibration): one row per entry, the shown
    (space, trial type) first, with its use; an entry None for a shown one that has no calibration."""
    from fvmatch.calibration.scoring import calibration_key

    entries = {key: value for key, value in calibration.items() if isinstance(value, dict) and "map" in value}
    shown = {calibration_key(use.space, use.trial_type): use for use in uses}
    return [{"name": _entry_name(key), "entry": entries.get(key), "use": shown.get(key)}
            for key in [*sorted(shown), *sorted(set(entries) - set(shown))]]
