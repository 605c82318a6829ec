"""Voice pack: a folder with `voice.json` and the ONNX files the runtime needs.

The exporter writes this schema (`write_manifest`) and the engine reads it (`load_manifest`). Loading
validates everything that can be checked without running a model — format, version, required
fields, files, sizes, sha256 — and raises one `VoicePackError` naming the problem. Nothing in a
pack is ever executed except ONNX graphs by ONNX Runtime.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "como-live-voicepack"
MANIFEST_NAME = "voice.json"
MANIFEST_VERSION = 2
#: version 1: no stateful graphs; version 2 adds the optional `stateful` section (and its networks)
SUPPORTED_VERSIONS = (1, 2)
REQUIRED_NETWORKS = ("content", "decoder", "vocoder")
STATEFUL_NETWORKS = ("decoder_stateful", "vocoder_stateful", "content_stateful")
OPTIONAL_NETWORKS = ("pitch", *STATEFUL_NETWORKS)
_MAX_MANIFEST_BYTES = 1 << 20


class VoicePackError(ValueError):
    """A voice pack is missing, corrupt, tampered with or of an unknown version."""


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output: name, shape (ints, or strings for dynamic axes) and dtype."""

    name: str
    shape: list[int | str]
    dtype: str


@dataclass(frozen=True)
class NetworkSpec:
    """One ONNX file of the pack.

    `receptive_field` is (left, right) in the network's own frames (`frame_unit`), or None when
    unbounded (attention over the whole input). The streaming engine sizes context and lookahead
    from it.
    """

    file: str
    sha256: str
    size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    receptive_field: tuple[int, int] | None
    frame_unit: str
    params: int = 0
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StateTensor:
    """One state of a stateful graph: input `name`, output `name + '_out'`; `initial` is 'zeros'."""

    name: str
    shape: list[int]
    dtype: str
    initial: str = "zeros"


