"""The model-folder modules are the only ones that spell the model files' names, read the
record's keys or compare statuses as text: everything else goes through ModelFolder."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_care_losses
from napari_care_losses.models import folder as folder_module
from napari_care_losses.models import meta as meta_module

ROOT = Path(napari_care_losses.__file__).parent
OWNERS = {Path(folder_module.__file__).resolve(), Path(meta_module.__file__).resolve()}
FILE_NAMES = (folder_module.META_FILE, folder_module.CSBDEEP_CONFIG,
              folder_module.WEIGHTS_BEST, folder_module.WEIGHTS_LAST)
KEYS = meta_module.KEYS | {"precision_used"} | meta_module._DATA_FIELDS
STATUSES = {s.value for s in meta_module.Status}
RAW_READERS = {"read_meta"}


def _sources() -> list[Path]:
    repo = ROOT.parent.parent
    files = [*ROOT.rglob("*.py"), *(repo / "benchmarks").glob("*.py"),
             *(repo / "scripts").glob("*.py")]
    return [f for f in files if f.resolve() not in OWNERS]


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _is_record(node: ast.AST) -> bool:
    """An expression that holds a model record (``meta``, ``….meta``, ``data_info``)."""
    text = ast.unparse(node)
    return "meta" in text or "data_info" in text


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT.parent.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            out += [f"{where}: spells {n!r}" for n in FILE_NAMES if n in node.value]
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and node.slice.value in KEYS and _is_record(node.value):
            out.append(f"{where}: reads key {node.slice.value!r}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and node.args \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value in KEYS \
                and _is_record(node.func.value):
            out.append(f"{where}: reads key {node.args[0].value!r}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and node.attr == "meta":
            out.append(f"{where}: uses the raw record: {ast.unparse(node)}")
        elif isinstance(node, ast.Name | ast.alias) and \
                (getattr(node, "id", None) or getattr(node, "name", None)) in RAW_READERS:
            out.append(f"{where}: reads the raw record with read_meta")
        elif isinstance(node, ast.Compare) and "status" in ast.unparse(node.left) \
                and ("folder" in ast.unparse(node.left) or _is_record(node.left)):
            consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant)]
            if any(c.value in STATUSES for c in consts):
                out.append(f"{where}: compares a status as text: {ast.unparse(node)}")
    return out


def test_only_the_model_folder_modules_spell_model_files_and_record_keys():
    found = [o for f in _sources() for o in offences(f)]
    assert found == [], "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = ROOT / "_spelling_probe.py"  # must sit in the tree for its path
    bad.write_text("def f(folder, meta):\n"
                   "    x = folder.path / 'care_losses.json'\n"
                   "    y = meta.get('history'), folder.meta['best_val_loss']\n"
                   "    return folder.status == 'finished', read_meta(folder.path), x, y\n")
    try:
        found = offences(bad)
    finally:
        bad.unlink()
    assert len(found) == 6, found
