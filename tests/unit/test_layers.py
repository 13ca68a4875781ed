"""The layering the code relies on, checked on the source: the core never imports the model adapters
or boto3, and the adapters' imports form no circle (models/registry.py is the only way in)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lambda_src" / "img2img"


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved within the package)."""
    parts = ["img2img", *path.relative_to(PACKAGE).with_suffix("").parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = parts[:-node.level] if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".") if node.module else ".".join(base)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_core_never_imports_models_or_boto3():
    for path in (PACKAGE / "core").glob("*.py"):
        bad = {m for m in imports_of(path) if m.startswith(("img2img.models", "boto3", "botocore"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_adapters_import_no_circle():
    modules = {p.stem: p for p in (PACKAGE / "models").glob("*.py") if p.stem != "__init__"}
    graph = {name: {m.split(".")[2] for m in imports_of(path) if m.startswith("img2img.models.")
                    and m.split(".")[2] in modules} - {name} for name, path in modules.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    circles = [name for name in graph if reaches(name, name, set())]
    assert not circles, f"import circle through {circles}: {graph}"
    assert not any("registry" in deps for name, deps in graph.items() if name != "registry")


def test_no_two_test_files_share_a_name():
    """pytest (rootdir imports, no packages) refuses to collect two test modules of one basename: the
    second is an `import file mismatch` error and the whole run fails."""
    tests = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in tests.rglob("*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1 and name != "conftest.py"}
    assert not clashes, clashes
