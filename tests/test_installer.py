"""The installer: `build_installer.py` makes a bundle that runs with no checkout or venv in sight.

The slow tests build the CPU bundle once into a temp folder (the build venv is cached in
build/installer-venv-cpu, so only the first run downloads from PyPI) and run the built executable
with a bare environment: cwd in the temp folder, no PYTHONPATH, PATH of system folders only.
Measured on the busy 2-core VM: the build takes ~1.5 min with the venv cached and ~2.7 min with a
fresh venv and an empty pip cache (a fresh CI clone); under the 5-minute budget, so CI runs them.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packaging"))
import bundle_rules as rules  # noqa: E402

import build_installer  # noqa: E402
from app.version import __version__  # noqa: E402

WINDOW_SECONDS = 5.0


# ---------------------------------------------------------------------------- fast: the rules
def test_forbidden_files_fail_the_build(tmp_path: Path) -> None:
    bundle = tmp_path / "como-live"
    (bundle / "_internal" / "numpy").mkdir(parents=True)
    (bundle / "_internal" / "numpy" / "core.so").write_bytes(b"")
    build_installer.verify_bundle(bundle)             # a clean bundle passes
    (bundle / "_internal" / "torch" / "lib").mkdir(parents=True)
    (bundle / "_internal" / "torch" / "lib" / "libtorch_cpu.so").write_bytes(b"")
    with pytest.raises(build_installer.BuildError, match="torch"):
        build_installer.verify_bundle(bundle)


@pytest.mark.parametrize("path, forbidden", [
    ("torch/__init__.pyc", True), ("models/comosvc.pyc", True), ("exporters/onnx_export.pyc", True),
    ("torch-2.13.0.dist-info/RECORD", True), ("libtorch_cpu.so", True), ("libc10.so", True),
    ("onnxruntime/capi/libonnxruntime_providers_shared.so", False),
    ("PyQt6/Qt6/plugins/wayland-graphics-integration-client/libshm-emulation-server.so", False),
    ("app/resources/como-live.png", False), ("voices/demo/voice.json", False),
])
def test_forbidden_paths(path: str, forbidden: bool) -> None:
    assert bool(rules.forbidden_paths([path])) is forbidden


def test_forbidden_modules() -> None:
    assert rules.forbidden_modules(["torch.nn", "models.comosvc", "engine.converter", "exporters", "numpy"]) == [
        "exporters", "models.comosvc", "torch.nn"]


@pytest.mark.parametrize("path, unneeded", [
    ("PyQt6/Qt6/plugins/platformthemes/libqgtk3.so", True), ("PyQt6/Qt6/plugins/tls/libqopensslbackend.so", True),
    ("PyQt6\\Qt6\\plugins\\imageformats\\qpdf.dll", True), ("PyQt6/Qt6/plugins/platforms/libqxcb.so", False),
    ("PyQt6/Qt6/plugins/platforms/qwindows.dll", False), ("PyQt6/Qt6/plugins/platforms/libqcocoa.dylib", False),
    ("PyQt6/Qt6/plugins/platforms/libqoffscreen.so", False), ("PyQt6/Qt6/lib/libQt6Gui.so.6", False),
])
def test_qt_plugin_selection(path: str, unneeded: bool) -> None:
    assert rules.unneeded_qt_plugin(path) is unneeded


def test_each_platform_keeps_its_qt_platform_plugin() -> None:
    linux = ["PyQt6/Qt6/plugins/platforms/libqxcb.so", "PyQt6/Qt6/plugins/platforms/libqwayland.so",
             "PyQt6/Qt6/plugins/platforms/libqoffscreen.so"]
    assert rules.missing_qt_platforms(linux, "linux") == []
    assert rules.missing_qt_platforms(linux[1:], "linux") == ["qxcb"]
    assert rules.missing_qt_platforms(["PyQt6\\Qt6\\plugins\\platforms\\qoffscreen.dll"], "win32") == ["qwindows"]
    assert rules.missing_qt_platforms(["PyQt6/Qt6/plugins/platforms/libqcocoa.dylib",
                                       "PyQt6/Qt6/plugins/platforms/libqoffscreen.dylib"], "darwin") == []


@pytest.mark.parametrize("name, nvidia", [
    ("libcublas.so.13", True), ("libcudnn.so.9", True), ("libnvinfer.so.10", True), ("cudart64_13.dll", True),
    ("libcuda.so.1", True), ("nvcuda.dll", True), ("libportaudio.so.2", False), ("libQt6Core.so.6", False),
])
def test_nvidia_libraries_are_recognised(name: str, nvidia: bool) -> None:
    assert rules.is_nvidia_library(f"_internal/{name}") is nvidia


def test_gpu_requirements_name_each_providers_libraries() -> None:
    lines = rules.gpu_requirements("13.0", {"CUDA": ["libcublas.so.13", "libcuda.so.1"], "TensorRT": ["libnvinfer.so.10"]})
    assert "CUDA 13.0" in lines[0]
    assert "libcublas.so.13" in lines[1] and "cuDNN 9" in lines[1] and "libcuda.so.1" not in lines[1]
    assert "libnvinfer.so.10" in lines[2] and "optional" in lines[2]


def test_a_foreign_folder_is_never_replaced_by_the_build_venv(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(build_installer.BuildError, match="not a build venv"):
        build_installer.ensure_build_venv(tmp_path, ["numpy"])
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_shipped_voice_packs_are_checked_with_their_hashes(tmp_path: Path) -> None:
    from tests.test_app_fakes import make_pack

    voices = tmp_path / "voices"
    assert build_installer.check_voice_packs(voices) == []            # nothing shipped: nothing to check
    make_pack(voices / "demo")
    (voices / "README.txt").write_text("a file beside the packs is not a pack")
    assert build_installer.check_voice_packs(voices) == ["demo"]
    (voices / "demo" / "vocoder.onnx").write_bytes(b"changed")
    with pytest.raises(build_installer.BuildError, match=r"shipped voice pack .*voices/demo is broken \(vocoder"):
        build_installer.check_voice_packs(voices)
    (voices / "demo" / "voice.json").unlink()
    with pytest.raises(build_installer.BuildError, match="has no voice.json"):
        build_installer.check_voice_packs(voices)


def test_a_broken_shipped_pack_stops_the_build_before_it_starts(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "voices" / "demo").mkdir(parents=True)
    monkeypatch.setattr(build_installer, "SHIPPED_VOICES", tmp_path / "voices")
    monkeypatch.setattr(build_installer, "ensure_build_venv", lambda *args: pytest.fail("the build went on"))
    assert build_installer.main(["--out", str(tmp_path / "dist")]) == 1
    err = capsys.readouterr().err
    assert "the shipped voice pack" in err and "voices/demo is broken" in err and "models.demo build" in err


def test_the_bundle_must_hold_every_shipped_pack_intact(tmp_path: Path) -> None:
    from tests.test_app_fakes import make_pack

    bundle = tmp_path / "como-live"
    (bundle / "_internal").mkdir(parents=True)
    build_installer.verify_bundled_voices(bundle, [])                   # no packs, none expected
    with pytest.raises(build_installer.BuildError, match=r"voice packs \(none\) are not those in voices/ \(demo\)"):
        build_installer.verify_bundled_voices(bundle, ["demo"])
    make_pack(bundle / "_internal" / "voices" / "demo")
    build_installer.verify_bundled_voices(bundle, ["demo"])
    (bundle / "_internal" / "voices" / "demo" / "content.onnx").write_bytes(b"cut short")
    with pytest.raises(build_installer.BuildError, match="is broken"):
        build_installer.verify_bundled_voices(bundle, ["demo"])


def test_cpu_and_gpu_builds_never_mix_onnxruntime_flavours() -> None:
    cpu, gpu = build_installer.build_requirements(False), build_installer.build_requirements(True)
    names = lambda reqs: {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in reqs}  # noqa: E731
    assert "onnxruntime" in names(cpu) and "onnxruntime-gpu" not in names(cpu)
    assert "onnxruntime-gpu" in names(gpu) and "onnxruntime" not in names(gpu)
    assert "pyinstaller" in names(cpu) and not names(cpu) & {"torch", "onnx", "librosa"}


# ---------------------------------------------------------------------------- slow: the real bundle
@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The built CPU one-folder (built once per test run into a temp folder)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(REPO / "build_installer.py"), "--out", str(out),
                             "--work", str(out / "work")], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    folders = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(rules.EXECUTABLE)]
    assert len(folders) == 1 and (out / f"{folders[0].name}.tar.gz").is_file(), result.stdout
    return folders[0]


@pytest.fixture()
def bare_env(tmp_path: Path):
    """No checkout, venv or user site on any path; private config, voices and control socket. The
    socket lives in a short TMPDIR: a Unix socket path may not exceed 108 bytes, pytest's can."""
    for sub in ("home", "config", "voices"):
        (tmp_path / sub).mkdir()
    socket_dir = Path(tempfile.mkdtemp(prefix="como-inst-", dir="/tmp"))
    yield {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "TMPDIR": str(socket_dir),
           "USER": f"como-test-{os.getpid()}", "LANG": "C.UTF-8",
           "COMO_LIVE_CONFIG_DIR": str(tmp_path / "config"), "COMO_LIVE_VOICES": str(tmp_path / "voices"),
           "QT_QPA_PLATFORM": "offscreen"}
    shutil.rmtree(socket_dir, ignore_errors=True)


