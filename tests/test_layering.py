"""Dependencies point one way: the runtime (engine, app) never imports torch or models/, app reaches
the engine through one adapter, and no package imports in a circle."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")]


def _sources(*packages: str) -> dict[str, Path]:
    """Module name -> source file, for every .py under the packages (subpackages included)."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported name) of every import in the file, wherever it is (functions, TYPE_CHECKING).
    `from a.b import c` gives `a.b.c` (a submodule, or a name in `a.b`: callers resolve)."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` is or lies in (None: outside the packages)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def test_runtime_sources_never_import_torch_or_models_anywhere() -> None:
    """The import-time check below misses imports inside functions; read every source instead."""
    bad = []
    for module, path in _sources("engine", "app").items():
        for line, name in _imports(path, module):
            if name.split(".")[0] in ("torch", "models", "exporters", "torchaudio", "torchfcpe"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


def test_only_the_engine_adapter_imports_the_engine_in_app() -> None:
    bad = []
    for module, path in _sources("app").items():
        if module == "app.engine_adapter":
            continue
        for line, name in _imports(path, module):
            if name.split(".")[0] == "engine":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Every strongly connected group of more than one module in the import graph (Tarjan)."""
    graph = {m: sorted({r for _, name in _imports(p, m) if (r := _resolve(name, modules)) and r != m})
             for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_in_engine_or_app() -> None:
    assert import_cycles(_sources("engine", "app")) == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    (tmp_path / "b.py").write_text("import c\n")
    (tmp_path / "c.py").write_text("from a import f\n")
    (tmp_path / "d.py").write_text("import a\n")
    modules = {p.stem: p for p in tmp_path.glob("*.py")}
    assert import_cycles(modules) == [["a", "b", "c"]]


def test_runtime_never_imports_torch_or_models() -> None:
    modules = ["engine", "app", *_modules("engine"), *_modules("app")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'exporters'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"runtime imported: {proc.stdout.strip()}"


def test_exporters_only_use_the_engine_schema() -> None:
    """exporters → models, engine.voicepack (the schema) and engine.safe_write (atomic writes) only."""
    for path in (ROOT / "exporters").glob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("from engine", "import engine")):
                assert stripped.startswith(("from engine.voicepack import", "from engine.safe_write import")), \
                    f"{path.name}: {stripped}"
