"""Turn an official CoMoSVC checkpoint into a voice pack of ONNX files.

    python -m exporters.onnx_export logs/como/model_800000.pt \\
        --vocoder m4singer_hifigan/model_ckpt_steps_1970000.ckpt \\
        --content checkpoint_best_legacy_500.pt --name "My voice" --out voices/my-voice \\
        --reference "Alice=alice-sample.flac"      # a ≤ 5 s preview the app plays (per speaker, optional)
        --speaker-name "spk0=Alice"                 # the name the app shows for a speaker (optional)
        --notice SOURCES.md                         # sources and licences, shipped in the pack (optional)

The pack holds only what inference needs: the conditioner and the online student `denoise_fn`
(≈55 M parameters of the student file's 168 M), the vocoder and the content encoder. Every ONNX
file is checked by `onnx.checker` and against PyTorch on random inputs of three lengths before the
manifest is written; the manifest records what was and was not verified.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import onnx
import onnxruntime as ort
from tqdm import tqdm

from engine.safe_write import describe_failure, discard, fsync_tree, temp_beside
from engine.voicepack import (
    F0_METHODS,
    LIMITS,
    NOTICE_NAME,
    ListedFile,
    NetworkSpec,
    StatefulGraph,
    TensorSpec,
    VoiceManifest,
    VoicePackError,
    decode_notice,
    load_manifest,
    sha256_file,
    unlisted_paths,
    write_manifest,
)
from exporters import parity
from exporters.references import ReferenceClipError, prepare_references, reference_paths, write_references
from exporters.graphs import GraphSpec, content_graph, decoder_graph, vocoder_graph

DEFAULT_OPSET = 17
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16"}
# Where the official repository keeps its assets, relative to its root (spec §9).
_OFFICIAL_VOCODER = "m4singer_hifigan/model_ckpt_steps_1970000.ckpt"
_OFFICIAL_CONTENT = "Content/checkpoint_best_legacy_500.pt"


class ExportError(RuntimeError):
    """A clear, user-facing reason the export cannot go on."""


def find_asset(given: str | None, ckpt: Path, config: dict, config_key: str | None, official: str,
               what: str) -> Path:
    """`given`, or the official path searched next to the checkpoint's repository and the cwd."""
    if given:
        path = Path(given)
        if not path.exists():
            raise ExportError(f"{what} not found: {path}")
        return path
    relative = [official]
    if config_key:
        value = (config.get("vocoder") or {}).get(config_key)
        if isinstance(value, str):
            relative.insert(0, value)
    roots = [Path.cwd(), ckpt.parent, *list(ckpt.resolve().parents)[:3]]
    tried = []
    for root in roots:
        for rel in relative:
            candidate = root / rel
            tried.append(str(candidate))
            if candidate.exists():
                return candidate
    raise ExportError(f"no {what} given and none found at the official locations "
                      f"({', '.join(dict.fromkeys(tried))}); pass it explicitly")