def run_bundled(bundle: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the bundle's executable with `env`, from the temp home (not the checkout)."""
    return subprocess.run([str(bundle / rules.EXECUTABLE), *args], cwd=Path(env["HOME"]).parent, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_bundle_has_no_torch_and_fits_the_size_goal(bundle: Path) -> None:
    names = {p.name.lower() for p in bundle.rglob("*")}
    assert not names & {"torch", "models", "exporters", "libtorch_cpu.so"}
    program = build_installer.unpacked_size(bundle) - build_installer.bundled_voices_size(bundle)
    assert program < 300e6, f"the CPU program is {program / 1e6:.0f} MB unpacked without voice packs (goal: 300 MB)"
    assert (bundle / "_internal" / rules.PORTAUDIO_SONAME).is_file() or rules.system_portaudio() is None


@pytest.mark.slow
def test_self_test_passes_without_a_checkout(bundle: Path, bare_env: dict[str, str]) -> None:
    result = run_bundled(bundle, "--self-test", env=bare_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"provider: CPU", result.stdout), result.stdout
    assert re.search(r"latency: \d+\.\d ms", result.stdout), result.stdout
    assert "self-test passed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_version(bundle: Path, bare_env: dict[str, str]) -> None:
    result = run_bundled(bundle, "--version", env=bare_env)
    assert result.returncode == 0 and result.stdout.strip() == f"como-live {__version__}"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1) "
                    "to hide the system's JACK library in a private mount namespace")
