"""Every interface reaches the engine and the service only through the gate (DESIGN.md: nothing
can skip the policy or the ledger). An AST check over faceledger/interfaces, as tests/test_layers.py
does for imports: outside a function handed to the gate's ``call``, no interface module calls the
service or the engine (a call through ``.service`` or ``.engine``, through a name bound to one, or
handing one to another function) nor builds one (FaceEngine, FaceService, open_service, ...).
The few exceptions are listed with the reason each is safe."""

from __future__ import annotations

import ast
from pathlib import Path

import faceledger

INTERFACES = Path(faceledger.__file__).parent / "interfaces"
#: What does the work; reaching either outside the gate skips the policy and the ledger.
HOLDERS = {"service", "engine"}
#: Names whose call builds an engine or a service, or runs one.
FACTORIES = {"FaceEngine", "FaceService", "open_service", "worker_engine", "prepare_index", "prepare_index_many",
             "Dispatcher"}
#: Looking at an object is not calling into it.
REFLECTION = {"getattr", "hasattr", "isinstance", "signature", "type", "callable", "set", "str"}
#: (module, function) -> why it may: reviewed exceptions, each narrow.
ALLOWED = {
    ("interfaces/http/wire.py", "Dispatcher.__init__"): "lists the operations the service implements (hasattr); "
    "calls happen in dispatch, inside gate.call",
    ("interfaces/http/app.py", "create_app"): "builds the Dispatcher over the gate (every request goes through "
    "Dispatcher.dispatch's gate.call)",
    ("interfaces/cli/collections.py", "index"): "asks the policy first (a refused principal is refused and recorded "
    "before any template is made), reads the collection's model and checks the parameters, then starts the workers; "
    "every image is stored through the gate (governance.bulk: gate.call_batch('IndexFaces'))",
    ("interfaces/cli/models.py", "_check_on_faces"): "models add runs a model being added on a few real faces before "
    "registering it: no collection, no user's image, nothing the policy governs",
}


def _gated(tree: ast.AST) -> set[int]:
    """ids of the functions handed to a ``.call(...)`` (lambdas inline, defs by name)."""
    lambdas, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call":
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Lambda):
                    lambdas.add(id(arg))
                elif isinstance(arg, ast.Name):
                    names.add(arg.id)
    defs = {id(n) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in names}
    return lambdas | defs


def _reaches(node: ast.AST, tainted: set[str]) -> bool:
    """Whether an expression is (or is reached through) the service or the engine."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        if isinstance(node, ast.Attribute) and node.attr in HOLDERS:
            return True
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in FACTORIES:
                return True
            if name == "getattr" and node.args:
                return _reaches(node.args[0], tainted)
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id in tainted


def direct_calls(source: str) -> list[tuple[str, int, str]]:
    """(function, line, code) of each call into the service or the engine outside the gate."""
    tree = ast.parse(source)
    gated = _gated(tree)
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, where: str, tainted: set[str]) -> None:
        if id(node) in gated:
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            where = f"{where}.{node.name}" if where else node.name
            tainted = set(tainted)
        if isinstance(node, ast.Assign) and _reaches(node.value, tainted):
            tainted.update(t.id for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name))
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            calls_in = name in FACTORIES or (name not in REFLECTION and _reaches(node.func, tainted))
            hands_over = name not in REFLECTION | {"call"} and any(
                (isinstance(a, ast.Name) and a.id in tainted) or (isinstance(a, ast.Attribute) and a.attr in HOLDERS)
                for a in [*node.args, *(k.value for k in node.keywords)])
            if calls_in or hands_over:
                found.append((where, node.lineno, ast.unparse(node)[:100]))
        for child in ast.iter_child_nodes(node):
            visit(child, where, tainted)

    visit(tree, "", set())
    return found


def test_interfaces_reach_the_engine_only_through_the_gate():
    broken = []
    for path in sorted(INTERFACES.rglob("*.py")):
        module = str(path.relative_to(INTERFACES.parent))
        for where, line, code in direct_calls(path.read_text()):
            if (module, where) not in ALLOWED and (module, where.split(".")[0]) not in ALLOWED:
                broken.append(f"{module}:{line} ({where}) calls {code} outside the gate")
    assert not broken, "\n".join(broken)


def test_the_check_catches_a_direct_call():
    """Planted: the calls the old `faceledger demo` made, and a service reached past the gate."""
    planted = '''
def demo(settings, gate, ctx, path):
    engine = FaceEngine(settings)
    engine.detect(path)
    service = gate.service
    service.compare_faces(path, path)
    gate.service.engine.compare(path, path, 80)
    method = getattr(gate.service, "search_faces_by_image")
    method("c", path)
    helper(gate.service)
    gate.call(ctx, "DetectFaces", lambda **_: gate.service.detect_faces(path))

    def run(**_):
        return service.search_faces("c", "f")

    gate.call(ctx, "SearchFaces", run)
'''
    found = [line for _, line, _ in direct_calls(planted)]
    assert found == [3, 4, 6, 7, 9, 10], direct_calls(planted)


def test_a_refused_bulk_index_makes_no_template(tmp_path, monkeypatch, lfw):
    """`faceledger index` computes templates in worker processes before each image's gated
    commit: a principal the policy refuses IndexFaces is refused (and recorded) before any is
    made (planted: no early decision -> prepare_index runs, the test fails)."""
    import importlib.resources

    from typer.testing import CliRunner

    from faceledger.governance.ledger import Ledger
    from faceledger.interfaces.cli.main import app
    from faceledger.service import index_jobs
    from faceledger.settings import Settings

    monkeypatch.setenv("FACELEDGER_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("FACELEDGER_LEDGER", str(tmp_path / "ledger.sqlite"))
    runner = CliRunner()
    assert runner.invoke(app, ["collection", "create", "staff"]).exit_code == 0
    preset = importlib.resources.files("faceledger.data.policies").joinpath("moratorium.toml").read_text()
    assert '[local]\nroles = ["admin"]' in preset
    (tmp_path / "reviewer.toml").write_text(preset.replace('[local]\nroles = ["admin"]', '[local]\nroles = ["reviewer"]'))
    monkeypatch.setenv("FACELEDGER_POLICY", str(tmp_path / "reviewer.toml"))

    def no_template(*args, **kwargs):
        raise AssertionError("a template was computed for a refused principal")

    monkeypatch.setattr(index_jobs, "prepare_index_many", no_template)
    r = runner.invoke(app, ["index", "staff", str(lfw.image("Colin_Powell", 1))])
    assert r.exit_code == 3 and "AccessDenied" in r.output, r.output
    last = list(Ledger(Settings.load().ledger).entries_of("IndexFaces"))[-1].body
    assert last["outcome"] == "AccessDeniedException" and last["interface"] == "cli"