def check_out_folder(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an `--out` the exporter may not replace, before any work starts.

    It may be new, or an existing voice pack holding nothing but the pack's own files; it may never
    be, contain or lie above any input (checkpoint, config, vocoder, content encoder).
    """
    target = out.resolve()
    for source in inputs:
        resolved = source.resolve()
        if resolved == target or target in resolved.parents:
            raise ExportError(f"--out {out} holds the input {source}; choose a new folder for the voice pack "
                              "(nothing was changed)")
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder; choose a new folder (nothing was changed)")
    try:
        manifest = load_manifest(out, verify_hashes=False)
    except VoicePackError:
        raise ExportError(f"--out {out} exists and is not a voice pack, so it will not be replaced; "
                          "choose a new folder (nothing was changed)") from None
    others = unlisted_paths(out, manifest.files())
    if others:
        raise ExportError(f"--out {out} is a voice pack but also holds other files ({', '.join(others[:5])}), "
                          "so it will not be replaced; choose a new folder (nothing was changed)")


def _install(staging: Path, out: Path) -> None:
    """Move the finished pack into place; an old pack at `out` is swapped out first, then removed."""
    fsync_tree(staging)
    staging.chmod(0o755)
    if not out.exists():
        staging.rename(out)
        return
    old = temp_beside(out, folder=True)
    old.rmdir()
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    discard(old)


def _inputs(ckpt: Path, config: Path | None, *assets: Path | str | None) -> list[Path]:
    return [ckpt, Path(config) if config else ckpt.parent / "config.yaml", *(Path(a) for a in assets if a)]


def read_notice_file(path: Path) -> bytes:
    """The bytes of a `--notice` file: UTF-8 text of 1..`LIMITS["notice_bytes"]` bytes."""
    limit = LIMITS["notice_bytes"]
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ExportError(f"cannot read the notice {path} ({exc.strerror or exc})") from None
    if not data or len(data) > limit:
        raise ExportError(f"the notice {path} must hold 1 to {limit // 1024} KiB of text, "
                          f"it holds {'nothing' if not data else 'more'}")
    try:
        decode_notice(data, f"the notice {path}")
    except VoicePackError as exc:
        raise ExportError(str(exc)) from None
    return data


def parse_speaker_names(items: list[str]) -> dict[str, str]:
    """`--speaker-name ID=NAME` arguments → checkpoint speaker → the name the pack gives it (each ID once)."""
    names: dict[str, str] = {}
    for text in items:
        speaker, sep, name = text.partition("=")
        if not sep or not speaker:
            raise ExportError(f"--speaker-name takes ID=NAME, got {text!r}")
        if speaker in names:
            raise ExportError(f"--speaker-name renames speaker {speaker!r} twice")
        names[speaker] = name
    return names


def rename_speakers(speakers: dict[str, int], names: dict[str, str]) -> dict[str, int]:
    """The checkpoint's speakers (name → id) with `names` applied; refuses unknown speakers, empty,
    over-long and duplicate names."""
    unknown = sorted(set(names) - set(speakers))
    if unknown:
        raise ExportError(f"--speaker-name renames {', '.join(map(repr, unknown))}, which this checkpoint does not "
                          f"have (its speakers: {', '.join(speakers)})")
    for speaker, name in names.items():
        if not name.strip() or len(name) > LIMITS["name"]:
            raise ExportError(f"--speaker-name gives speaker {speaker!r} the name {name[:40]!r}: a name must be "
                              f"1 to {LIMITS['name']} characters, not only spaces")
    renamed = {names.get(speaker, speaker): index for speaker, index in speakers.items()}
    if len(renamed) < len(speakers):
        taken = [names.get(s, s) for s in speakers]
        twice = next(n for n in taken if taken.count(n) > 1)
        raise ExportError(f"--speaker-name would give two speakers the name {twice!r}")
    return renamed


def rename_references(references: dict[str, Path], names: dict[str, str]) -> dict[str, Path]:
    """`--reference` keys, each a checkpoint speaker or its new name, → the new names."""
    new_names = set(names.values())
    out: dict[str, Path] = {}
    for speaker, path in references.items():
        if speaker in names and speaker in new_names and names[speaker] != speaker:
            raise ExportError(f"--reference {speaker!r} is ambiguous: it is a speaker renamed by --speaker-name and "
                              "another speaker's new name")
        name = names.get(speaker, speaker)
        if name in out:
            raise ExportError(f"--reference names speaker {name!r} twice (by its id and by its name)")
        out[name] = path
    return out


def _tensor_specs(items) -> list[TensorSpec]:
    return [TensorSpec(i.name, [d if isinstance(d, int) else str(d) for d in i.shape],
                       _ORT_DTYPES.get(i.type, i.type)) for i in items]


def _network_spec(path: Path, spec: GraphSpec, precision: str) -> NetworkSpec:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return NetworkSpec(
        file=path.name, sha256=sha256_file(path), size=path.stat().st_size,
        inputs=_tensor_specs(session.get_inputs()), outputs=_tensor_specs(session.get_outputs()),
        receptive_field=spec.receptive_field, frame_unit=spec.frame_unit, params=spec.params,
        precision=precision, extra=spec.extra,
    )


def export_pack(
    ckpt: Path,
    config: Path | None = None,
    vocoder: str | None = None,
    content: str | None = None,
    pitch: str | None = None,
    name: str | None = None,
    out: Path | None = None,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    quiet: bool = False,
    stateful: bool = True,
    references: dict[str, Path] | None = None,
    notice: Path | None = None,
    speaker_names: dict[str, str] | None = None,
) -> tuple[Path, VoiceManifest, dict[str, parity.ParityResult]]:
    """Export a voice pack; returns (folder, manifest, parity results). With `stateful`, the decoder
    and vocoder are also exported as stateful graphs (exporters/stateful.py) for the stateful engine.
    `references`: speaker (its checkpoint name or its new one) → audio file of that voice, written as
    its ≤ 5 s preview clip; `notice`: a UTF-8 text file shipped as the pack's SOURCES.md;
    `speaker_names`: checkpoint speaker → the name the pack (and the app) gives it."""
    from models.checkpoints import CheckpointError
    from models.comosvc import load_official
    from models.content import load_content_encoder
    from models.vocoder import load_vocoder

    ckpt = Path(ckpt)
    out = Path(out) if out else ckpt.parent / "voicepack"
    references, names = references or {}, speaker_names or {}
    check_out_folder(out, _inputs(ckpt, config, vocoder, content, notice, *references.values()))
    notice_bytes = read_notice_file(Path(notice)) if notice else None
    try:
        loaded = load_official(ckpt, config)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    except (ValueError, KeyError, TypeError) as exc:  # malformed configs the loader did not name (as models.infer)
        raise ExportError(f"{ckpt}: cannot use this checkpoint/config ({type(exc).__name__}: {exc})") from exc
    # The engine must extract F0 as training did: default to the config's extractor (official: DIO).
    pitch = pitch or str((loaded.config.get("data") or {}).get("f0_extractor", "dio"))
    if pitch not in F0_METHODS:
        raise ExportError(f"unknown F0 method {pitch!r}; choose one of {', '.join(F0_METHODS)}")
    speakers = rename_speakers(loaded.speakers or {"default": 0}, names)
    try:
        clips = prepare_references(rename_references(references, names), speakers)
    except ReferenceClipError as exc:
        raise ExportError(str(exc)) from exc
    steps = (["load", "decoder", "vocoder", "content"] + (["pitch"] if pitch == "fcpe" else [])
             + (["stateful"] if stateful else []) + ["manifest"])
    bar = tqdm(total=len(steps), desc="export", unit="step", disable=quiet, file=sys.stderr)
    if loaded.kind != "student":
        raise ExportError(f"{ckpt} is a teacher checkpoint: a live voice needs the one-step consistency "
                          "student (train.py -t ... in the official repo); convert files with the teacher "
                          "through `python -m models.infer --teacher` instead")
    try:
        vocoder_path = find_asset(vocoder, ckpt, loaded.config, "ckpt", _OFFICIAL_VOCODER, "vocoder")
        content_path = find_asset(content, ckpt, loaded.config, None, _OFFICIAL_CONTENT, "content encoder")
        check_out_folder(out, _inputs(ckpt, config, vocoder_path, content_path))
        voc = load_vocoder(vocoder_path)
        enc = load_content_encoder(content_path)
    except (CheckpointError, ValueError) as exc:
        raise ExportError(str(exc)) from exc
    if enc.width != loaded.model.units_dim:
        raise ExportError(f"the content encoder gives {enc.width}-d features but the model was trained on "
                          f"{loaded.model.units_dim}-d ones (data.encoder_out_channels)")
    bar.update()

    graphs = [decoder_graph(loaded.model), vocoder_graph(voc), content_graph(enc)]
    results: dict[str, parity.ParityResult] = {}
    networks: dict[str, NetworkSpec] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside the destination, so the final rename never crosses file systems.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        for spec in graphs:
            precision = "fp16" if fp16 and spec.name in ("decoder", "content") else "fp32"
            path = staging / f"{spec.name}.onnx"
            bar.set_description(f"export {spec.name}")
            spec.export(path, opset, fp16=precision == "fp16")
            onnx.checker.check_model(str(path))
            results[spec.name] = parity.check(spec, path, precision)
            networks[spec.name] = _network_spec(path, spec, precision)
            bar.update()
        stateful_info = _export_stateful(staging, loaded.model, voc, enc, graphs, networks, results, opset,
                                         fp16, bar) if stateful else {}
        f0 = {"method": pitch, "min": 50.0, "max": 1100.0}
        if pitch == "fcpe":
            from exporters.fcpe import check_fcpe_parity, export_fcpe

            bar.set_description("export pitch")
            path = staging / "pitch.onnx"
            info = export_fcpe(path, opset=opset)
            results["pitch"] = check_fcpe_parity(path)
            networks["pitch"] = NetworkSpec(
                file=path.name, sha256=sha256_file(path), size=path.stat().st_size,
                inputs=[TensorSpec(**t) for t in info["inputs"]], outputs=[TensorSpec(**t) for t in info["outputs"]],
                receptive_field=info["receptive_field"], frame_unit="pitch_frames", params=int(info["params"]),
                extra={"sample_rate": info["sample_rate"], "hop": info["hop"], **info.get("extra", {})},
            )
            bar.update()
        reference_clips = write_references(staging, clips)
        notice_file = _write_notice(staging, notice_bytes) if notice_bytes is not None else None
        listed = ({net.file for net in networks.values()} | {clip.file for clip in reference_clips.values()}
                  | ({notice_file.file} if notice_file else set()))
        strays = unlisted_paths(staging, listed)
        if strays:  # torch writes weights beside a graph over 2 GB; the engine loads one file per network
            raise ExportError(f"the export wrote external data files ({', '.join(strays[:5])}), which a voice pack "
                              "may not hold: a network is too large for a single ONNX file (2 GB)")
        manifest = VoiceManifest(
            name=name or ckpt.parent.name or ckpt.stem,
            speakers=speakers,
            sample_rate=24000, hop_length=128,
            mel={"n_mels": 80, "n_fft": 512, "win_length": 512, "fmin": 30, "fmax": 12000,
                 "log": "log10", "spec_min": -6.0, "spec_max": 1.5},
            content={"kind": enc.kind, "width": enc.width, "sample_rate": enc.sample_rate,
                     "hop": enc.hop, "window": enc.window, **({"offset": enc.offset} if enc.offset else {})},
            f0=f0,
            networks=networks,
            verification={name: r.as_json() if hasattr(r, "as_json") else r for name, r in results.items()},
            stateful=stateful_info,
            references=reference_clips,
            notice=notice_file,
            source={"checkpoint": ckpt.name, "kind": loaded.kind, "global_step": loaded.global_step,
                    "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "opset": opset},
        )
        write_manifest(staging, manifest)
        bar.update()
        _install(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out, manifest, results


def _write_notice(folder: Path, data: bytes) -> ListedFile:
    path = folder / NOTICE_NAME
    path.write_bytes(data)
    return ListedFile(NOTICE_NAME, sha256_file(path), len(data))


def _export_stateful(staging: Path, model, vocoder, encoder, graphs: list[GraphSpec],
                     networks: dict[str, NetworkSpec], results: dict, opset: int, fp16: bool,
                     bar) -> dict[str, StatefulGraph]:
    """Export and check the stateful graphs beside their whole-sequence graphs (same precision)."""
    from exporters import stateful

    by_name = {g.name: g for g in graphs}
    info = {}
    for spec in stateful.stateful_graphs(model, vocoder, by_name["decoder"], by_name["vocoder"], encoder,
                                         by_name["content"]):
        precision = networks[spec.streams.name].precision
        path = staging / f"{spec.name}.onnx"
        bar.set_description(f"export {spec.name}")
        spec.export(path, opset, fp16=precision == "fp16")
        onnx.checker.check_model(str(path))
        results[spec.name] = stateful.check(spec, path, staging / networks[spec.streams.name].file, precision)
        networks[spec.name] = _network_spec(path, spec, precision)
        info[spec.name] = spec.manifest_entry(vocoder.hop_size, results[spec.name])
    bar.update()
    return info


def summary(folder: Path, manifest: VoiceManifest, results: dict) -> str:
    lines = [f"voice pack: {folder}", f"  name: {manifest.name}   speakers: {', '.join(manifest.speakers)}"]
    if manifest.references:
        lines.append(f"  preview clips: {', '.join(f'{s} ({c.file})' for s, c in manifest.references.items())}")
    if manifest.notice:
        lines.append(f"  notice: {manifest.notice.file} ({manifest.notice.size} bytes)")
    for name, net in manifest.networks.items():
        res = results.get(name)
        if isinstance(res, parity.ParityResult):
            check = (f"max rel. L2 vs torch {res.worst:.1e} (bound {res.bound:.0e})" if res.verified
                     else res.note)
        else:
            check = json.dumps(res) if res else "not checked"
        rf = "unbounded" if net.receptive_field is None else f"{net.receptive_field} {net.frame_unit}"
        lines.append(f"  {net.file:14s} {net.size / 2**20:8.2f} MiB  {net.params / 1e6:7.2f} M params  "
                     f"{net.precision}  receptive field {rf}  {check}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.onnx_export", description=__doc__.split("\n")[0])
    parser.add_argument("ckpt", type=Path, help="official student checkpoint (logs/como/model_<step>.pt)")
    parser.add_argument("--config", type=Path, help="config.yaml (default: next to the checkpoint)")
    parser.add_argument("--vocoder", help="M4Singer .ckpt (config.yaml beside it), openvpi model (config.json) or "
                                          "harmonic-plus-noise hn_vocoder_<step>.ckpt")
    parser.add_argument("--content", help="ContentVec (fairseq .pt or HF folder) or a PPG encoder .pt")
    parser.add_argument("--pitch", choices=F0_METHODS, default=None,
                        help="F0 extractor the engine uses (default: the one the model was trained with, "
                             "data.f0_extractor; fcpe adds pitch.onnx; yin needs no lookahead)")
    parser.add_argument("--name", help="voice name shown in the app (default: the checkpoint's folder)")
    parser.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/voicepack)")
    parser.add_argument("--reference", action="append", default=[], metavar="SPEAKER=PATH",
                        help="a recording of SPEAKER's voice (any audio file; the first 5 s are used), shipped as "
                             "the preview the app plays when the speaker is chosen; repeat per speaker "
                             "(SPEAKER: the checkpoint's name or the one --speaker-name gives)")
    parser.add_argument("--speaker-name", action="append", default=[], metavar="ID=NAME",
                        help="show the checkpoint's speaker ID as NAME (in the pack and the app); repeat per speaker")
    parser.add_argument("--notice", type=Path, metavar="FILE",
                        help=f"a UTF-8 text file (at most {LIMITS['notice_bytes'] // 1024} KiB) naming the voice's "
                             f"sources and licences, shipped in the pack as {NOTICE_NAME}")
    parser.add_argument("--fp16", action="store_true", help="half precision decoder and content encoder")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-stateful", action="store_true",
                        help="skip the stateful decoder/vocoder graphs (the engine then uses its windowed path)")
    args = parser.parse_args(argv)
    try:
        folder, manifest, results = export_pack(args.ckpt, args.config, args.vocoder, args.content, args.pitch,
                                                args.name, args.out, args.fp16, args.opset, args.quiet,
                                                stateful=not args.no_stateful,
                                                references=reference_paths(args.reference), notice=args.notice,
                                                speaker_names=parse_speaker_names(args.speaker_name))
    except (ExportError, ReferenceClipError, parity.ParityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk or an unwritable folder while writing the pack (nothing was kept)
        print(f"error: {describe_failure(exc, args.out or args.ckpt.parent / 'voicepack')}", file=sys.stderr)
        return 2
    print(summary(folder, manifest, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
