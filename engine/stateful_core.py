"""The stateful neural voice: a pack's stateful decoder and vocoder fed only new frames.

Features (F0, loudness, content units) come from `NeuralCore`'s feature machinery, taken only once
they are final (frame k once the input reaches 128 k + `feature_lookahead_samples`), so each frame's
features never change.
Each block then runs `decoder_stateful.onnx` on the new frames and `vocoder_stateful.onnx` on the mel
frames that became final (and, for a PPG pack, `content_stateful.onnx` on the new audio: content
frames come out final, `delay` frames late, without re-reading the encoder's left context), carrying every convolution's state, the frame position and the harmonic
phase between blocks (exporters/stateful.py). Nothing is recomputed and nothing is crossfaded: the
output is the whole-file conversion, however the input is chunked, delayed by

    latency = feature lookahead (samples after a frame's position) + HOP·decoder delay − 1
              + vocoder delay                                                  (24 kHz samples)

(− 1: the last sample a frame needs is the one before the input's end). With the frame-local
features of a low-latency pack (YIN F0, mel-grid content) the feature lookahead is half a frame:
the end of frame k's loudness window, 128 k + 64.

On CUDA / TensorRT the states stay on the device between blocks (IO binding, `_DeviceStates`); on
CPU they are plain arrays.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from engine.history import History
from engine.model_audio import HOP, MODEL_RATE
from engine.neural_core import NeuralCore
from engine.runtime import RuntimeSession
from engine.voicepack import StatefulGraph, VoiceManifest

_KEEP_FRAMES = 8 * MODEL_RATE // HOP


class StatefulGraphRunner:
    """One stateful graph and its states: `run(feeds)` -> main output, states updated in place."""

    def __init__(self, session: RuntimeSession, graph: StatefulGraph) -> None:
        self.session, self.graph = session, graph
        self.names = [graph.output, f"{graph.position}_out", *(f"{s.name}_out" for s in graph.states)]
        self.on_device = session.provider != "CPU"
        self.reset()

    def reset(self) -> None:
        self.position = np.zeros(1, dtype=np.int64)
        self.states = [np.zeros(s.shape, dtype=np.float32) for s in self.graph.states]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.on_device:
            return self._run_bound(feeds)
        feeds = {**feeds, self.graph.position: self.position,
                 **{s.name: v for s, v in zip(self.graph.states, self.states)}}
        out = self.session.session.run(self.names, feeds)
        self.position, self.states = out[1], out[2:]
        return out[0]

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """IO binding: the states are OrtValues on the device, bound as the next call's inputs, so
        only the new frames go up and the output comes down. (Written for CUDA/TensorRT; the test
        machines have no GPU, so this path is not exercised by the tests.)"""
        import onnxruntime as ort

        session = self.session.session
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        binding.bind_cpu_input(self.graph.position, self.position)
        for spec, value in zip(self.graph.states, self.states):
            if isinstance(value, np.ndarray):  # first call after reset: upload the zeros once
                value = ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0)
            binding.bind_ortvalue_input(spec.name, value)
        for name in self.names:
            binding.bind_output(name, "cuda")
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self.position = outputs[1].numpy()
        self.states = list(outputs[2:])
        return outputs[0].numpy()


class StatefulCore(NeuralCore):
    """`VoiceCore` over a pack with stateful graphs (see engine/voice_core.py for the protocol).

    `lookahead_frames` is used only where the content encoder or F0 extractor can never be final
    (ContentVec, FCPE): then features are taken that many frames after the input, as the windowed
    core would; otherwise the exact feature lookahead is used and the output equals the whole file."""

    main_network = "decoder_stateful"

    def __init__(self, manifest: VoiceManifest, sessions: dict[str, RuntimeSession], lookahead_frames: int = 0,
                 context_ms: float = 500.0, pitch: float = 0.0, speaker: int = 0, seed: int = 0) -> None:
        missing = [n for n in ("decoder_stateful", "vocoder_stateful") if n not in manifest.stateful]
        if missing:
            raise ValueError(f"voice pack {manifest.name!r} has no {' or '.join(missing)} graph")
        self.decoder = StatefulGraphRunner(sessions["decoder_stateful"], manifest.stateful["decoder_stateful"])
        self.vocoder = StatefulGraphRunner(sessions["vocoder_stateful"], manifest.stateful["vocoder_stateful"])
        self.decoder_delay = int(round(manifest.stateful["decoder_stateful"].delay_frames))
        self.vocoder_delay = int(manifest.stateful["vocoder_stateful"].delay_samples)
        self.content = None
        if "content_stateful" in sessions:
            graph = manifest.stateful["content_stateful"]
            self.content = StatefulGraphRunner(sessions["content_stateful"], graph)
            per_frame = Fraction(int(manifest.content["hop"]) * MODEL_RATE, int(manifest.content["sample_rate"]))
            delay = graph.delay_samples / per_frame
            if delay.denominator != 1:
                raise ValueError(f"voice pack {manifest.name!r}: content_stateful's delay is not whole content frames")
            self.content_delay_frames = int(delay)
        self._fallback_lookahead = int(lookahead_frames)
        super().__init__(manifest, sessions, lookahead_frames=0, crossfade_frames=0, context_ms=context_ms,
                         pitch=pitch, speaker=speaker, seed=seed)
        exact = self.feature_lookahead_samples
        self.exact = exact is not None
        # frame k is decoded once the input reaches 128 k + feature_need
        self.feature_need = exact if exact is not None else HOP * (self._fallback_lookahead + 1)
        self.feature_frames = max(0, -(-self.feature_need // HOP) - 1)
        self.lookahead_frames = self.feature_frames + self.decoder_delay

    # ------------------------------------------------------------------ protocol
    @property
    def latency_24k(self) -> int:
        return self.feature_need + HOP * self.decoder_delay - 1 + self.vocoder_delay

    @property
    def lookahead_24k(self) -> int:
        """Future audio the voice waits for: the features' lookahead beyond half a frame (which
        the converter's breakdown counts as frame rounding) and both networks' right context."""
        return self.feature_need - HOP // 2 + HOP * self.decoder_delay + self.vocoder_delay

    @property
    def exact_lookahead_frames(self) -> int | None:
        """Streaming equals whole-file conversion whenever the features can be final."""
        return self.lookahead_frames if self.exact else None

    def describe(self) -> str:
        return f"{self.manifest.name} ({self.manifest.content['kind']}, stateful, {self.provider})"

    def reset(self) -> None:
        super().reset()
        self.decoder.reset()
        self.vocoder.reset()
        if self.content is not None:
            self.content.reset()
        self._content_fed = 0                        # encoder input samples given to content_stateful
        self._fed = 0                                # frames given to the decoder
        self._voiced = 0                             # frames given to the vocoder
        self._mel = History(_KEEP_FRAMES, self.n_mels)
        self._f0_used = History(_KEEP_FRAMES)        # F0 (pitch-shifted) as the decoder got it

    def _advance(self) -> None:
        final = (self._audio.end - self.feature_need) // HOP + 1
        if final > self._fed:
            self._decode(final)
            self._vocode(final - self.decoder_delay)

    def _reserve(self, samples: int) -> None:
        super()._reserve(samples)
        for history in (self._mel, self._f0_used):
            history.reserve(samples // HOP + 64)

    # ------------------------------------------------------------------ features
    def _update_units(self, need_start: int) -> None:
        """With content_stateful: the new whole hops of encoder input through it; the frames that come
        out are final. (Encoder input sample i is the content stream's sample i + offset.)"""
        if self.content is None:
            super()._update_units(need_start)
            return
        hop, shift = self.content_hop, self.content_offset + self._content_delay
        n = (self._content_audio.end - shift - self._content_fed) // hop
        if n <= 0:
            return
        start = self._content_fed + shift
        units = self.content.run({"audio": self._content_audio.read(start, start + n * hop)[None]})[0]
        first = self._content_fed // hop - self.content_delay_frames   # content frame of units[0]
        skip = max(0, -first)
        if n > skip:
            self._units.write(first + skip, units[skip:])
        self._units_final = max(self._units_final, first + n)
        self._content_fed += n * hop

    # ------------------------------------------------------------------ synthesis
    def _decode(self, stop: int) -> None:
        """Frames [fed, stop) through the stateful decoder; keep the mel of the frames that came out."""
        start = self._fed
        feats = self._features(start, stop)
        if self.exact and (min(self._f0_final, self._volume_final) < stop
                           or self._content_index(np.array([stop - 1]))[0] >= self._units_final):
            raise RuntimeError("stateful core: features were used before they were final (a bug)")
        graph_inputs = self.decoder.session.input_names
        mel = self.decoder.run({k: v for k, v in feats.items() if k in graph_inputs})[0]
        self._f0_used.write(start, feats["f0"][0])
        first = start - self.decoder_delay                # mel frame of mel[0]
        if first + len(mel) > 0:
            skip = max(0, -first)
            self._mel.write(first + skip, mel[skip:])
        self._fed = stop

    def _vocode(self, stop: int) -> None:
        """Mel frames [voiced, stop) through the stateful vocoder into the output history."""
        start = self._voiced
        if stop <= start:
            return
        audio = self.vocoder.run({
            "mel": self._mel.read(start, stop)[None],
            "f0": self._f0_used.read(start, stop)[None].astype(np.float32),
            "noise": self._source_noise.take(start * HOP, stop * HOP)[None],
        })[0]
        first = start * HOP - self.vocoder_delay
        if first + len(audio) > 0:
            skip = max(0, -first)
            self._out.write(first + skip, audio[skip:])
        self._voiced = stop
