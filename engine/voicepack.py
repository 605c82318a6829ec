"""Voice pack: a folder with `voice.json` and the ONNX files the runtime needs.

The exporter writes this schema (`write_manifest`) and the engine reads it (`load_manifest`). Loading
validates everything that can be checked without running a model — format, version, required
fields, files, sizes, sha256, and bounds on every number the engine sizes buffers by (widths,
n_mels, hops, receptive fields, tensor shapes, speaker ids; the JSON's nesting depth is checked
before parsing) — and raises one `VoicePackError` naming the problem. Nothing in a pack is ever
executed except ONNX graphs by ONNX Runtime, and those are loaded from the bytes that were hashed
with no access to other files (`engine.voices.open_sessions`), so a pack is exactly the files its
manifest lists and hashes.

A pack may also hold, per speaker, a short preview recording of the target voice:
`reference/<reference_file_name(speaker)>` listed in the optional `references` section (sha256 and
size like a network; the file name is derived from the speaker name, so no manifest can point
outside the pack's `reference/` folder). The audio itself is checked when it is read
(`engine.reference`): a 16-bit or float WAV, mono or stereo, at most `REFERENCE_MAX_SECONDS`.

A pack may also hold a notice, `NOTICE_NAME` (SOURCES.md) in the optional `notice` section: what the
voice was trained from and the licences (of its data, its weights). Its name is fixed and its size
bounded; that it is UTF-8 text is checked when it is read (`read_notice`, which hashes the bytes it
decodes; show it as plain text: rendered as rich text, Qt could load files it names). Older readers
of version 2 skip fields they do not know, so adding the section needed no new format version.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
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
#: F0 extractors: WORLD DIO (official), FCPE (pitch.onnx), frame-local YIN (engine/yin_pitch.py)
F0_METHODS = ("dio", "fcpe", "yin")
REFERENCE_FOLDER = "reference"
REFERENCE_MAX_SECONDS = 5.0
NOTICE_NAME = "SOURCES.md"
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_JSON_DEPTH = 32
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_UNSAFE_STEM = re.compile(r"[^a-z0-9_-]")
_STEM_CHARS = 64
#: Names Windows reserves for devices, whatever the extension (`con.wav` opens the console)
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                              *(f"lpt{i}" for i in range(1, 10))})
#: Bounds of the numbers the engine allocates or indexes by: far beyond any real voice, far below
#: what would exhaust memory or overflow an int64.
LIMITS = {
    "name": 256,                     # characters of names (voice, speakers, tensors, files)
    "speakers": 4096, "speaker_id": 65535,
    "sample_rate": (8000, 192000), "hop_length": (1, 4096),
    "n_mels": (1, 512), "content_width": (1, 4096), "content_hop": (1, 4096), "content_window": (1, 16384),
    "receptive_field": 4096,         # frames each side
    "states": 1024,                  # cached-convolution state tensors of one stateful graph
    "tensors": 16 + 2 * 1024,        # a graph's inputs or outputs: its own + its states (and their `_out`)
    "dims": 8, "dim": 1 << 20,
    "file_bytes": 4 << 30, "params": 10 ** 11,
    "reference_bytes": 8 << 20,      # 5 s of 192 kHz stereo float32 is 7.7 MB
    "notice_bytes": 64 << 10,        # a sources-and-licences text, shown whole in a dialog
}


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
class ListedFile:
    """A file of the pack besides its networks, relative to the pack: a speaker's preview recording
    (`reference_file_name(speaker)`) or the notice (`NOTICE_NAME`)."""

    file: str
    sha256: str
    size: int


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
    references: dict[str, ListedFile] = field(default_factory=dict)  # keyed by speaker name
    notice: ListedFile | None = None
    format_version: int = MANIFEST_VERSION
    folder: str = ""

    def path(self, network: str) -> Path:
        """Absolute path of a network's ONNX file."""
        return Path(self.folder) / self.networks[network].file

    def files(self) -> set[str]:
        """Every file the pack consists of, relative to its folder ('/'-separated): the manifest, each
        network's file, each speaker's reference clip and the notice."""
        return {MANIFEST_NAME, *(net.file for net in self.networks.values()),
                *(clip.file for clip in self.references.values()), *([self.notice.file] if self.notice else [])}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("folder")
        data["format"] = FORMAT
        if self.notice is None:
            del data["notice"]   # packs without one keep the manifest they always had
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