@dataclass(frozen=True)
class StatefulGraph:
    """How to stream a stateful network (see exporters/stateful.py).

    `streams`: the whole-sequence network it reproduces; `position`: its int64 [1] frame counter
    input (output `position + '_out'`); `output`: the output it streams; `delay_samples` /
    `delay_frames`: how late (24 kHz samples / mel frames) its output comes; `parity`: the export's
    chunked-vs-whole check."""

    streams: str
    position: str
    output: str
    states: list[StateTensor]
    delay_samples: int
    delay_frames: float
    parity: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VoiceManifest:
    """Everything the engine needs to know about a voice, read from `voice.json`."""

    name: str
    speakers: dict[str, int]
    sample_rate: int
    hop_length: int
    mel: dict[str, Any]
    content: dict[str, Any]
    f0: dict[str, Any]
    networks: dict[str, NetworkSpec]
    verification: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    stateful: dict[str, StatefulGraph] = field(default_factory=dict)  # keyed by network name
    format_version: int = MANIFEST_VERSION
    folder: str = ""

    def path(self, network: str) -> Path:
        """Absolute path of a network's ONNX file."""
        return Path(self.folder) / self.networks[network].file

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("folder")
        data["format"] = FORMAT
        for net in data["networks"].values():
            rf = net["receptive_field"]
            net["receptive_field"] = None if rf is None else list(rf)
        return data


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike, manifest: VoiceManifest) -> Path:
    """Write `voice.json` into `folder` (after validating it exactly as the loader will)."""
    path = Path(folder) / MANIFEST_NAME
    data = manifest.to_json()
    _parse(data, Path(folder))  # the exporter must never write a pack the engine would refuse
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_manifest(folder: str | os.PathLike, verify_hashes: bool = True) -> VoiceManifest:
    """Read and validate a voice pack folder; raise `VoicePackError` with one clear sentence."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VoicePackError(f"voice pack folder not found: {folder}")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise VoicePackError(f"{folder} is not a voice pack: it has no {MANIFEST_NAME}")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise VoicePackError(f"{path} is too large to be a voice manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoicePackError(f"{path} is not valid JSON ({exc})") from exc
    manifest = _parse(data, folder)
    for name, net in manifest.networks.items():
        _check_file(folder, name, net, verify_hashes)
    return manifest


def _check_file(folder: Path, name: str, net: NetworkSpec, verify_hash: bool) -> None:
    file = folder / net.file
    if not file.is_file():
        raise VoicePackError(f"voice pack is incomplete: {name} network file {net.file} is missing")
    size = file.stat().st_size
    if size != net.size:
        raise VoicePackError(
            f"{net.file} is {size} bytes but the manifest says {net.size}: the file is truncated or was replaced"
        )
    if verify_hash and sha256_file(file) != net.sha256:
        raise VoicePackError(f"{net.file} does not match its sha256 in {MANIFEST_NAME}: the file was modified or corrupted")


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise VoicePackError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise VoicePackError(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _tensors(items: Any, where: str) -> list[TensorSpec]:
    if not isinstance(items, list) or not items:
        raise VoicePackError(f"{where}: expected a non-empty list of tensors")
    specs = []
    for item in items:
        if not isinstance(item, dict):
            raise VoicePackError(f"{where}: each tensor must be an object")
        name = _require(item, "name", str, where)
        shape = _require(item, "shape", list, f"{where}.{name}")
        if not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
            raise VoicePackError(f"{where}.{name}: shape entries must be ints or axis names")
        specs.append(TensorSpec(name, shape, _require(item, "dtype", str, f"{where}.{name}")))
    return specs


def _network(name: str, data: Any, folder: Path) -> NetworkSpec:
    where = f"networks.{name}"
    if not isinstance(data, dict):
        raise VoicePackError(f"{where} must be an object")
    file = _require(data, "file", str, where)
    if Path(file).name != file or file in ("", ".", ".."):
        raise VoicePackError(f"{where}: file must be a plain file name inside the pack, got {file!r}")
    rf = data.get("receptive_field")
    if rf is not None:
        if not (isinstance(rf, list) and len(rf) == 2 and all(isinstance(v, int) and v >= 0 for v in rf)):
            raise VoicePackError(f"{where}: receptive_field must be null or [left, right] non-negative ints")
        rf = (rf[0], rf[1])
    sha = _require(data, "sha256", str, where)
    if len(sha) != 64:
        raise VoicePackError(f"{where}: sha256 must be 64 hex digits")
    params, precision, extra = data.get("params", 0), data.get("precision", "fp32"), data.get("extra", {})
    if not (isinstance(params, int) and not isinstance(params, bool)) or not isinstance(precision, str) \
            or not isinstance(extra, dict):
        raise VoicePackError(f"{where}: params must be an integer, precision a string and extra an object")
    return NetworkSpec(
        file=file,
        sha256=sha,
        size=_require(data, "size", int, where),
        inputs=_tensors(data.get("inputs"), f"{where}.inputs"),
        outputs=_tensors(data.get("outputs"), f"{where}.outputs"),
        receptive_field=rf,
        frame_unit=_require(data, "frame_unit", str, where),
        params=params,
        precision=precision,
        extra=dict(extra),
    )


def _parse(data: Any, folder: Path) -> VoiceManifest:
    if not isinstance(data, dict):
        raise VoicePackError(f"{MANIFEST_NAME} must hold a JSON object")
    if data.get("format") != FORMAT:
        raise VoicePackError(f"{MANIFEST_NAME} is not a CoMo Live voice manifest (format {data.get('format')!r})")
    version = data.get("format_version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise VoicePackError(
            f"voice pack format version {version!r} is not supported (this CoMo Live reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); "
            "re-export the voice with this version's exporter"
        )
    networks_raw = _require(data, "networks", dict, MANIFEST_NAME)
    missing = [n for n in REQUIRED_NETWORKS if n not in networks_raw]
    if missing:
        raise VoicePackError(f"voice pack is incomplete: manifest lists no {', '.join(missing)} network")
    unknown = set(networks_raw) - set(REQUIRED_NETWORKS) - set(OPTIONAL_NETWORKS)
    if unknown:
        raise VoicePackError(f"unknown network(s) in manifest: {', '.join(sorted(unknown))}")
    speakers = _require(data, "speakers", dict, MANIFEST_NAME)
    if not speakers or not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in speakers.items()):
        raise VoicePackError("speakers must map names to non-negative integer ids")
    sample_rate = _require(data, "sample_rate", int, MANIFEST_NAME)
    hop = _require(data, "hop_length", int, MANIFEST_NAME)
    if sample_rate <= 0 or hop <= 0:
        raise VoicePackError("sample_rate and hop_length must be positive")
    mel = _require(data, "mel", dict, MANIFEST_NAME)
    for key in ("n_mels", "spec_min", "spec_max"):
        value = _require(mel, key, (int, float), "mel")
        if not math.isfinite(value):
            raise VoicePackError(f"mel.{key} must be finite")
    content = _require(data, "content", dict, MANIFEST_NAME)
    _require(content, "kind", str, "content")
    for key in ("width", "sample_rate", "hop", "window"):
        if _require(content, key, int, "content") <= 0:
            raise VoicePackError(f"content.{key} must be positive")
    f0 = _require(data, "f0", dict, MANIFEST_NAME)
    method = _require(f0, "method", str, "f0")
    if method == "fcpe" and "pitch" not in networks_raw:
        raise VoicePackError("f0.method is 'fcpe' but the pack has no pitch network")
    for key in ("verification", "source"):
        if not isinstance(data.get(key, {}), dict):
            raise VoicePackError(f"{MANIFEST_NAME}: field '{key}' must be an object")
    return VoiceManifest(
        name=_require(data, "name", str, MANIFEST_NAME),
        speakers=dict(speakers),
        sample_rate=sample_rate,
        hop_length=hop,
        mel=dict(mel),
        content=dict(content),
        f0=dict(f0),
        networks={name: _network(name, net, folder) for name, net in networks_raw.items()},
        verification=dict(data.get("verification", {})),
        source=dict(data.get("source", {})),
        stateful=_stateful_section(data, version, set(networks_raw)),
        format_version=version,
        folder=str(folder.resolve()),
    )


def _stateful_section(data: dict[str, Any], version: int, networks: set[str]) -> dict[str, StatefulGraph]:
    """The optional `stateful` section (version ≥ 2): one entry per stateful network of the pack."""
    raw = data.get("stateful", {})
    listed = networks & set(STATEFUL_NETWORKS)
    if version < 2:
        if raw or listed:
            raise VoicePackError(f"voice pack format version {version} cannot have stateful networks")
        return {}
    if not isinstance(raw, dict):
        raise VoicePackError(f"{MANIFEST_NAME}: field 'stateful' must be an object")
    if set(raw) != listed:
        raise VoicePackError(f"stateful section lists {sorted(raw)} but the networks are {sorted(listed)}")
    out = {}
    for name, entry in raw.items():
        where = f"stateful.{name}"
        if not isinstance(entry, dict):
            raise VoicePackError(f"{where} must be an object")
        streams = _require(entry, "streams", str, where)
        if streams not in REQUIRED_NETWORKS:
            raise VoicePackError(f"{where}: streams must name one of {', '.join(REQUIRED_NETWORKS)}")
        states = []
        for item in _require(entry, "states", list, where):
            if not isinstance(item, dict):
                raise VoicePackError(f"{where}.states: each state must be an object")
            state_name = _require(item, "name", str, f"{where}.states")
            shape = _require(item, "shape", list, f"{where}.{state_name}")
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise VoicePackError(f"{where}.{state_name}: shape must be non-negative ints")
            if item.get("initial", "zeros") != "zeros" or item.get("dtype") != "float32":
                raise VoicePackError(f"{where}.{state_name}: only float32 states starting at zeros are supported")
            states.append(StateTensor(state_name, list(shape), "float32", "zeros"))
        delay_samples = _require(entry, "delay_samples", int, where)
        delay_frames = _require(entry, "delay_frames", (int, float), where)
        if delay_samples < 0 or not math.isfinite(delay_frames) or delay_frames < 0:
            raise VoicePackError(f"{where}: delays must be non-negative")
        parity = entry.get("parity", {})
        if not isinstance(parity, dict):
            raise VoicePackError(f"{where}: parity must be an object")
        out[name] = StatefulGraph(streams, _require(entry, "position", str, where),
                                  _require(entry, "output", str, where), states, delay_samples, float(delay_frames),
                                  dict(parity))
    return out