def test_portaudio_loads_without_the_systems_jack(bundle: Path, bare_env: dict[str, str]) -> None:
    """A user without JACK gets the bundled fallback copy (the system's is hidden by a bind mount)."""
    system_jack = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = sorted({line.split("=>")[-1].strip() for line in system_jack.splitlines() if "libjack.so.0 " in line})
    if not paths or not (bundle / "_internal" / rules.FALLBACK_FOLDER).is_dir():
        pytest.skip("this build machine has no JACK, so the bundle carries no fallback")
    hide = " && ".join(f"mount --bind /dev/null {path}" for path in paths)
    command = f"{hide} && exec {bundle / rules.EXECUTABLE} --self-test"
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                            cwd=Path(bare_env["HOME"]).parent, env=bare_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audio: PortAudio" in result.stdout


@pytest.mark.slow
def test_window_starts_offscreen_and_takes_remote_commands(bundle: Path, bare_env: dict[str, str]) -> None:
    window = subprocess.Popen([str(bundle / rules.EXECUTABLE)], cwd=Path(bare_env["HOME"]).parent, env=bare_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60.0
        while True:   # the window answers --send once its event loop runs
            sent = run_bundled(bundle, "--send", "bypass", env=bare_env, timeout=60)
            if sent.returncode == 0 or window.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert window.poll() is None, "the window exited on its own"
        assert sent.returncode == 0, sent.stderr
        time.sleep(WINDOW_SECONDS)
        assert window.poll() is None, "the window exited on its own"
    finally:
        window.send_signal(signal.SIGTERM)
        output, _ = window.communicate(timeout=30)
    assert "Traceback" not in output, output