def reference_file_name(speaker: str) -> str:
    """`reference/<stem>.wav` for a speaker: the lower-cased name with anything but a-z, 0-9, _ and -
    replaced, cut to 64 characters; whenever that changed the name (or gives a Windows device name), a
    hash of the name keeps speakers apart (`Alice` and `alice` differ, `a b` and `a_b` too)."""
    stem = _UNSAFE_STEM.sub("_", speaker.lower())[:_STEM_CHARS]
    if stem != speaker or stem in _WINDOWS_DEVICES:
        stem = f"{stem}-{hashlib.sha256(speaker.encode('utf-8')).hexdigest()[:12]}"
    return f"{REFERENCE_FOLDER}/{stem}.wav"


def unlisted_paths(folder: str | os.PathLike, listed: set[str]) -> list[str]:
    """Paths under `folder` (relative, '/'-separated, sorted) that are neither a listed file nor a folder
    holding one; links are never followed and always unlisted."""
    root = Path(folder)
    keep_dirs = {str(Path(name).parent.as_posix()) for name in listed} - {"."}
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if any(parent in found for parent in (p.as_posix() for p in Path(relative).parents)):
            continue  # inside a folder already reported
        if path.is_symlink() or not (relative in listed and path.is_file() or relative in keep_dirs and path.is_dir()):
            found.append(relative)
    return found


