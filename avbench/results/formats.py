"""The leaderboard's boards in every output format: a terminal table, Markdown, CSV, LaTeX, HTML, JSON.

Each format carries the same cells, marks and footnotes (``results.leaderboard``
builds the boards; this module only writes them).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from avbench.errors import ConfigError
from avbench.results.leaderboard import DATASET_TITLES, Board, Cell
from avbench.results.stats import TEST_NAME

FORMATS = ("table", "md", "csv", "tex", "html")


def _fmt(x: float | None, nd: int = 2) -> str:
    return "" if x is None or x != x else f"{x:.{nd}f}"


def _cell_text(c: Cell | None) -> str:
    if c is None:
        return "–"
    spread = f" ± {c.std:.2f}" if c.n > 1 else ""  # one seed: no spread to show
    return f"{c.mean:.2f}{spread} ({c.n}){c.marks}"


def _title(board: Board, d: str) -> str:
    """A dataset's column title, marked § where its cells come from several data versions."""
    return DATASET_TITLES.get(d, d) + (" §" if d in board.mixed_data else "")


def _reported_text(board: Board, m: str, d: str) -> str:
    """The published number, with Δ where comparable and a label where not."""
    rep = board.reported.get((m, d))
    if rep is None:
        return ""
    delta = board.delta(m, d)
    if delta is not None:
        return f"{rep:.2f} ({delta:+.2f})"
    return f"{rep:.2f} (other protocol)" if not board.reported_match.get((m, d)) else f"{rep:.2f}"


def _ci_text(c: Cell | None) -> str:
    return "" if c is None or c.n < 2 else f"[{c.ci_low:.2f}, {c.ci_high:.2f}]"


def _columns(board: Board, with_reported: bool) -> list[tuple[str, str]]:
    """(dataset, sub-column) pairs in display order."""
    subs = ["mean ± std (n)", "95% CI", "rank"]
    if with_reported:
        subs += ["reported", "Δ"]
    return [(d, s) for d in board.datasets for s in subs]


def _value(board: Board, m: str, d: str, sub: str) -> str:
    c = board.cells.get((m, d))
    if sub == "mean ± std (n)":
        return _cell_text(c)
    if sub == "95% CI":
        return _ci_text(c)
    if sub == "rank":
        return "" if c is None else f"{c.rank:g}"
    if sub == "reported":
        rep = board.reported.get((m, d))
        if rep is not None and not board.reported_match.get((m, d)):
            return f"{rep:.2f}*"  # * : another protocol or text order (footnote)
        return _fmt(rep)
    if sub == "Δ":
        delta = board.delta(m, d)
        return "" if delta is None else f"{delta:+.2f}"
    raise KeyError(sub)


def _mean_rank(board: Board, m: str) -> str:
    r = board.mean_rank.get(m)
    return "" if r is None else f"{r:.2f}"


def render_table(boards: list[Board], with_reported: bool = False):
    """rich renderables, one compact table per board (a cell: mean ± std (n), CI and rank)."""
    from rich.table import Table

    out = []
    for b in boards:
        t = Table(title=b.title, caption=b.note, show_lines=True)
        t.add_column("method", style="bold")
        for d in b.datasets:
            t.add_column(_title(b, d), justify="right")
            if with_reported:
                t.add_column("reported (Δ)", justify="right")
        t.add_column("mean rank", justify="right")
        for m in b.methods:
            row = [m]
            for d in b.datasets:
                c = b.cells.get((m, d))
                row.append("–" if c is None else f"{_cell_text(c)}\n{_ci_text(c)} #{c.rank:g}")
                if with_reported:
                    row.append(_reported_text(b, m, d))
            t.add_row(*row, _mean_rank(b, m))
        out.append(t)
    return out


