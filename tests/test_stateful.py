"""Stateful streaming: cached-state networks equal the whole-sequence ones, exported graphs keep
their parity, and the stateful core equals whole-file conversion for any chunking."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.converter import Converter, convert_whole
from engine.settings import Settings
from engine.voicepack import load_manifest
from engine.voices import load_voice, open_neural_core
from tests.test_streaming import _snr, _sung

CHUNKS = [1, 3, 7, 2, 11, 16, 1, 1, 5]  # frames per call; covers 1-frame calls and odd sizes


def _rel(reference: torch.Tensor, value: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


@pytest.fixture(scope="module")
def stateful_pack(tmp_path_factory) -> Path:
    """The tiny PPG pack with stateful graphs (official symmetric networks)."""
    from tests.fixtures.packs import export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("stateful_pack"), stateful=True)


@pytest.fixture(scope="module")
def causal_pack(tmp_path_factory) -> Path:
    """Decoder and vocoder with 2 frames of right context each."""
    from tests.fixtures.packs import export_tiny_pack

    return export_tiny_pack(tmp_path_factory.mktemp("causal_pack"), stateful=True, right_context=2)


# ---------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("right_context", [None, 0, 2])
def test_stateful_decoder_streams_the_whole_decoder(right_context, one_torch_thread) -> None:
    from models.comosvc import CoMoSVC, OneStepDecoder, StatefulDecoder

    torch.manual_seed(0)
    model = CoMoSVC(units_dim=16, n_spk=2, n_layers=4, n_chans=16, n_hidden=8, right_context=right_context).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    left, right = model.decoder.denoise_fn.receptive_field
    assert left + right == 2 * 4 and right == (4 if right_context is None else min(right_context, 4))
    t = sum(CHUNKS)
    g = torch.Generator().manual_seed(1)
    units, f0 = torch.randn(1, t, 16, generator=g), 100 + 400 * torch.rand(1, t, generator=g)
    volume, speaker, noise = torch.rand(1, t, generator=g), torch.tensor([1]), torch.randn(1, t, 80, generator=g)
    stateful = StatefulDecoder(model).eval()
    assert stateful.delay == right
    with torch.no_grad():
        whole = OneStepDecoder(model)(units, f0, volume, speaker, noise)
        states = [torch.zeros(1, *s.shape) for s in stateful.state_specs]
        position, pieces, start = torch.zeros(1, dtype=torch.int64), [], 0
        for n in CHUNKS:
            out = stateful(units[:, start:start + n], f0[:, start:start + n], volume[:, start:start + n], speaker,
                           noise[:, start:start + n], position, *states)
            pieces.append(out[0])
            position, states, start = out[1], list(out[2:]), start + n
    streamed = torch.cat(pieces, 1)
    assert int(position) == t
    assert _rel(whole[:, : t - right], streamed[:, right:]) <= 1e-5


@pytest.mark.parametrize("layout", ["m4singer", "openvpi"])
@pytest.mark.parametrize("right_context", [None, 0, 2])
def test_stateful_vocoder_streams_the_whole_vocoder(layout, right_context, one_torch_thread) -> None:
    from models.vocoder import NSFHiFiGAN, StatefulVocoder
    from tests.fixtures.vocoder import vocoder_config

    torch.manual_seed(0)
    vocoder = NSFHiFiGAN(vocoder_config(layout, "tiny", right_context=right_context)).eval()
    for p in vocoder.parameters():
        p.data.normal_(0, 0.2)
    t, hop, harmonics = sum(CHUNKS), vocoder.hop_size, vocoder.n_harmonics
    g = torch.Generator().manual_seed(1)
    mel, f0 = -4 + torch.randn(1, t, 80, generator=g), 100 + 400 * torch.rand(1, t, generator=g)
    f0[:, 10:15] = 0  # an unvoiced stretch
    noise = torch.randn(1, t * hop, harmonics, generator=g)
    stateful = StatefulVocoder(vocoder).eval()
    right_frames = vocoder.receptive_field[1]
    if right_context is not None:
        assert right_frames == min(right_context, 3)
    assert stateful.delay <= right_frames * hop + hop  # the delay is the right receptive field
    with torch.no_grad():
        whole = vocoder(mel, f0, torch.zeros(1, harmonics), noise)
    streamed, d = stream_vocoder(stateful, mel, f0, noise, CHUNKS), stateful.delay
    assert _rel(whole[:, : t * hop - d], streamed[:, d:]) <= 1e-4


def stream_vocoder(stateful: torch.nn.Module, mel: torch.Tensor, f0: torch.Tensor, noise: torch.Tensor,
                   chunks: list[int]) -> torch.Tensor:
    """A stateful vocoder module over mel/f0/noise in chunks of `chunks` frames -> the joined audio."""
    hop = noise.shape[1] // mel.shape[1]
    with torch.no_grad():
        states = [torch.zeros(1, *s.shape) for s in stateful.state_specs]
        position, pieces, start = torch.zeros(1, dtype=torch.int64), [], 0
        for n in chunks:
            out = stateful(mel[:, start:start + n], f0[:, start:start + n], noise[:, start * hop:(start + n) * hop],
                           position, *states)
            pieces.append(out[0])
            position, states, start = out[1], list(out[2:]), start + n
    return torch.cat(pieces, 1)


def test_official_checkpoints_keep_their_symmetric_networks() -> None:
    """right_context is not in official configs: same state-dict keys, symmetric receptive fields."""
    from models.comosvc import CoMoSVC
    from models.vocoder import NSFHiFiGAN
    from tests.fixtures.vocoder import vocoder_config

    assert CoMoSVC(n_layers=20).decoder.denoise_fn.receptive_field == (20, 20)
    assert NSFHiFiGAN(vocoder_config("m4singer", "tiny")).receptive_field == (15, 15)
    a = NSFHiFiGAN(vocoder_config("m4singer", "tiny")).state_dict()
    b = NSFHiFiGAN(vocoder_config("m4singer", "tiny", right_context=2)).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


# ---------------------------------------------------------------------------------------- export
def test_manifest_records_the_stateful_graphs(stateful_pack: Path) -> None:
    manifest = load_manifest(stateful_pack)
    assert manifest.format_version == 2
    assert set(manifest.stateful) == {"decoder_stateful", "vocoder_stateful", "content_stateful"}
    decoder, vocoder = manifest.stateful["decoder_stateful"], manifest.stateful["vocoder_stateful"]
    assert decoder.delay_frames == 2 and decoder.delay_samples == 256       # 2 WaveNet layers
    assert vocoder.delay_samples == 1842 and vocoder.delay_frames == pytest.approx(1842 / 128)
    for graph in (decoder, vocoder):
        assert graph.parity["verified"] and max(graph.parity["max_rel_l2"].values()) <= 1e-4
        assert all(s.initial == "zeros" and s.dtype == "float32" and s.shape[0] == 1 for s in graph.states)
        inputs = {t.name for t in manifest.networks[graph.streams + "_stateful"].inputs}
        assert {s.name for s in graph.states} | {graph.position} <= inputs
    assert [s.name for s in vocoder.states][0] == "vocoder_phase"
    content = manifest.stateful["content_stateful"]
    assert content.delay_samples == 480 * (1 + 2)  # front end one hop late + 2 blocks of (1, 1) padding
    assert content.parity["verified"] and max(content.parity["max_rel_l2"].values()) <= 1e-4


def test_stateful_ppg_streams_the_whole_encoder(one_torch_thread) -> None:
    from models.content.ppg import PPGConfig, PPGEncoder, StatefulPPG

    for right_context in (None, 0, 1):
        torch.manual_seed(0)
        encoder = PPGEncoder(PPGConfig(width=20, channels=16, kernels=(3, 5, 3), dilations=(1, 2, 1),
                                       right_context=right_context)).eval()
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
        assert encoder.receptive_field == {None: (6, 6), 0: (12, 0), 1: (11, 1)}[right_context]
        t = sum(CHUNKS)
        audio = 0.1 * torch.randn(1, 320 * t)
        stateful = StatefulPPG(encoder).eval()
        assert stateful.delay == 1 + encoder.receptive_field[1]
        with torch.no_grad():
            whole = encoder(audio)
            states = [torch.zeros(1, *s.shape) for s in stateful.state_specs]
            position, pieces, start = torch.zeros(1, dtype=torch.int64), [], 0
            for n in CHUNKS:
                out = stateful(audio[:, 320 * start: 320 * (start + n)], position, *states)
                pieces.append(out[0])
                position, states, start = out[1], list(out[2:]), start + n
        streamed, d = torch.cat(pieces, 1), stateful.delay
        usable = t - d
        assert _rel(whole[:, :usable], streamed[:, d:d + usable]) <= 1e-5


def test_stateful_parity_fails_loudly_when_the_graph_is_wrong(stateful_pack: Path, tmp_path: Path) -> None:
    """The export check compares against the whole graph: a stream with a wrong delay is refused."""
    from exporters import stateful
    from exporters.graphs import decoder_graph, vocoder_graph
    from exporters.parity import ParityError
    from models.comosvc import load_official
    from models.vocoder import load_vocoder

    src = stateful_pack.parent / "src"
    model = load_official(src / "como" / "model_2000.pt").model
    voc = load_vocoder(next((src / "vocoder").glob("*.ckpt")))
    spec = stateful.stateful_graphs(model, voc, decoder_graph(model), vocoder_graph(voc))[0]
    spec.delay += 1
    with pytest.raises(ParityError, match="does not stream the whole-sequence graph"):
        stateful.check(spec, stateful_pack / "decoder_stateful.onnx", stateful_pack / "decoder.onnx", frames=60)


def test_version_1_packs_still_load_with_the_windowed_core(ppg_pack: Path, tmp_path: Path) -> None:
    import shutil

    from engine.neural_core import NeuralCore

    old = tmp_path / "old"
    shutil.copytree(ppg_pack, old)
    data = json.loads((old / "voice.json").read_text())
    data["format_version"] = 1
    data.pop("stateful", None)
    (old / "voice.json").write_text(json.dumps(data))
    assert load_manifest(old).stateful == {}
    core = load_voice(str(old), Settings(gate_db=-120), prefer=("cpu",))
    assert type(core) is NeuralCore


# ---------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def stateful_whole(stateful_pack: Path):
    settings = Settings(gate_db=-120)
    core = load_voice(str(stateful_pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 48000)
    x = _sung(1.6, 48000)
    return conv, x, convert_whole(conv, x)


@pytest.mark.parametrize("block", [1, 97, 480, 1931, 4801])
def test_stateful_streaming_equals_whole(stateful_whole, block: int) -> None:
    conv, x, whole = stateful_whole
    assert type(conv.core).__name__ == "StatefulCore" and conv.core.exact
    assert np.sqrt(np.mean(whole ** 2)) > 1e-3
    conv.reset()
    streamed = convert_whole(conv, x, block=block)
    assert _snr(whole, streamed) >= 60.0   # the whole output, first block included: no crossfade


def test_stateful_core_equals_the_exact_windowed_core(stateful_pack: Path, stateful_whole) -> None:
    """Same features, noise and phase: the windowed core at its exact lookahead gives the same audio.
    A latency off by one sample would ruin the match, so this also pins `latency()`."""
    conv, x, whole = stateful_whole
    assert conv.core.content is not None       # 16 kHz PPG through content_stateful.onnx
    manifest = load_manifest(stateful_pack)
    probe = open_neural_core(manifest, Settings(), stateful=False)
    settings = Settings(gate_db=-120, crossfade_ms=0, lookahead_ms=probe.exact_lookahead_frames * 128 / 24)
    windowed = Converter(lambda s: open_neural_core(manifest, s, stateful=False), settings, 48000)
    assert windowed.core.lookahead_frames >= windowed.core.exact_lookahead_frames
    reference = convert_whole(windowed, x)
    assert _snr(reference, whole) >= 60.0
    core = conv.core
    assert core.latency_24k == core.feature_need + 128 * core.decoder_delay - 1 + core.vocoder_delay


def test_stateful_latency_is_the_reported_one(stateful_pack: Path) -> None:
    settings = Settings(gate_db=-120, bypass=True)
    core = load_voice(str(stateful_pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 48000)
    x = np.zeros(48000, np.float32)
    x[4000] = 0.5
    y = np.concatenate([conv.process(x[i:i + 480]) for i in range(0, len(x), 480)])
    assert int(np.argmax(np.abs(y))) == 4000 + conv.latency()
    assert conv.latency_breakdown().algorithmic == conv.latency()


def test_causal_pack_streams_with_its_small_network_delay(causal_pack: Path) -> None:
    """Bounded right context: the networks add 2 frames (decoder) and ≤ 2 frames (vocoder); the rest
    of the latency is the feature lookahead (DIO's 20 frames, see the report) and the resamplers."""
    settings = Settings(gate_db=-120, block_ms=20)
    core = load_voice(str(causal_pack), settings, prefer=("cpu",))
    assert core.decoder_delay == 2 and core.vocoder_delay <= 2 * 128
    conv = Converter(lambda s: core, settings, 48000)
    x = _sung(1.0, 48000)
    whole = convert_whole(conv, x)
    conv.reset()
    assert _snr(whole, convert_whole(conv, x, block=960)) >= 60.0
    assert conv.latency_breakdown().algorithmic == conv.latency()


@pytest.mark.slow
def test_official_size_stateful_graphs_stream_exactly(tmp_path: Path) -> None:
    """Full-size decoder (WaveNet 20×512, 768-d units) and vocoder (NSF-HiFiGAN 512 ch), random
    weights: the exported stateful graphs reproduce the whole-sequence graphs over random chunkings."""
    from exporters import stateful
    from exporters.graphs import decoder_graph, vocoder_graph
    from models.comosvc import CoMoSVC
    from models.vocoder import NSFHiFiGAN
    from tests.fixtures.vocoder import vocoder_config

    torch.manual_seed(0)
    model = CoMoSVC(units_dim=768, n_spk=2, n_layers=20, n_chans=512, n_hidden=256).eval()
    torch.nn.init.normal_(model.decoder.denoise_fn.output_projection.weight, std=0.02)  # zero-initialised
    vocoder = NSFHiFiGAN(vocoder_config("m4singer", "full")).eval()
    dec, voc = decoder_graph(model), vocoder_graph(vocoder)
    for whole in (dec, voc):
        whole.export(tmp_path / f"{whole.name}.onnx", 17)
    for spec in stateful.stateful_graphs(model, vocoder, dec, voc):
        assert spec.delay == {"decoder_stateful": 20, "vocoder_stateful": 1842}[spec.name]
        path = tmp_path / f"{spec.name}.onnx"
        spec.export(path, 17)
        result = stateful.check(spec, path, tmp_path / f"{spec.streams.name}.onnx", frames=120)
        assert result.verified and result.worst <= 1e-4


def test_fp16_stateful_decoder_is_checked_against_the_fp16_whole_graph(tmp_path: Path) -> None:
    from exporters import stateful
    from exporters.graphs import decoder_graph, vocoder_graph
    from models.comosvc import CoMoSVC
    from models.vocoder import NSFHiFiGAN
    from tests.fixtures.vocoder import vocoder_config

    torch.manual_seed(0)
    model = CoMoSVC(units_dim=16, n_spk=1, n_layers=3, n_chans=16, n_hidden=8).eval()
    torch.nn.init.normal_(model.decoder.denoise_fn.output_projection.weight, std=0.2)
    vocoder = NSFHiFiGAN(vocoder_config("m4singer", "tiny")).eval()
    dec = decoder_graph(model)
    dec.export(tmp_path / "decoder.onnx", 17, fp16=True)
    spec = stateful.stateful_graphs(model, vocoder, dec, vocoder_graph(vocoder))[0]
    spec.export(tmp_path / "decoder_stateful.onnx", 17, fp16=True)
    result = stateful.check(spec, tmp_path / "decoder_stateful.onnx", tmp_path / "decoder.onnx", "fp16", frames=80)
    assert result.bound == 1e-2
    assert (result.verified and result.worst <= 1e-2) or result.note.startswith("not verified")


# ------------------------------------------------------------------------------- low-latency pack
def convert_sung(pack: Path, seconds: float) -> tuple[Converter, np.ndarray, np.ndarray]:
    """(converter at 20 ms blocks and 48 kHz with the pack's preferred core, a sung input of
    `seconds`, its whole-file conversion)."""
    settings = Settings(gate_db=-120, block_ms=20)
    core = load_voice(str(pack), settings, prefer=("cpu",))
    conv = Converter(lambda s: core, settings, 48000)
    x = _sung(seconds, 48000)
    return conv, x, convert_whole(conv, x)


@pytest.fixture(scope="module")
def low_latency_whole(low_latency_pack: Path):
    return convert_sung(low_latency_pack, 1.6)


@pytest.mark.parametrize("block", [1, 97, 960, 1931])
def test_low_latency_pack_streams_exactly(low_latency_whole, block: int) -> None:
    conv, x, whole = low_latency_whole
    assert type(conv.core).__name__ == "StatefulCore" and conv.core.exact
    assert np.sqrt(np.mean(whole ** 2)) > 1e-3
    conv.reset()
    assert _snr(whole, convert_whole(conv, x, block=block)) >= 60.0


def test_low_latency_pack_needs_half_a_frame_of_features(low_latency_pack: Path, low_latency_whole) -> None:
    """YIN and the mel-grid PPG are final at the end of the frame's loudness window (128 k + 64), so
    the voice waits only for that and its decoder's one frame: at 20 ms blocks and 48 kHz the block
    plus the converter stay ≤ 35 ms, which leaves 15 ms of the 50 ms target for the compute budget
    (p99 ≤ 8.7 ms; `python -m benchmarks.streaming` measures it)."""
    conv, x, whole = low_latency_whole
    core = conv.core
    manifest = load_manifest(low_latency_pack)
    assert manifest.f0["method"] == "yin" and manifest.content["offset"] == 64 - 512
    assert core.feature_need == 64 and core.decoder_delay == 1 and core.vocoder_delay == 0
    assert core.content is not None and "content" not in core.sessions   # the PPG streams with state too
    assert core.latency_24k == 64 + 128 - 1
    breakdown = conv.latency_breakdown()
    assert breakdown.algorithmic == conv.latency()
    block_ms = 20.0
    assert block_ms + 1000.0 * conv.latency() / 48000 <= 35.0
    # the windowed core at its exact lookahead gives the same audio: pins the stateful latency
    windowed_settings = Settings(gate_db=-120, crossfade_ms=0,
                                 lookahead_ms=core.exact_lookahead_frames * 128 / 24)
    windowed = Converter(lambda s: open_neural_core(manifest, s, stateful=False), windowed_settings, 48000)
    assert windowed.core.exact_lookahead_frames == 1   # decoder 1 + features 0
    # From 0.1 s on: before that the windowed decoder sees the noise of frames before the stream's
    # start, which the stateful graphs zero; a latency off by one sample would fail everywhere.
    assert _snr(convert_whole(windowed, x)[4800:], whole[4800:]) >= 60.0