def read_verified(path: Path, sha256: str, size: int) -> bytes:
    """The file's bytes, read once and checked against the manifest (what is hashed is what is used)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(size + 1)
    except OSError as exc:
        raise VoicePackError(f"cannot read {path.name} ({exc})") from exc
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise VoicePackError(f"{path.name} does not match its size and sha256 in the manifest: "
                             "the file was modified or corrupted")
    return data


def decode_notice(data: bytes, name: str) -> str:
    """The text of a notice's bytes; `name` for messages. The exporter checks a `--notice` with this too."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VoicePackError(f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def read_notice(folder: str | os.PathLike) -> str | None:
    """The verified notice text of the pack `folder`, or None when the pack has none."""
    manifest = load_manifest(folder, verify_hashes=False)   # the notice's own bytes are hashed below
    notice = manifest.notice
    if notice is None:
        return None
    data = read_verified(Path(manifest.folder) / notice.file, notice.sha256, notice.size)
    return decode_notice(data, notice.file)


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
    raw = path.read_bytes()
    if _json_depth(raw) > _MAX_JSON_DEPTH:
        raise VoicePackError(f"{path} is nested more than {_MAX_JSON_DEPTH} levels deep: not a voice manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, or a 5000-digit number
        raise VoicePackError(f"{path} is not valid JSON ({str(exc)[:200]})") from exc
    manifest = _parse(data, folder)
    for name, net in manifest.networks.items():
        _check_file(folder, f"{name} network file", net, verify_hashes)
    if manifest.references and (folder / REFERENCE_FOLDER).is_symlink():
        raise VoicePackError(f"the pack's {REFERENCE_FOLDER}/ folder is a link: a voice pack holds its own files only")
    listed = [(f"the reference clip of speaker {speaker[:40]!r}", clip)
              for speaker, clip in manifest.references.items()]
    for what, file in listed + ([("the notice", manifest.notice)] if manifest.notice else []):
        if (folder / file.file).is_symlink():
            raise VoicePackError(f"{file.file} is a link: a voice pack holds its own files only")
        _check_file(folder, what, file, verify_hashes)
    return manifest


def _json_depth(raw: bytes) -> int:
    """Deepest nesting of [ and { in a JSON text (strings skipped), without parsing it."""
    import numpy as np

    codes = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(codes, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def _bounded_int(value: Any, low: int, high: int, what: str) -> int:
    """`value` if it is an integer in [low, high], else a `VoicePackError` naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise VoicePackError(f"{what} must be an integer in {low}..{high}, got {str(value)[:40]}")
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= LIMITS["name"]:
        raise VoicePackError(f"{what} must be a non-empty string of at most {LIMITS['name']} characters")
    return value


def _check_file(folder: Path, what: str, net: NetworkSpec | ListedFile, verify_hash: bool) -> None:
    file = folder / net.file
    if not file.is_file():
        raise VoicePackError(f"voice pack is incomplete: {what} {net.file} is missing")
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
    if not isinstance(items, list) or not 0 < len(items) <= LIMITS["tensors"]:
        raise VoicePackError(f"{where}: expected a list of 1..{LIMITS['tensors']} tensors")
    specs = []
    for item in items:
        if not isinstance(item, dict):
            raise VoicePackError(f"{where}: each tensor must be an object")
        name = _name(_require(item, "name", str, where), f"{where}: a tensor name")
        shape = _require(item, "shape", list, f"{where}.{name}")
        if len(shape) > LIMITS["dims"]:
            raise VoicePackError(f"{where}.{name}: more than {LIMITS['dims']} dimensions")
        for dim in shape:
            if isinstance(dim, str):
                _name(dim, f"{where}.{name}: an axis name")
            else:
                _bounded_int(dim, 0, LIMITS["dim"], f"{where}.{name}: each dimension")
        specs.append(TensorSpec(name, shape, _name(_require(item, "dtype", str, f"{where}.{name}"),
                                                   f"{where}.{name}.dtype")))
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
        if not (isinstance(rf, list) and len(rf) == 2):
            raise VoicePackError(f"{where}: receptive_field must be null or [left, right] non-negative ints")
        rf = tuple(_bounded_int(v, 0, LIMITS["receptive_field"], f"{where}.receptive_field") for v in rf)
    sha = _sha256(_require(data, "sha256", str, where), where)
    params, precision, extra = data.get("params", 0), data.get("precision", "fp32"), data.get("extra", {})
    if not isinstance(precision, str) or not isinstance(extra, dict):
        raise VoicePackError(f"{where}: precision must be a string and extra an object")
    return NetworkSpec(
        file=_name(file, f"{where}.file"),
        sha256=sha,
        size=_bounded_int(_require(data, "size", int, where), 1, LIMITS["file_bytes"], f"{where}.size"),
        inputs=_tensors(data.get("inputs"), f"{where}.inputs"),
        outputs=_tensors(data.get("outputs"), f"{where}.outputs"),
        receptive_field=rf,
        frame_unit=_require(data, "frame_unit", str, where),
        params=_bounded_int(params, 0, LIMITS["params"], f"{where}.params"),
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
    if not 0 < len(speakers) <= LIMITS["speakers"]:
        raise VoicePackError(f"speakers must list 1..{LIMITS['speakers']} speakers")
    for speaker, index in speakers.items():
        _name(speaker, "a speaker name")
        _bounded_int(index, 0, LIMITS["speaker_id"], f"the id of speaker {speaker[:40]!r}")
    sample_rate = _bounded_int(_require(data, "sample_rate", int, MANIFEST_NAME), *LIMITS["sample_rate"], "sample_rate")
    hop = _bounded_int(_require(data, "hop_length", int, MANIFEST_NAME), *LIMITS["hop_length"], "hop_length")
    mel = _require(data, "mel", dict, MANIFEST_NAME)
    _bounded_int(_require(mel, "n_mels", int, "mel"), *LIMITS["n_mels"], "mel.n_mels")
    for key in ("spec_min", "spec_max"):
        value = _require(mel, key, (int, float), "mel")
        if not math.isfinite(value):
            raise VoicePackError(f"mel.{key} must be finite")
    content = _require(data, "content", dict, MANIFEST_NAME)
    _require(content, "kind", str, "content")
    content_rate = _require(content, "sample_rate", int, "content")
    _bounded_int(content_rate, *LIMITS["sample_rate"], "content.sample_rate")
    for key in ("width", "hop", "window"):
        _bounded_int(_require(content, key, int, "content"), *LIMITS[f"content_{key}"], f"content.{key}")
    offset = content.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or not -LIMITS["content_window"][1] <= offset <= 0:
        raise VoicePackError(f"content.offset must be a whole number of samples in "
                             f"[-{LIMITS['content_window'][1]}, 0]")
    f0 = _require(data, "f0", dict, MANIFEST_NAME)
    method = _require(f0, "method", str, "f0")
    if method not in F0_METHODS:
        raise VoicePackError(f"f0.method {method[:40]!r} is not one this engine knows ({', '.join(F0_METHODS)})")
    if method == "fcpe" and "pitch" not in networks_raw:
        raise VoicePackError("f0.method is 'fcpe' but the pack has no pitch network")
    for key in ("verification", "source"):
        if not isinstance(data.get(key, {}), dict):
            raise VoicePackError(f"{MANIFEST_NAME}: field '{key}' must be an object")
    return VoiceManifest(
        name=_name(_require(data, "name", str, MANIFEST_NAME), "name"),
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
        references=_references_section(data, speakers),
        notice=_notice_section(data),
        format_version=version,
        folder=str(folder.resolve()),
    )


def _sha256(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise VoicePackError(f"{where}: sha256 must be 64 lowercase hex digits")
    return value


def _listed_file(entry: Any, where: str, file: str, why: str, max_bytes: int) -> ListedFile:
    """A `ListedFile` from its manifest entry {file, sha256, size}; `file` is the only name it may have
    (`why` says so in the message)."""
    if not isinstance(entry, dict):
        raise VoicePackError(f"{where} must be an object")
    given = _require(entry, "file", str, where)
    if given != file:
        raise VoicePackError(f"{where}: file must be {file!r} ({why}), got {given[:80]!r}")
    return ListedFile(file, _sha256(entry.get("sha256"), where),
                      _bounded_int(_require(entry, "size", int, where), 1, max_bytes, f"{where}.size"))


def _notice_section(data: dict[str, Any]) -> ListedFile | None:
    """The optional `notice` section: the pack's SOURCES.md, its sha256 and size."""
    if "notice" not in data:
        return None
    return _listed_file(data["notice"], "notice", NOTICE_NAME, "a notice's name is fixed", LIMITS["notice_bytes"])


def _references_section(data: dict[str, Any], speakers: dict[str, int]) -> dict[str, ListedFile]:
    """The optional `references` section: per speaker, its preview clip's file, sha256 and size."""
    raw = data.get("references", {})
    if not isinstance(raw, dict):
        raise VoicePackError(f"{MANIFEST_NAME}: field 'references' must be an object")
    out = {}
    for speaker, entry in raw.items():
        if speaker not in speakers:
            raise VoicePackError(f"references: {speaker[:40]!r} is not a speaker of this voice")
        out[speaker] = _listed_file(entry, f"references.{speaker[:40]}", reference_file_name(speaker),
                                    "derived from the speaker name", LIMITS["reference_bytes"])
    return out


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
        items = _require(entry, "states", list, where)
        if len(items) > LIMITS["states"]:
            raise VoicePackError(f"{where}: more than {LIMITS['states']} state tensors")
        for item in items:
            if not isinstance(item, dict):
                raise VoicePackError(f"{where}.states: each state must be an object")
            state_name = _name(item.get("name"), f"{where}.states: a state's name")
            shape = _require(item, "shape", list, f"{where}.{state_name}")
            if len(shape) > LIMITS["dims"]:
                raise VoicePackError(f"{where}.{state_name}: more than {LIMITS['dims']} dimensions")
            for dim in shape:
                _bounded_int(dim, 0, LIMITS["dim"], f"{where}.{state_name}: each dimension")
            if item.get("initial", "zeros") != "zeros" or item.get("dtype") != "float32":
                raise VoicePackError(f"{where}.{state_name}: only float32 states starting at zeros are supported")
            states.append(StateTensor(state_name, list(shape), "float32", "zeros"))
        delay_samples = _bounded_int(entry.get("delay_samples"), 0, LIMITS["receptive_field"] * LIMITS["hop_length"][1],
                                     f"{where}.delay_samples")
        delay_frames = _require(entry, "delay_frames", (int, float), where)
        if not math.isfinite(delay_frames) or not 0 <= delay_frames <= LIMITS["receptive_field"]:
            raise VoicePackError(f"{where}: delay_frames must be in 0..{LIMITS['receptive_field']}")
        parity = entry.get("parity", {})
        if not isinstance(parity, dict):
            raise VoicePackError(f"{where}: parity must be an object")
        out[name] = StatefulGraph(streams, _require(entry, "position", str, where),
                                  _require(entry, "output", str, where), states, delay_samples, float(delay_frames),
                                  dict(parity))
    return out
