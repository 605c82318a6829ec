"""Dependencies point one way: the runtime (engine, app) never imports torch or models/."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.walk_packages([str(ROOT / package)])]


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