def render_md(boards: list[Board], with_reported: bool = False) -> str:
    parts = []
    for b in boards:
        cols = _columns(b, with_reported)
        head = ["method"] + [f"{_title(b, d)} {s}" for d, s in cols] + ["mean rank"]
        lines = [f"### {b.title}", "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for m in b.methods:
            lines.append("| " + " | ".join([m] + [_value(b, m, d, s) for d, s in cols] + [_mean_rank(b, m)]) + " |")
        lines += ["", f"_{b.note}_", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def render_csv(boards: list[Board], with_reported: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["protocol", "protocol_mode", "features", "text_order", "metric", "method", "dataset", "mean", "std", "n",
            "ci_low", "ci_high", "rank", "mean_rank", "significance", "p_holm", "significance_test", "marks", "entry",
            "config_hash", "data_fingerprint", "code_revisions", "reduced_budget", "machines"]
    if with_reported:
        head += ["reported", "reported_comparable", "delta"]
    w.writerow(head)
    for b in boards:
        for m in b.methods:
            for d in b.datasets:
                c = b.cells.get((m, d))
                if c is None and (m, d) not in b.reported:
                    continue
                row = [b.protocol, b.protocol_mode, b.features, b.text_order, b.metric, m, d]
                row += ["", "", "", "", "", ""] if c is None else [
                    f"{c.mean:.4f}", _fmt(c.std, 4), c.n, _fmt(c.ci_low, 4), _fmt(c.ci_high, 4), f"{c.rank:g}"]
                row.append(_mean_rank(b, m))
                row += [""] * 10 if c is None else [
                    c.significance, "" if c.p_value is None else f"{c.p_value:.4g}", TEST_NAME, c.marks, c.entry,
                    c.config_hash, c.data_fingerprint, " ".join(c.revisions), str(c.reduced).lower(),
                    "; ".join(c.machines)]
                if with_reported:
                    rep, delta = b.reported.get((m, d)), b.delta(m, d)
                    comp = "" if rep is None else str(bool(b.reported_match.get((m, d)))).lower()
                    row += [_fmt(rep, 4), comp, "" if delta is None else f"{delta:.4f}"]
                w.writerow(row)
    return buf.getvalue()


_TEX_SYMBOLS = (("±", r"$\pm$"), ("≈", r"$\approx$"), ("†", r"$\dagger$"), ("‡", r"$\ddagger$"), ("α", r"$\alpha$"),
                ("×", r"$\times$"), ("Δ", r"$\Delta$"), ("§", r"\S{}"), ("¶", r"\P{}"), ("◊", r"$\diamond$"), ("—", "---"), ("–", "--"), ("∪", r"$\cup$"))


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    for a, b in _TEX_SYMBOLS:  # plain pdflatex: no Unicode symbols
        s = s.replace(a, b)
    return s


def render_tex(boards: list[Board], with_reported: bool = False) -> str:
    parts = []
    for b in boards:
        per = 3 if with_reported else 2  # mean±std, rank[, reported, Δ -> shown as reported (Δ)]
        spec = "l" + ("r" * per) * len(b.datasets) + "r"
        lines = [
            "% " + _tex_escape(b.title),
            r"\begin{tabular}{" + spec + "}",
            r"\toprule",
            " & ".join(["Method"] + [rf"\multicolumn{{{per}}}{{c}}{{{_tex_escape(_title(b, d))}}}" for d in b.datasets] + ["Mean rank"]) + r" \\",
        ]
        rules = " ".join(rf"\cmidrule(lr){{{2 + i * per}-{1 + (i + 1) * per}}}" for i in range(len(b.datasets)))
        lines.append(rules)
        sub = [r"$\mu \pm \sigma$ (n)", "rank"] + ([_tex_escape("reported (Δ)")] if with_reported else [])
        lines.append(" & ".join([""] + sub * len(b.datasets) + [""]) + r" \\")
        lines.append(r"\midrule")
        best = {d: min((c.rank for (m, dd), c in b.cells.items() if dd == d), default=None) for d in b.datasets}
        for m in b.methods:
            cells = [_tex_escape(m)]
            for d in b.datasets:
                c = b.cells.get((m, d))
                if c is None:
                    cells += ["--", ""]
                else:
                    txt = _tex_escape(f"{c.mean:.2f}{f' ± {c.std:.2f}' if c.n > 1 else ''} ({c.n})")
                    txt = rf"\textbf{{{txt}}}" if c.rank == best[d] else txt
                    if c.marks:
                        txt += "$^{" + "".join(_tex_escape(x).strip("$") for x in c.marks) + "}$"
                    cells += [txt, f"{c.rank:g}"]
                if with_reported:
                    cells.append(_tex_escape(_reported_text(b, m, d)))
            cells.append(_mean_rank(b, m))
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", "", r"\par\footnotesize " + _tex_escape(b.footnote(with_ci=False)), ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


_HTML_JS = """
function sortTable(table, col, numeric, asc) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.cells[col].dataset.v ?? a.cells[col].textContent;
    const y = b.cells[col].dataset.v ?? b.cells[col].textContent;
    let r;
    if (numeric) {
      const fx = x === '' ? Infinity : parseFloat(x), fy = y === '' ? Infinity : parseFloat(y);
      r = (fx === fy) ? 0 : (fx < fy ? -1 : 1);
    } else { r = x.localeCompare(y); }
    return asc ? r : -r;
  });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sortedBy = table.tHead.rows[table.tHead.rows.length - 1].cells[col].dataset.key;
}
document.querySelectorAll('table.board').forEach(table => {
  const head = table.tHead.rows[table.tHead.rows.length - 1];
  Array.from(head.cells).forEach((th, i) => {
    th.addEventListener('click', () => {
      const asc = th.dataset.dir !== 'asc';
      th.dataset.dir = asc ? 'asc' : 'desc';
      sortTable(table, i, th.dataset.numeric === '1', asc);
    });
  });
  const mr = Array.from(head.cells).findIndex(th => th.dataset.key === 'mean-rank');
  if (mr >= 0) sortTable(table, mr, true, true);
});
"""

_HTML_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.board { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 14px; }
.board th, .board td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
.board td:first-child, .board th:first-child { text-align: left; font-weight: 600; }
.board thead tr:last-child th { cursor: pointer; user-select: none; }
.board thead tr:last-child th:hover { background: #f0f0f0; }
.board th.group { text-align: center; border-bottom: 2px solid #888; }
.note { color: #666; font-size: 12px; margin-bottom: 2em; }
td.best { font-weight: 700; }
"""


def render_html(boards: list[Board], with_reported: bool = False) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', "<title>avbench leaderboard</title>",
           f"<style>{_HTML_CSS}</style></head><body>", "<h1>avbench leaderboard</h1>"]
    for i, b in enumerate(boards):
        cols = _columns(b, with_reported)
        subs = len(cols) // max(len(b.datasets), 1)
        out.append(f"<h2>{e(b.title)}</h2>")
        out.append(f'<table class="board" id="board-{i}"><thead><tr><th></th>')
        out += [f'<th class="group" colspan="{subs}">{e(_title(b, d))}</th>' for d in b.datasets]
        out.append("<th></th></tr><tr>")
        out.append('<th data-key="method" data-numeric="0">method</th>')
        for d, s in cols:
            numeric = "0" if s == "95% CI" else "1"
            out.append(f'<th data-key="{e(d)}:{e(s)}" data-numeric="{numeric}">{e(s)}</th>')
        out.append('<th data-key="mean-rank" data-numeric="1">mean rank</th></tr></thead><tbody>')
        for m in b.methods:
            out.append(f'<tr data-method="{e(m)}"><td>{e(m)}</td>')
            for d, s in cols:
                c = b.cells.get((m, d))
                if s == "mean ± std (n)":
                    v = "" if c is None else f"{-c.mean:.6f}"  # sort descending by default click
                elif s == "rank":
                    v = "" if c is None else f"{c.rank:g}"
                elif s == "reported":
                    r = b.reported.get((m, d))
                    v = "" if r is None else f"{-r:.6f}"
                elif s == "Δ":
                    dl = b.delta(m, d)
                    v = "" if dl is None else f"{-dl:.6f}"
                else:
                    v = None
                cls = ' class="best"' if s == "rank" and c is not None and c.rank == 1 else ""
                if s == "mean ± std (n)" and c is not None:
                    tip = f"entry {c.entry}; config {c.config_hash[:8]}; data {c.data_fingerprint[:8]}; " \
                          f"code {', '.join(c.revisions)}; machines {'; '.join(c.machines)}; {c.significance}" + \
                          ("" if c.p_value is None else f" (Holm p = {c.p_value:.3g})")
                    cls += f' title="{e(tip)}"'

                dv = "" if v is None else f' data-v="{v}"'
                out.append(f"<td{dv}{cls}>{e(_value(b, m, d, s))}</td>")
            mr = b.mean_rank.get(m)
            out.append(f'<td data-v="{"" if mr is None else mr}">{e(_mean_rank(b, m))}</td></tr>')
        out.append("</tbody></table>")
        out.append(f'<p class="note">{e(b.note)}</p>')
    if not boards:
        out.append("<p>No results in the store yet.</p>")
    out.append(f"<script>{_HTML_JS}</script></body></html>")
    return "\n".join(out)


def render(boards: list[Board], fmt: str, with_reported: bool = False):
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return {
        "table": render_table,
        "md": render_md,
        "csv": render_csv,
        "tex": render_tex,
        "html": render_html,
    }[fmt](boards, with_reported)


def write(boards: list[Board], out_dir: str | Path, formats=("md", "csv", "tex", "html"), with_reported=False) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        if fmt == "table":
            continue
        p = out_dir / f"leaderboard.{fmt}"
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(render(boards, fmt, with_reported))
        tmp.replace(p)
        paths.append(p)
    return paths


def to_json(boards: list[Board]) -> str:
    return json.dumps(
        [
            {
                "protocol": b.protocol,
                "features": b.features,
                "text_order": b.text_order,
                "metric": b.metric,
                "cells": [
                    {"method": m, "dataset": d, **{k: None if isinstance(v, float) and v != v else v
                                                   for k, v in c.__dict__.items()}}  # NaN (one seed): null
                    for (m, d), c in sorted(b.cells.items())
                ],
                "mean_rank": b.mean_rank,
            }
            for b in boards
        ]
    )
