"""models.checkpoints.safe_load: malicious pickles are refused without running anything; real-world
harmless objects (argparse.Namespace, omegaconf, numpy, defaultdict) still load; broken files give
CheckpointError."""
from __future__ import annotations

import argparse
import builtins
import collections
import functools
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoints import (CheckpointError, Inert, UnsafeCheckpointError, load_yaml, safe_load,
                                to_plain)


class WritesFile:
    """Unpickling this calls open(path, 'w'), creating the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (builtins.open, (self.path, "w"))


class ExecsCode:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (builtins.exec, (f"open({self.path!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload, global_name", [(WritesFile, "io.open"), (ExecsCode, "builtins.exec")])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, payload: type, global_name: str) -> None:
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "x": payload(str(marker))}, ckpt)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(ckpt)
    assert global_name in str(err.value) and "Nothing from the file was executed" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj, name", [
    (os.system, "system"),
    (functools.partial(print, 1), "functools.partial"),
    (collections.abc.Callable, "Callable"),
])
def test_callables_are_refused(tmp_path: Path, obj: object, name: str) -> None:
    ckpt = tmp_path / "c.pt"
    torch.save({"f": obj}, ckpt)
    with pytest.raises(UnsafeCheckpointError, match=name):
        safe_load(ckpt)


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(2, 2), ckpt)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        safe_load(ckpt)


@pytest.fixture
def fake_omegaconf(tmp_path: Path):  # noqa: ANN201
    """A package named `omegaconf` that exists only while saving, like on the training machine."""
    pkg = tmp_path / "site" / "omegaconf"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "dictconfig.py").write_text(
        "class DictConfig:\n"
        "    def __init__(self, content):\n"
        "        self._content = content\n"
        "        self._metadata = None\n"
        "    def __getstate__(self):\n"
        "        return dict(self.__dict__)\n"
        "    def __setstate__(self, state):\n"
        "        raise RuntimeError('the real class must never run')\n"
    )
    sys.path.insert(0, str(pkg.parent))
    importlib.invalidate_caches()
    module = importlib.import_module("omegaconf.dictconfig")
    yield module
    sys.path.remove(str(pkg.parent))
    for name in [n for n in sys.modules if n == "omegaconf" or n.startswith("omegaconf.")]:
        del sys.modules[name]


def test_fairseq_style_checkpoint_loads(tmp_path: Path, fake_omegaconf) -> None:  # noqa: ANN001
    ckpt = tmp_path / "fairseq.pt"
    args = argparse.Namespace(encoder_layers=12, encoder_embed_dim=768, label_rate=50.0)
    cfg = fake_omegaconf.DictConfig({"model": {"encoder_layers": 12}, "task": {"sample_rate": 16000}})
    torch.save({
        "args": args, "cfg": cfg, "model": {"layer_norm.weight": torch.ones(4)},
        "extra": {"best": np.float64(1.5), "arr": np.arange(6, dtype=np.int32).reshape(2, 3),
                  "counts": collections.defaultdict(list, {"a": [1]}), "path": Path("/tmp/x")},
        "optimizer_history": [{"num_updates": 400000}],
    }, ckpt)
    # the training machine's omegaconf is gone when we load
    for name in [n for n in sys.modules if n == "omegaconf" or n.startswith("omegaconf.")]:
        del sys.modules[name]
    sys.path.remove(str(tmp_path / "site"))
    try:
        data = safe_load(ckpt)
    finally:
        sys.path.insert(0, str(tmp_path / "site"))
    assert isinstance(data["args"], argparse.Namespace) and data["args"].encoder_embed_dim == 768
    assert isinstance(data["cfg"], Inert) and data["cfg"].global_name == "omegaconf.dictconfig.DictConfig"
    assert to_plain(data["cfg"]) == {"model": {"encoder_layers": 12}, "task": {"sample_rate": 16000}}
    assert torch.equal(data["model"]["layer_norm.weight"], torch.ones(4))
    extra = to_plain(data["extra"])
    assert extra["best"] == 1.5
    np.testing.assert_array_equal(extra["arr"], np.arange(6, dtype=np.int32).reshape(2, 3))
    assert extra["counts"] == {"a": [1]}
    assert extra["path"] == "/tmp/x"


def test_plain_state_dict_loads(tmp_path: Path) -> None:
    ckpt = tmp_path / "ok.pt"
    torch.save({"global_step": 3, "model": collections.OrderedDict(w=torch.arange(3.0))}, ckpt)
    data = safe_load(ckpt)
    assert data["global_step"] == 3 and torch.equal(data["model"]["w"], torch.arange(3.0))


def test_broken_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.randn(1000)}}, good)
    raw = good.read_bytes()

    cases = {
        "missing.pt": None,
        "empty.pt": b"",
        "truncated.pt": raw[: len(raw) // 2],
        "garbage.pt": os.urandom(4096),
        "text.pt": b"hello, not a checkpoint\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError):
            safe_load(path)

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        safe_load(legacy)
    with pytest.raises(CheckpointError, match="not a file"):
        safe_load(tmp_path)


def test_corrupt_pickle_inside_zip(tmp_path: Path) -> None:
    import zipfile

    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(4)}}, good)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                data = data[: len(data) // 2]  # cut the pickle stream
            dst.writestr(item, data)
    with pytest.raises(CheckpointError):
        safe_load(bad)


def test_load_yaml(tmp_path: Path) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("model:\n  n_spk: 2\n")
    assert load_yaml(good) == {"model": {"n_spk": 2}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(CheckpointError, match="invalid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "s.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(CheckpointError, match="mapping"):
        load_yaml(scalar)
    with pytest.raises(CheckpointError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(CheckpointError):
        load_yaml(evil)
