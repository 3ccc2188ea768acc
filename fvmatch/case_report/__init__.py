"""`fvmatch report`: one self-contained HTML file for one query or one audit run, for an analyst to read and file.

    results.py   an audit's JSON-lines results read back (read-only) and checked against the gallery's trail
    pictures.py  the report's pictures as data: URIs: the faces that matched, the query
    score_plots.py  the score plots: candidates among their calibration's score distributions
    spaces.py    what the scores shown rest on: per space used, its model, what it is, the calibration that judged it
    page.py      the page itself: every value from the data escaped, a CSP that forbids anything external
    output.py    the page written: checked before the work, then atomically, readable by its owner only

A report never loads anything: every picture is inline, and its Content-Security-Policy forbids scripts and any
external resource, so it looks the same on a machine without network and cannot call home. Evidence files are
shown only while they still match the sha256 recorded when they were used; otherwise the report says so.
"""
from __future__ import annotations

from fvmatch.case_report.output import check_out, write_report
from fvmatch.case_report.page import render_report
from fvmatch.case_report.results import (Results, answer_summary, calibration_findings, check_model, read_results,
                                         run_rows, select_details)

__all__ = ["Results", "answer_summary", "calibration_findings", "check_model", "check_out", "read_results",
           "render_report", "run_rows", "select_details", "write_report"]
