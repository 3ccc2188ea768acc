"""The report page: one HTML file, every picture inline, every value from the data escaped, nothing external.

Text from the data (identity labels, query ids, paths, errors) is HTML-escaped and wrapped in <bdi>, so a
right-to-left label cannot reorder the text around it; invisible and direction-changing characters are shown as
their code points (U+202E) rather than obeyed, since in a forensic report what a label really holds must be
visible. The Content-Security-Policy forbids scripts and every external resource: the page works offline and
cannot call home even if a value slipped through unescaped.
"""
from __future__ import annotations

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
# control and format characters (bidi overrides and isolates, zero-width ones, BOM) and lone surrogates
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069"
                        "\ufeff\ud800-\udfff]")

STYLE = """
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d5dbe1; --ok: #1f7a4d; --bad: #b3261e; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1180px; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem;
     border-bottom: 2px solid var(--ink); padding-bottom: .2rem; } h3 { font-size: 1.05rem; margin: 0 0 .5rem; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .86em;
              overflow-wrap: anywhere; }
.muted { color: var(--muted); } .small { font-size: .85em; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: #f2f4f6; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fdf1f0; }
.status-ok { color: var(--ok); font-weight: 600; } .status-failed { color: var(--bad); font-weight: 600; }
.error { color: var(--bad); } .warning { color: var(--warn); }
.banner { border-left: 5px solid var(--warn); background: #fff7e6; padding: .5rem .8rem; margin: .6rem 0; }
.banner.bad { border-color: var(--bad); background: #fdf1f0; }
.banner.good { border-color: var(--ok); background: #eef8f2; }
ul.findings { margin: .3rem 0; padding-left: 1.2rem; }
article.query { border: 1px solid var(--line); border-radius: 6px; padding: 1rem 1.2rem; margin: 1rem 0; }
article.query.failed { border-color: var(--bad); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .3rem 0 .8rem; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: .6rem 0 1rem; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85em; margin-top: .2rem; max-width: 760px; }
.face { display: inline-block; width: 64px; height: 64px; background: #eee center / cover no-repeat;
        border-radius: 4px; border: 1px solid var(--line); }
.noface { display: inline-block; max-width: 220px; font-size: .78em; color: var(--bad); overflow-wrap: anywhere; }
.noface.plain { color: var(--muted); }
.facecap { display: block; font-size: .72em; color: var(--muted); max-width: 110px; line-height: 1.2; }
.cc { font: .75em ui-monospace, monospace; background: #ffe9a8; color: #000; border-radius: 2px; padding: 0 .15em; }
details > summary { cursor: pointer; color: var(--muted); }
details { margin-bottom: 1rem; } td.space { white-space: nowrap; } table.calibration th { white-space: normal; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: .5rem; font-size: .8em;
      max-height: 30rem; overflow: auto; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85em; }
@media print { article.query { break-inside: avoid; } nav { display: none; } }
"""


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
    return esc(text)


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escape them before)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(name)}</dt><dd>{value}</dd>" for name, value in pairs) + "</dl>"


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
    from fvmatch.audit import verify_chain
    from fvmatch.case_report.pictures import best_faces, enrolled_faces
    from fvmatch.case_report.spaces import spaces_used
    from fvmatch.evidence import effective_calibration

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
    calibration = effective_calibration(card)
    uses = spaces_used(records, detailed)
    chain = verify_chain(gallery)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ok = sum(record["status"] == "ok" for record in records)
    title = (f"fvmatch report: audit run, {len(records)} queries" if kind == "audit run"
             else f"fvmatch report: {records[0].get('modality', '')} query {records[0]['query_id']}")

    face_css = "".join(f'.{face_class[media_id]}{{background-image:url("{faces[media_id].picture.uri}")}}\n'
                       for media_id in face_class)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{attr(title)}</title>", f"<style>{STYLE}{face_css}</style>", "</head>", "<body>",
        "<header>", f"<h1>{esc(title)}</h1>",
        _facts([
            ("generated", f"{esc(generated)} by fvmatch {esc(_version())}"),
            ("command", f"<code>{esc(' '.join(['fvmatch', *arguments]))}</code>"),
            (source.get("label", "source"), f"<code>{bdi(source.get('path'))}</code>"),
            ("its sha256", f"<code>{esc(source.get('sha256'))}</code>"),
            ("queries", f"{len(records)}: <span class='status-ok'>{ok} answered</span>, "
                        f"<span class='status-failed'>{len(records) - ok} failed</span>; {len(detailed)} in detail"),
            ("gallery", f"<code>{bdi(gallery.directory)}</code>, pinned to the joint checkpoint "
                        f"<code>{esc(card.get('model_id'))}</code>"),
            ("scores shown", _uses_summary(uses)),
        ]),
        _banners(card, uses, chain, findings),
        '<nav><a href="#summary">Queries</a><a href="#details">Details</a><a href="#model">Spaces and models</a>'
        '<a href="#gallery">Gallery</a><a href="#audit">Audit trail</a></nav>',
        "</header>",
        _summary(records, anchors, {id(r) for r in detailed}, verdicts),
        '<section id="details">', f"<h2>Details ({len(detailed)} of {len(records)} queries)</h2>",
    ]
    if not detailed:
        parts.append('<p class="muted">No query is shown in detail (none answered, or --detail-limit 0).</p>')
    for record in detailed:
        parts.append(_detail(record, anchors[id(record)], _CandidateFaces(faces, face_class, best, gone), calibration))
    parts += ["</section>", _model_section(card, uses, calibration), _gallery_section(gallery, labels),
              _audit_section(audit_rows, chain, kind),
              _footer(gallery), "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _footer(gallery) -> str:
    where = ("the audit log given with <code>--audit-log</code> (the gallery is read-only)"
             if getattr(gallery, "read_only", None) else "the gallery's audit trail")
    return ("<footer>Self-contained: every picture is inline and the page loads nothing. fvmatch appends this "
            f"file's sha256 to {where} (command <code>report</code>) once it is written; check it with "
            "<code>sha256sum</code> and <code>fvmatch audit log --command report</code>.</footer>")


def _version() -> str:
    from fvmatch import __version__

    return __version__


def _uses_summary(uses) -> str:
    """Per (space, trial type) shown: how many scores, the space's model id and what judged them."""
    if not uses:
        return '<span class="muted">none</span>'
    lines = []
    for use in uses:
        models = ", ".join(f"<code>{esc(model_id[:16])}</code>" for model_id in use.model_ids) or "no model id"
        judged = [f"{use.shown - use.uncalibrated} calibrated by " + "; ".join(bdi(c) for c in use.calibrations)
                  ] if use.calibrations else []
        if use.uncalibrated:
            judged.append(f'<span class="warning">{use.uncalibrated} uncalibrated</span>')
        lines.append(f"{esc(use.trial_type)} in <strong>{esc(use.space)}</strong> ({models}): {use.shown} "
                     f"{'score' if use.shown == 1 else 'scores'}, {', '.join(judged)}")
    return "<br>".join(lines) + ' <a class="small" href="#model">(what each space is)</a>'


def _banners(card: dict, uses, chain, findings: Sequence[str]) -> str:
    """What the reader must know first: a shown score of a synthetic-trained joint space, shown scores that no
    calibration judged (naming their spaces), the audit trail's state, the findings."""
    from fvmatch.evidence import joint_trained_on_synthetic
    from fvmatch.spaces import JOINT

    items = []
    joint = [use for use in uses if use.space == JOINT]
    if joint and joint_trained_on_synthetic(card):
        count = sum(use.shown for use in joint)
        warnings = sorted({warning for use in joint for warning in use.warnings})
        items.append(f'<div class="banner bad"><strong>Synthetic-trained joint space.</strong> {count} '
                     f"{' and '.join(esc(use.name) for use in joint)} {'score' if count == 1 else 'scores'} shown "
                     f"here come from the joint checkpoint <code>{esc(str(card.get('model_id'))[:16])}</code>, "
                     f"trained on {bdi(card.get('training_data'))}: they carry no weight on real people."
                     + "".join(f"<br>{esc(warning)}" for warning in warnings) + "</div>")
    uncalibrated = [use for use in uses if use.uncalibrated]
    if uncalibrated:
        which = "; ".join(f"{'the' if use.uncalibrated == use.shown else f'{use.uncalibrated} of the'} {use.shown} "
                          f"<strong>{esc(use.name)}</strong> {'score' if use.shown == 1 else 'scores'}"
                          for use in uncalibrated)
        items.append(f'<div class="banner"><strong>Uncalibrated:</strong> {which} shown here '
                     f"{'has' if sum(u.uncalibrated for u in uncalibrated) == 1 else 'have'} no calibration (no "
                     "reference calibration of fvmatch and none of the model card applies): cosine similarities "
                     "only, with no likelihood ratio and no decision. Calibrate on labelled data of the case type "
                     "(<code>fvmatch calibrate</code>) before reading them as evidence.</div>")
    if chain.ok:
        items.append(f'<div class="banner good">Audit trail intact: {chain.rows} rows, hash chain verified.</div>')
    else:
        items.append(f'<div class="banner bad"><strong>Audit trail broken:</strong> {esc(chain.problem)}</div>')
    if findings:
        items.append('<div class="banner"><strong>Findings</strong><ul class="findings">'
                     + "".join(f'<li class="{"warning" if f.startswith("WARNING") else ""}">{esc(f)}</li>'
                               for f in findings) + "</ul></div>")
    return "\n".join(items)


def _top(record: dict) -> dict:
    candidates = record.get("candidates") or []
    return candidates[0] if candidates else {}


def _score_cell(candidate: dict) -> str:
    """A candidate's score; for sex evidence the matched item's reading (its LR is in its own column)."""
    reading = (candidate.get("readings") or {}).get(candidate.get("matched_modality"))
    if candidate.get("space") == "sex" and isinstance(reading, dict):
        return f"{esc(reading.get('sex'))} {_number(reading.get('probability'), '.2f')}"
    return _number(candidate.get("score"), ".4f")


def _decision(record: dict, judgement: dict | None = None) -> str:
    decision = (judgement or record).get("decision")
    if decision is None and (judgement or {}).get("space") == "sex":
        return '<span class="muted">none (sex alone never decides)</span>'
    if decision is None:
        return '<span class="muted">none (uncalibrated)</span>'
    return f'<span class="{"status-ok" if decision == "same person" else ""}">{esc(decision)}</span>'


def _summary(records: Sequence[dict], anchors: dict, detailed: set, verdicts: Sequence[str | None] | None) -> str:
    head = ["#", "query id", "line", "modality", "task", "status", "top candidate", "score", "scored in", "log10 LR",
            "decision"]
    if verdicts is not None:
        head.append("audit trail")
    rows = []
    for number, record in enumerate(records, start=1):
        query_id = bdi(record["query_id"]) if record["query_id"] else '<span class="muted">(empty)</span>'
        if id(record) in detailed:
            query_id = f'<a href="#{anchors[id(record)]}">{query_id}</a>'
        task = esc(record.get("task"))
        if record.get("claimed_identity"):
            task += f" claim {bdi(record['claimed_identity'])}"
        cells = [f'<td class="num">{number}</td>', f"<td>{query_id}</td>",
                 f'<td class="num">{esc(record["line"] or "–")}</td>',
                 f"<td>{bdi(record.get('modality'))}</td>", f"<td>{task}</td>",
                 f'<td class="status-{esc(record["status"])}">{esc(record["status"])}</td>']
        if record["status"] == "ok":
            top = _top(record)
            cells += [f'<td class="identity">{bdi(top.get("identity", "–"))}</td>',
                      f'<td class="num">{_number(top.get("score"), ".4f")}</td>',
                      f"<td class='small'>{esc(top.get('trial_type', '–'))} ({esc(top.get('space', 'joint'))})</td>",
                      f'<td class="num">{_number(top.get("log10_lr"), "+.2f")}</td>', f"<td>{_decision(record)}</td>"]
        else:
            cells.append(f'<td colspan="5" class="error">{_error(record)}</td>')
        if verdicts is not None:
            verdict = verdicts[number - 1]
            css = "error" if verdict and verdict.startswith("differs") else "muted"
            cells.append(f'<td class="{css} small">{esc(verdict or "–")}</td>')
        rows.append(f'<tr class="{esc(record["status"])}">' + "".join(cells) + "</tr>")
    return ('<section id="summary"><h2>Queries</h2><table class="summary"><thead><tr>'
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>\n" + "\n".join(rows)
            + "</tbody></table></section>")


def _error(record: dict) -> str:
    kind = f' <span class="muted small">({esc(record["error_kind"])})</span>' if record.get("error_kind") else ""
    return f"{bdi(record.get('error'))}{kind}"


def _quality(record: dict) -> str:
    quality = record.get("quality")
    if not isinstance(quality, dict):
        return "–"
    if record.get("modality") == "video":  # its face track's and soundtrack's figures (the provenance is drawn)
        return "; ".join(f"{esc(part)}: " + (", ".join(f"{esc(k)} {esc(v)}" for k, v in figures.items() if k != "video")
                                             if isinstance(figures, dict) else "none")
                         for part, figures in quality.items())
    return ", ".join(f"{esc(key)} {esc('–' if value is None else value)}" for key, value in quality.items())


def _conditions(record: dict) -> str:
    """Each trial's condition match: the questioned item's condition and the references' (or why not matched)."""
    from fvmatch.matching import describe_condition

    trials = [trial for trial in record.get("trials") or [] if isinstance(trial, dict)]
    return "; ".join(f"{esc(trial.get('trial_type'))}: {esc(describe_condition(trial.get('condition')))}"
                     for trial in trials if isinstance(trial.get("condition"), dict)) or "–"


def _detail(record: dict, anchor: str, faces: _CandidateFaces, calibration: dict) -> str:
    from fvmatch.case_report.pictures import query_picture
    from fvmatch.case_report.score_plots import score_plot

    status = record["status"]
    task = esc(record.get("task"))
    if record.get("claimed_identity"):
        task += f" the claim {bdi(record['claimed_identity'])}"
    parts = [f'<article class="query {esc(status)}" id="{anchor}">',
             f"<h3>Query {bdi(record['query_id'])} <span class='muted'>({bdi(record.get('modality'))}, {task})"
             f"</span> <span class='status-{esc(status)}'>{esc(status)}</span></h3>"]
    timing = record.get("timing_ms")
    parts.append(_facts([
        ("file (as listed)", f"<code>{bdi(record.get('path'))}</code>"),
        ("resolved", f"<code>{bdi(record.get('resolved_path'))}</code>"),
        ("sha256", f"<code>{esc(record.get('sha256') or '–')}</code> ({_number(record.get('size'), ',')} bytes)"),
        ("quality", _quality(record)),
        ("searched", esc(" + ".join(record.get("against") or []) or "–")),
        ("condition", _conditions(record)),
        ("answered", f"{esc(record.get('answered_at'))}, run <code>{esc(record.get('run_id'))}</code>"
                     + (f", embed {esc(timing.get('embed'))} ms, search {esc(timing.get('search'))} ms"
                        if isinstance(timing, dict) else "")),
        ("origin", bdi(record.get("origin"))),
    ]))
    if status != "ok":
        parts.append(f'<p class="error"><strong>Failed:</strong> {_error(record)}</p></article>')
        return "\n".join(parts)
    picture = query_picture(record)
    parts.append(_figure(picture, "the query"))
    parts.append(_candidates(record, faces))
    decision = record.get("decision")
    if decision is None:
        unjudged = dict.fromkeys(f"{c.get('space', 'joint')} {c.get('trial_type')}"
                                 for c in record.get("candidates") or [] if c.get("log10_lr") is None)
        parts.append(f"<p><strong>Decision:</strong> none. No calibration judged the scores of "
                     f"{' and '.join(esc(name) for name in unjudged) or 'the candidates'}, so they carry no "
                     "likelihood ratio and no decision.</p>")
    else:
        fmr = (record.get("calibration") or {}).get("fmr")
        matches = ", ".join(bdi(m) for m in record.get("matches") or []) or "none"
        parts.append(f"<p><strong>Decision at {_number(fmr, '.1%')} false-match rate:</strong> {esc(decision)} "
                     f"(candidates above the threshold: {matches}).</p>")
    notes = record.get("notes") or []
    if notes:
        parts.append('<ul class="small muted">' + "".join(f"<li>{esc(note)}</li>" for note in notes) + "</ul>")
    plot, _ = score_plot(record, calibration)
    parts.append(_figure(plot, "where the scores fall"))
    parts.append("</article>")
    return "\n".join(parts)


def _figure(picture, alternative: str) -> str:
    if picture.uri is None:
        return f'<p class="error small">{esc(picture.note)}</p>'
    return (f'<figure><img src="{picture.uri}" alt="{attr(alternative)}">'
            f"<figcaption>{esc(picture.note)}</figcaption></figure>")


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


def _face_cell(candidate: dict, shown: _CandidateFaces) -> str:
    label = candidate["identity"]
    matched = candidate.get("matched_modality") == "face" and isinstance(candidate.get("media_id"), int)
    media_id = _face_of(candidate, shown.best)
    face = shown.faces.get(media_id)
    if face is None:
        note = "no longer in the gallery" if label in shown.gone else "no enrolled face"
        return f'<span class="noface plain">{esc(note)}</span>'
    if matched and face.label is not None and (face.label != label or face.source_path != candidate.get("source_path")):
        return (f'<span class="noface">the matched face #{esc(media_id)} not shown: the gallery now holds another '
                "item under that id</span>")
    if face.picture.uri is None:
        return f'<span class="noface">{esc(face.picture.note)}</span>'
    if matched:
        what, caption = f"the matched face of {label}", "matched face"
    else:
        what = f"the enrolled face of {label}, not the matched item (a {candidate.get('matched_modality')})"
        caption = f"enrolled face; the match was a {esc(candidate.get('matched_modality'))}"
    return (f'<span class="face {shown.classes[media_id]}" role="img" aria-label="{attr(what)}" '
            f'title="{attr(face.picture.note)}"></span><span class="facecap">{caption}</span>')


def _candidates(record: dict, faces: _CandidateFaces) -> str:
    head = ("rank", "face", "identity", "score", "trial type (space)", "log10 LR", "verbal", "decision",
            "matched item")
    rows = []
    for candidate in record.get("candidates") or []:
        label = candidate["identity"]
        source = candidate.get("source_path")
        matched = (f"{esc(candidate.get('matched_modality'))} #{esc(candidate.get('media_id'))}: "
                   f'<code title="{attr(source)}">{bdi(Path(str(source)).name if source else "–")}</code>')
        rows.append("<tr>" + "".join([
            f'<td class="num">{esc(candidate.get("rank"))}</td>', f"<td>{_face_cell(candidate, faces)}</td>",
            f'<td class="identity">{bdi(label)}</td>', f'<td class="num">{_score_cell(candidate)}</td>',
            f"<td>{esc(candidate['query']) + ': ' if candidate.get('query') else ''}"
            f"{esc(candidate.get('trial_type'))} <span class='small'>({esc(candidate.get('space', 'joint'))}"
            f"{' ' + esc(str(candidate['space_model_id'])[:16]) if candidate.get('space_model_id') else ''})</span></td>",
            f'<td class="num">{_number(candidate.get("log10_lr"), "+.2f")}</td>',
            f"<td class='small'>{esc(candidate.get('verbal') or '–')}</td>",
            f"<td>{_decision(record, candidate)}</td>", f"<td class='small'>{matched}</td>"]) + "</tr>")
    if not rows:
        return '<p class="muted">No candidates.</p>'
    return ('<table class="candidates"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


# ----- model, gallery, audit trail --------------------------------------------------------------------------------
CARD_FIELDS = ("model_id", "format", "created", "embedding_dim", "training_data", "notes")


def _model_section(card: dict, uses, calibration: dict) -> str:
    """Each space a shown score came from (its model, what it is, the calibration that judged it), the joint
    checkpoint's card, and the calibration scores are judged by."""
    from fvmatch.case_report.spaces import describe_space
    from fvmatch.spaces import JOINT

    parts = ['<section id="model"><h2>Spaces and models</h2>']
    if uses:
        rows = []
        for use in uses:
            judged = [bdi(c) for c in use.calibrations]
            if use.uncalibrated:
                judged.append('<span class="warning">none</span>' if use.uncalibrated == use.shown
                              else f'<span class="warning">none for {use.uncalibrated} of them</span>')
            rows.append("<tr>" + "".join([
                f"<td class='space'><strong>{esc(use.space)}</strong></td>", f"<td>{esc(use.trial_type)}</td>",
                f"<td>{bdi(describe_space(use.space, card))}</td>",
                "<td class='small'>" + "<br>".join(f"<code>{esc(m)}</code>" for m in use.model_ids) + "</td>",
                f"<td class='num'>{use.shown}</td>", f"<td class='small'>{'<br>'.join(judged)}</td>"]) + "</tr>")
        parts.append("<p>The spaces that scored the results shown here, each with its own model:</p><table "
                     "class='spaces'><thead><tr><th>space</th><th>trial type</th><th>what it is</th><th>model id</th>"
                     "<th>scores shown</th><th>calibration used</th></tr></thead><tbody>" + "".join(rows)
                     + "</tbody></table>")
    else:
        parts.append('<p class="muted">No score is shown.</p>')
    joint_used = any(use.space == JOINT for use in uses)
    facts = _facts(_card_facts(card))
    if joint_used:
        parts.append("<h3>The joint checkpoint</h3><p>It scored the joint scores shown, and the gallery is pinned "
                     f"to it.</p>{facts}")
    else:
        parts.append("<h3>The joint checkpoint</h3><p>The gallery is pinned to it; no score shown here came from it."
                     f"</p><details><summary>its model card</summary>{facts}</details>")
    parts.append("<h3>Calibration</h3>" + _calibration(calibration, uses) + "</section>")
    return "".join(parts)


def _card_facts(card: dict) -> list[tuple[str, str]]:
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    pairs = [(key.replace("_", " "), f"<code>{esc(card[key])}</code>" if key == "model_id" else bdi(card[key]))
             for key in CARD_FIELDS if card.get(key) not in (None, "")]
    if config:
        pairs.append(("config", f"<strong>{bdi(config.get('name'))}</strong>: {bdi(config.get('description', ''))}"
                                f"<br><code>{esc(json.dumps(config, ensure_ascii=False, sort_keys=True))}</code>"))
    recipe = card.get("recipe")
    if isinstance(recipe, list) and recipe:
        pairs.append(("recipe", "<br>".join(f"<code>{esc(line)}</code>" for line in recipe)))
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    for key, value in training.items():
        if key == "history" and isinstance(value, list):
            pairs.append(("training history", f"{len(value)} validation records (in the card)"))
        elif value not in (None, "", [], {}):
            pairs.append((f"training {key.replace('_', ' ')}",
                          f"<code>{esc(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"))
    if card.get("metrics") not in (None, {}):
        metrics = json.dumps(card["metrics"], ensure_ascii=False, sort_keys=True)
        pairs.append(("metrics", f"<code>{esc(metrics)}</code>"))
    return pairs


def _entry_name(key: str) -> str:
    """A calibration key as the reader knows it: the joint space's entries are keyed by trial type alone."""
    from fvmatch.scoring import TRIAL_TYPES

    return f"joint {key}" if key.split(" @")[0] in TRIAL_TYPES else key


def _calibration(calibration: dict, uses) -> str:
    """The calibration scores are judged by (fvmatch.evidence.effective_calibration): one row per entry, where it
    comes from, and a row saying so for each (space, trial type) shown that has none."""
    from fvmatch.scoring import calibration_key

    entries = {key: value for key, value in calibration.items() if isinstance(value, dict) and "map" in value}
    shown = {calibration_key(use.space, use.trial_type): use for use in uses}
    intro = ("<p>Scores are judged by fvmatch's reference calibrations (fitted on named public real data) and the "
             "model card's own (<code>fvmatch calibrate</code>, case-relevant data), which supersede a reference entry "
             "of the same space and trial type. Each row: a logistic-regression map from score to log10 LR, bounded "
             "by what its trials support.</p>")
    if not entries and not shown:
        return ("<p><strong>No calibration.</strong> Neither fvmatch's reference calibration nor this model card "
                "holds one: scores have no likelihood ratios, no thresholds and no decisions.</p>")
    rows = []
    for key in [*sorted(shown), *sorted(set(entries) - set(shown))]:
        name = esc(_entry_name(key)) + (f"<br><span class='small muted'>{shown[key].shown} shown</span>"
                                         if key in shown else "")
        entry = entries.get(key)
        if entry is not None and key in shown and shown[key].uncalibrated:  # e.g. made with another model
            name += (f"<br><span class='small warning'>not applied to {shown[key].uncalibrated} of them (their notes "
                     "say why)</span>")
        if entry is None:
            rows.append(f"<tr><td>{name}</td><td colspan='7' class='warning'>not calibrated: its scores have no "
                        "likelihood ratio and no decision</td></tr>")
            continue
        trials = entry.get("trials") or {}
        points = "; ".join(f"{_number(p.get('fmr_target'), '.1%')}: score &gt; {_number(p.get('threshold'), '.4f')}"
                           f" (FNMR {_number(p.get('fnmr'), '.1%')})" for p in entry.get("operating_points") or [])
        eer = entry.get("eer") or {}
        bounds = (entry.get("map") or {}).get("bounds") or []
        rows.append("<tr>" + "".join([
            f"<td>{name}</td>", f"<td class='small'>{_entry_source(entry, calibration)}</td>",
            f"<td class='num'>{_number(trials.get('same'), ',')} / {_number(trials.get('different'), ',')}"
            f" / {_number(trials.get('identities'), ',')}</td>",
            f"<td class='num'>{_number(eer.get('value'), '.2%')} at {_number(eer.get('threshold'), '.4f')}</td>",
            f"<td class='num'>{_number(entry.get('cllr'), '.4f')}</td>",
            f"<td class='num'>{_number(entry.get('cllr_min'), '.4f')}</td>",
            f"<td>{points or '–'}</td>",
            f"<td class='num'>{', '.join(_number(b, '+.2f') for b in bounds)}</td>",
        ]) + "</tr>")
    return (intro + "<table class='calibration'><thead><tr><th>space and trial type</th><th>calibration</th>"
            "<th>trials same / different / people</th><th>EER</th><th>Cllr</th><th>Cllr min</th>"
            "<th>operating points</th><th>log10 LR bounds</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _entry_source(entry: dict, calibration: dict) -> str:
    """Where a calibration entry comes from: fvmatch's reference (its data), or the model card (data, split, date)."""
    if entry.get("reference"):
        return f"reference: {bdi(entry.get('data') or 'data not stated')}"
    source = ", ".join(f"{key} {bdi(value)}" if key != "data" else bdi(value) for key in ("data", "split", "created")
                       if (value := entry.get(key, calibration.get(key))) is not None)
    return f"model card: {source or 'source not stated'}"


def _gallery_section(gallery, labels: set) -> str:
    counts = gallery.counts()
    pairs = [("directory", f"<code>{bdi(gallery.directory)}</code>"),
             ("pinned model", f"<code>{esc(gallery.model_id)}</code>"),
             ("model path", f"<code>{bdi(gallery.model_path or '–')}</code>"),
             ("created", esc(gallery.meta("created"))),
             ("format version", esc(gallery.meta("format_version"))),
             ("holds", f"{counts['identities']:,} identities, {counts['face']:,} faces, {counts['voice']:,} voices"),
             ("candidates in detail", f"{len(labels):,} identities")]
    return '<section id="gallery"><h2>Gallery</h2>' + _facts(pairs) + "</section>"


def _audit_section(rows: Sequence[dict], chain, kind: str) -> str:
    verdict = (f'<p class="banner good">Hash chain verified: {chain.rows} rows intact.</p>' if chain.ok
               else f'<p class="banner bad">Hash chain broken: {esc(chain.problem)}</p>')
    what = ("the <code>audit run</code> rows whose runs produced these results" if kind == "audit run"
            else "the row this report appended for its query")
    body = []
    for row in rows:
        inputs = row.get("inputs") or []
        body.append("<tr>" + "".join([
            f"<td class='num'>{esc(row.get('id'))}</td>", f"<td class='small'>{esc(row.get('time'))}</td>",
            f"<td>{bdi(row.get('user'))}</td>", f"<td>{esc(row.get('command'))}</td>",
            f"<td class='small'><code>{esc(' '.join(str(a) for a in row.get('arguments') or []))}</code></td>",
            f"<td class='small'>{len(inputs)} file(s)<details><summary>inputs</summary><pre>{_json(inputs)}</pre>"
            f"</details></td>",
            f"<td class='small'><details><summary>result</summary><pre>{_json(row.get('result'))}</pre></details></td>",
            f"<td class='small'><code title=\"previous {attr(row.get('previous_hash'))}\">"
            f"{esc(str(row.get('row_hash'))[:16])}…</code></td>"]) + "</tr>")
    table = ("<table><thead><tr><th>id</th><th>time (UTC)</th><th>user</th><th>command</th><th>arguments</th>"
             "<th>inputs</th><th>result</th><th>row hash</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>"
             if body else '<p class="muted">No rows.</p>')
    return (f'<section id="audit"><h2>Audit trail</h2>{verdict}<p>Below: {what}. The row recording this report '
            "(its path and sha256) is appended after the file is written, so it cannot be inside it.</p>"
            f"{table}</section>")
