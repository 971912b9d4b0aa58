"""The docs' loss table, generated from the loss records.

README.md and docs/experiments.md hold :func:`loss_table` between :data:`BEGIN` and
:data:`END` (a test fails when they are stale). Regenerate them with::

    python -m napari_care_losses.losses.table --write [REPO_ROOT]

(without ``--write`` the table is printed).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .records import LossParam, LossRecord, loss_records

BEGIN = "<!-- loss table: generated from the loss records, `python -m " \
        "napari_care_losses.losses.table --write` -->"
END = "<!-- end of loss table -->"
#: The files holding the table, relative to the repository root.
DOCS = ("README.md", "docs/experiments.md")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _param(p: LossParam) -> str:
    text = f"`{p.name}` {p.default:g} ({p.lo:g} – {p.hi:g}): {p.tip}"
    return text + ("; in 3D per axis ×dx/d (Z: ÷ anisotropy)" if p.per_axis else "")


def _definition_3d(r: LossRecord) -> str:
    return r.definition_3d if 3 in r.dims else "2D only"


def loss_table() -> str:
    """The Markdown table of every registered loss, in panel order."""
    lines = ["| name | label | definition | 3D form (`ndim=3`, voxel size dz, dy, dx) "
             "| parameters: default (range) | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in loss_records():
        params = "<br>".join(_cell(_param(p)) for p in r.params) or "none"
        lines.append(f"| `{r.name}` | {_cell(r.short)} | {_cell(r.definition)} "
                     f"| {_cell(_definition_3d(r))} | {params} | {_cell(r.citation) or '—'} |")
    return "\n".join(lines) + "\n"


def _block() -> str:
    return f"{BEGIN}\n\n{loss_table()}\n{END}"


def _pattern() -> re.Pattern:
    return re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def stale_docs(root: Path) -> list[Path]:
    """The files of :data:`DOCS` under ``root`` whose table is missing or not current."""
    out = []
    for rel in DOCS:
        path = Path(root) / rel
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        found = _pattern().findall(text)
        if found != [_block()]:
            out.append(path)
    return out


def write_docs(root: Path) -> list[Path]:
    """Replace the table in each file of :data:`DOCS` under ``root``; the files changed.
    A file without the markers is an error (the table's place is chosen by hand)."""
    changed = []
    for rel in DOCS:
        path = Path(root) / rel
        text = path.read_text(encoding="utf-8")
        if len(_pattern().findall(text)) != 1:
            raise ValueError(f"{path}: needs exactly one loss table between {BEGIN!r} and "
                             f"{END!r}")
        new = _pattern().sub(lambda _m: _block(), text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write the docs' loss table.")
    parser.add_argument("--write", action="store_true",
                        help=f"update {' and '.join(DOCS)} under ROOT")
    parser.add_argument("root", nargs="?", type=Path, default=Path.cwd(),
                        help="repository root (default: the current folder)")
    args = parser.parse_args(argv)
    if not args.write:
        print(loss_table(), end="")
        return 0
    try:
        changed = write_docs(args.root)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
