"""One table of a run, written four ways: CSV (for programs), Markdown, LaTeX and HTML (for people).

A :class:`Table` holds raw values; each format renders them. A value that was not computed is
empty in the CSV and a dash (:data:`MISSING_MARK`) elsewhere, never a number, and the reason is in
the table's notes. Every string from the data (item ids, errors) is escaped for the format it goes
into, so an item id with an underscore or an error with a ``|`` or ``<`` cannot break a table.
"""

from __future__ import annotations

import html
import io
import math
import numbers
import re
from dataclasses import dataclass, field

import pandas as pd

from align4d_core.io import storage

MISSING_MARK = {"markdown": "—", "latex": "---", "html": "—"}
"""What a missing value shows as in each human format (the CSV cell is empty)."""

BETTER = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "": ""}


@dataclass(frozen=True)
class Column:
    """A column: its key in the frame, its label, how numbers print, and which way is better."""

    key: str
    label: str
    fmt: str = ""  # a format spec for numbers, e.g. ".3f"; "" prints them as they are
    better: str = ""  # "↑", "↓" or ""

    def header(self, kind: str) -> str:
        if kind == "latex":
            return latex_escape(self.label) + (f" {BETTER[self.better]}" if self.better else "")
        text = f"{self.label} {self.better}".strip()
        return html.escape(text) if kind == "html" else markdown_escape(text)


@dataclass
class Table:
    """A named table (``tables/<name>.csv|md|tex``) with a title and notes that say what it rests on."""

    name: str
    title: str
    frame: pd.DataFrame  # raw values; its columns include every Column.key
    columns: list[Column]
    notes: list[str] = field(default_factory=list)  # what only this table rests on
    csv_frame: pd.DataFrame | None = None  # what the CSV holds, when it has more than the display
    shared_notes: list[str] = field(default_factory=list)  # what every table of the run rests on
    # (backend, protocol, missing metrics): in each file of the table, once on a page of tables

    def all_notes(self, shared: bool = True) -> list[str]:
        return (self.shared_notes if shared else []) + self.notes

    def cell(self, column: Column, value, kind: str) -> str:
        if is_missing(value):
            return MISSING_MARK[kind]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            text = " ".join(str(value).split())  # one line per cell
            return {"latex": latex_escape, "html": html.escape, "markdown": markdown_escape}[kind](text)
        if column.fmt == "d":
            return str(int(value))
        return format(float(value), column.fmt) if column.fmt else str(value)

    def cells(self, kind: str) -> list[list[str]]:
        return [[self.cell(c, row[c.key], kind) for c in self.columns] for _, row in self.frame.iterrows()]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        frame = self.csv_frame if self.csv_frame is not None else self.frame[[c.key for c in self.columns]]
        frame.to_csv(buffer, index=False, float_format="%.10g")
        return buffer.getvalue()

    def to_markdown(self, level: int = 2, shared: bool = True) -> str:
        headers = [c.header("markdown") for c in self.columns]
        body = pd.DataFrame(self.cells("markdown"), columns=headers)
        lines = [f"{'#' * level} {markdown_escape(self.title)}", ""]
        if len(body):
            align = ["right" if c.fmt else "left" for c in self.columns]
            lines.append(body.to_markdown(index=False, disable_numparse=True, colalign=align))
        else:
            lines.append("(no rows)")
        lines += [""] + [f"- {markdown_escape(note)}" for note in self.all_notes(shared)]
        return "\n".join(lines).rstrip() + "\n"

    def to_latex(self) -> str:
        """A ``table`` float with booktabs rules; the notes follow the tabular in small type."""
        headers = [c.header("latex") for c in self.columns]
        body = pd.DataFrame(self.cells("latex") or [[""] * len(headers)], columns=headers)
        align = "".join("r" if c.fmt else "l" for c in self.columns)
        tabular = body.style.hide(axis="index").to_latex(hrules=True, column_format=align)
        if not len(self.frame):
            tabular = tabular.replace("\\midrule\n" + " & " * (len(headers) - 1) + " \\\\\n", "\\midrule\n")
        notes = "".join(f"{latex_escape(note)}\\\\\n" for note in self.all_notes())
        return (
            "% written by align4d; needs \\usepackage{booktabs}\n"
            "\\begin{table}[t]\n\\centering\n"
            f"\\caption{{{latex_escape(self.title)}}}\n\\label{{tab:align4d-{self.name}}}\n"
            f"{tabular}" + (f"\\par\\smallskip\n{{\\footnotesize\n{notes}}}\n" if notes else "") + "\\end{table}\n"
        )

    def to_html(self, shared: bool = True) -> str:
        """A ``<table>`` with its title as caption, then its notes; every data string escaped."""
        head = "".join(f"<th>{h}</th>" for h in (c.header("html") for c in self.columns))
        rows = []
        for cells in self.cells("html"):
            tds = "".join(
                f'<td class="{"num" if c.fmt else "txt"}{" missing" if v == MISSING_MARK["html"] else ""}">{v}</td>'
                for c, v in zip(self.columns, cells)
            )
            rows.append(f"<tr>{tds}</tr>")
        if not rows:
            rows.append(f'<tr><td colspan="{len(self.columns)}" class="missing">no rows</td></tr>')
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.all_notes(shared))
        return (
            f'<table id="table-{html.escape(self.name)}" data-table="{html.escape(self.name)}">'
            f"<caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>" + (f'<ul class="notes">{notes}</ul>' if notes else "")
        )

    def write(self, folder: str) -> dict[str, str]:
        """``<folder>/<name>.csv``, ``.md`` and ``.tex``; returns their URIs by format."""
        uris = {}
        for suffix, text in (("csv", self.to_csv()), ("md", self.to_markdown()), ("tex", self.to_latex())):
            uris[suffix] = storage.join(folder, f"{self.name}.{suffix}")
            storage.write_text(uris[suffix], text)
        return uris


def is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "—": "---",
    "–": "--",
    "−": "-",
    "…": r"\ldots{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "τ": r"$\tau$",
    "°": r"$^\circ$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX))


def latex_escape(text: str) -> str:
    """Text that LaTeX prints as written (its special characters, and a few Unicode symbols)."""
    return _LATEX_RE.sub(lambda m: _LATEX[m.group(0)], str(text))


def markdown_escape(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no column breaks, no inline HTML."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
