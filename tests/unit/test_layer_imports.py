"""The layer's floor plan, kept: which package may import which, no import cycle, and the handlers
at the edge. Read from the modules' own import statements (every one, lazy ones included)."""

import ast
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "qpay_common" / "qpay_common"
SDKS = frozenset({"boto3", "botocore", "pynamodb", "requests"})
ROOT_MODULES_AT_MOST = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(LAYER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_modules() -> dict[str, Path]:
    return {module_name(path): path for path in LAYER.rglob("*.py")}


def imports_of(path: Path, *, at_import_time: bool = False) -> set[str]:
    """Every module `path` imports. With at_import_time, only those imported when it is loaded:
    not inside functions, nor under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    own = module_name(path) if path.is_relative_to(LAYER.parent) else "functions.handler.app"
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    modules = layer_modules()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if at_import_time and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if at_import_time and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit_orelse(child)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - child.level + 1], base])
                found.add(base)
                # `from package import module` imports the module too.
                found.update(
                    f"{base}.{alias.name}" for alias in child.names if f"{base}.{alias.name}" in modules
                )
            visit(child)

    def visit_orelse(node: ast.If) -> None:
        for child in node.orelse:
            visit(ast.Module(body=[child], type_ignores=[]))

    visit(tree)
    return found


def top_package(name: str) -> str:
    return name.split(".")[0]


def layer_imports(path: Path, **options: bool) -> set[str]:
    modules = layer_modules()
    return {name for name in imports_of(path, **options) if name in modules}


def subpackage(name: str) -> str:
    """`domain`, `usecases`, `adapters`, `http`, or `root` for the layer's root modules."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in SUBPACKAGES) else "root"


SUBPACKAGES = ("domain", "usecases", "adapters", "http")


def test_the_layer_root_holds_a_handful_of_modules_and_the_rest_lives_in_subpackages():
    root_modules = sorted(path.name for path in LAYER.glob("*.py") if path.name != "__init__.py")
    packages = sorted(path.name for path in LAYER.iterdir() if (path / "__init__.py").exists())

    assert len(root_modules) <= ROOT_MODULES_AT_MOST, root_modules
    assert set(SUBPACKAGES) <= set(packages)
    for package in packages:
        assert (LAYER / package / "__init__.py").read_text().strip(), (
            f"{package}/__init__.py says what it holds"
        )


def test_the_domain_imports_only_the_standard_library_pydantic_and_itself():
    for name, path in layer_modules().items():
        if subpackage(name) != "domain":
            continue
        for imported in imports_of(path):
            top = top_package(imported)
            allowed = (
                top in sys.stdlib_module_names
                or top in ("pydantic", "pydantic_core")
                or imported.startswith("qpay_common.domain")
            )
            assert allowed, f"{name} imports {imported}"


def test_use_cases_import_no_sdk_and_no_adapter_but_the_qpay_vocabulary():
    qpay_vocabulary = {f"qpay_common.adapters.qpay.{part}" for part in ("models", "codes", "errors")}
    for name, path in layer_modules().items():
        if subpackage(name) != "usecases":
            continue
        for imported in imports_of(path):
            assert top_package(imported) not in SDKS, f"{name} imports {imported}"
            if imported.startswith("qpay_common.adapters"):
                assert imported in qpay_vocabulary | {"qpay_common.adapters", "qpay_common.adapters.qpay"}, (
                    f"{name} imports {imported}: use cases depend on ports (usecases/ports.py)"
                )
            assert not imported.startswith(("qpay_common.http", "qpay_common.composition")), (
                f"{name} imports {imported}"
            )


def test_only_the_adapters_and_the_composition_root_speak_to_aws_and_qpay():
    for name, path in layer_modules().items():
        if subpackage(name) in ("adapters",) or name == "qpay_common.composition":
            continue
        speaks = {imported for imported in imports_of(path) if top_package(imported) in SDKS}
        assert not speaks, f"{name} imports {sorted(speaks)}"


def test_nothing_below_the_composition_root_imports_it_or_the_http_edge():
    for name, path in layer_modules().items():
        if subpackage(name) in ("domain", "usecases", "adapters"):
            for imported in layer_imports(path):
                assert subpackage(imported) != "http", f"{name} imports {imported}"
                assert imported != "qpay_common.composition", f"{name} imports {imported}"


def test_handlers_import_only_the_edge_the_composition_root_and_what_their_routes_take():
    allowed_prefixes = (
        "qpay_common.composition",
        "qpay_common.lambda_entry",
        "qpay_common.observability",
        "qpay_common.http",
        # The use case a route depends on (its type in `Annotated[..., Depends(...)]`) and the
        # request model a route validates.
        "qpay_common.usecases",
        "qpay_common.domain.payment_request",
    )
    handlers = sorted((ROOT / "functions").glob("*/app.py"))
    assert len(handlers) == 12
    for handler in handlers:
        for imported in imports_of(handler):
            assert top_package(imported) not in SDKS, f"{handler} imports {imported}"
            if top_package(imported) == "qpay_common" and imported != "qpay_common":
                assert imported.startswith(allowed_prefixes), f"{handler} imports {imported}"


def test_the_layer_has_no_import_cycle():
    modules = layer_modules()
    edges = {name: layer_imports(path, at_import_time=True) - {name} for name, path in modules.items()}
    # A module's package is loaded before it: that is an edge too.
    for name in modules:
        parent = name.rpartition(".")[0]
        if parent in modules:
            edges[name].add(parent)
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(edges.get(name, ())):
            walk(imported, [*trail, name])
        done.add(name)

    for name in sorted(modules):
        walk(name, [])


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    # Given a layer with a.py importing b.py and b.py importing a.py
    fake = tmp_path / "qpay_common"
    fake.mkdir()
    (fake / "__init__.py").write_text('"""x"""\n')
    (fake / "a.py").write_text("from qpay_common import b\n")
    (fake / "b.py").write_text("from qpay_common.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "LAYER", fake)

    # Then the check fails and names it
    with pytest.raises(
        pytest.fail.Exception, match=re.escape("qpay_common.a -> qpay_common.b -> qpay_common.a")
    ):
        test_the_layer_has_no_import_cycle()
