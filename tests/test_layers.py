"""The package's folders are DESIGN.md's layers: imports flow one way, and demographic labels are read
only by the evaluation layer. An AST check over every module, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import faceledger

PACKAGE = Path(faceledger.__file__).parent
#: Lower layers first; a module may import from its own layer and the ones before it.
LAYERS = ["core", "models", "vision", "scoring", "store", "service", "governance", "evaluation", "interfaces"]
CORE = {"errors", "settings", "pg", "localdb"}
#: The demographic annotation files, and the fields of a record that hold its labels.
LABEL_FILES = ("female_names", "male_names", "lfw_race_dict", "labels.csv")
LABEL_FIELDS = {"race", "gender", "sex", "age", "ethnicity"}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "faceledger" or len(parts) == 1:
        return None  # outside the package, or its public facade
    return "core" if parts[1] in CORE else parts[1]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names] if not node.module else [(node.lineno, target)]
    return found


def test_every_module_lives_in_a_layer():
    stray = [m for m, _ in modules() if layer_of(m) not in LAYERS and m not in ("faceledger", "faceledger.__main__")]
    assert not stray, f"modules outside the layer folders: {stray}"


def test_imports_flow_one_way():
    broken = []
    for module, path in modules():
        mine = layer_of(module)
        if mine is None or module == "faceledger.__main__":
            continue
        for line, target in imported(module, path):
            theirs = layer_of(target)
            if theirs is None and target.split(".")[0] == "faceledger":
                broken.append(f"{path.name}:{line} imports the package facade ({target}); import the layer module")
            elif theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                broken.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
    assert not broken, "\n".join(broken)


def label_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a module names an annotation file, or reads a record's race, gender or age field."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out += [(node.lineno, f) for f in LABEL_FILES if f in node.value]
        elif isinstance(node, ast.Attribute) and node.attr in LABEL_FIELDS:
            out.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in LABEL_FIELDS:
            out.append((node.lineno, f"[{node.slice.value!r}]"))
    return out


def test_demographic_labels_are_read_only_under_evaluation():
    readers = [f"{module}:{line} reads {what}" for module, path in modules() if layer_of(module) != "evaluation"
               for line, what in label_reads(ast.parse(path.read_text()))]
    assert not readers, "\n".join(readers)


def test_the_label_check_catches_a_reader():
    tree = ast.parse("def f(rec):\n    return rec.race, open('labels/lfw_race_dict.json'), row['gender']\n")
    assert sorted(w for _, w in label_reads(tree)) == sorted(["lfw_race_dict", ".race", "['gender']"])


def test_the_check_catches_an_upward_import(tmp_path):
    """The contract is not vacuous: an engine module importing the store is caught."""
    fake = tmp_path / "engine.py"
    fake.write_text("from faceledger.store import SQLiteStore\n")
    targets = [t for _, t in imported("faceledger.vision.engine", fake)]
    assert any(LAYERS.index(layer_of(t)) > LAYERS.index("vision") for t in targets)
