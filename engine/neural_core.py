"""The neural voice: a voice pack's ONNX networks run as a stream at 24 kHz.

Everything is indexed by absolute mel frame (hop 128 at 24 kHz), which is what makes the output
independent of how the input was chunked:

- features (F0, loudness, content units) are computed for new frames only and cached; a frame's
  value is *final* once the audio its extractor needs exists, *provisional* before that (then it is
  recomputed next block);
- the decoder's noise is drawn by absolute frame and the vocoder's source noise by absolute sample
  (`PositionLockedNoise`), and the vocoder's harmonic phase is carried: the phase at the first
  committed-but-not-yet-played frame is kept and each window starts from it, counted back over the
  window's left context, so a frame gets the same noise and phase however the audio was chunked;
- each block, the decoder runs on the frames the vocoder needs plus the decoder's receptive field,
  and the vocoder on the new frames plus its receptive field, with sizes read from the manifest.

With lookahead ≥ what the networks and the F0 extractor need (see `exact_lookahead_frames`), every
frame is computed from final inputs with full context and streaming equals whole-file conversion.
With less lookahead, frames near the edge use provisional inputs, and a short crossfade joins the
previous block's provisional tail to the new block (both synthesised at the same absolute positions,
so no time search is needed).
"""
from __future__ import annotations

import numpy as np

from engine import f0_track, yin_pitch
from engine.history import History
from engine.model_audio import CONTENT_RATE, HOP, MODEL_RATE
from engine.noise import PositionLockedNoise
from engine.resample import StreamResampler
from engine.runtime import RuntimeSession
from engine.splice import crossfade, fade_in
from engine.voicepack import VoiceManifest

_KEEP_SECONDS = 8


class NeuralCore:
    """`VoiceCore` over a voice pack (see engine/voice_core.py for the protocol)."""

    main_network = "decoder"  # whose provider the UI reports

    def __init__(
        self,
        manifest: VoiceManifest,
        sessions: dict[str, RuntimeSession],
        lookahead_frames: int,
        crossfade_frames: int,
        context_ms: float = 500.0,
        pitch: float = 0.0,
        speaker: int = 0,
        seed: int = 0,
    ) -> None:
        if manifest.sample_rate != MODEL_RATE or manifest.hop_length != HOP:
            raise ValueError(f"voice pack runs at {manifest.sample_rate} Hz / hop {manifest.hop_length}; "
                             f"this engine needs {MODEL_RATE} Hz / hop {HOP}")
        self.manifest = manifest
        self.sessions = sessions
        self.lookahead_frames = int(lookahead_frames)
        self.crossfade_frames = int(crossfade_frames)
        self.context_ms = float(context_ms)
        self.seed = seed
        content = manifest.content
        self.content_hop = int(content["hop"])
        self.content_window = int(content["window"])
        self.content_width = int(content["width"])
        self.content_offset = int(content.get("offset", 0))
        self.content_rate = int(content["sample_rate"])
        if self.content_rate not in (CONTENT_RATE, MODEL_RATE):
            raise ValueError(f"voice pack's content encoder reads {self.content_rate} Hz audio; this engine feeds "
                             f"{CONTENT_RATE} or {MODEL_RATE} Hz")
        self.f0_method = manifest.f0["method"]        # one of voicepack.F0_METHODS (validated on load)
        self.content_rf = manifest.networks["content"].receptive_field
        self.decoder_rf = manifest.networks["decoder"].receptive_field or (0, 0)
        self.vocoder_rf = manifest.networks["vocoder"].receptive_field or (0, 0)
        self.n_harmonics = int(next(t for t in manifest.networks["vocoder"].inputs if t.name == "phase").shape[-1])
        self.n_mels = int(manifest.mel["n_mels"])
        self._pitch_factor = 2.0 ** (pitch / 12.0)
        self._speaker = np.array([speaker], dtype=np.int64)
        self.provider = sessions[self.main_network].provider
        self.provider_note = sessions[self.main_network].why_not_faster
        self.reset()

    # ------------------------------------------------------------------ protocol
    @property
    def latency_24k(self) -> int:
        """Output delay in 24 kHz samples: lookahead + crossfade frames held back, plus one frame
        of rounding (the input is taken in whole frames)."""
        return HOP * (self.hold_frames + 1)

    @property
    def lookahead_24k(self) -> int:
        return HOP * self.lookahead_frames

    @property
    def crossfade_24k(self) -> int:
        return HOP * self.crossfade_frames

    @property
    def hold_frames(self) -> int:
        return self.lookahead_frames + self.crossfade_frames

    @property
    def exact_lookahead_frames(self) -> int | None:
        """Lookahead (frames) from which streaming equals whole-file conversion; None if never."""
        features = self.feature_lookahead_frames
        return None if features is None else self.vocoder_rf[1] + self.decoder_rf[1] + features

    @property
    def feature_lookahead_frames(self) -> int | None:
        """Whole frames of audio after a frame that its F0, loudness and content units need to be
        final (equal to the whole-file values); None if they never are. Frame k is final once the
        input reaches 128 (k + 1 + this) (the windowed core takes input in whole frames)."""
        need = self.feature_lookahead_samples
        return None if need is None else max(0, -(-need // HOP) - 1)

    @property
    def feature_lookahead_samples(self) -> int | None:
        """24 kHz samples after frame k's position (128 k) that its F0, loudness and content units
        need to be final; None if they never are."""
        if self.content_rf is None or self.f0_method == "fcpe":
            return None  # attention (ContentVec) or FCPE's global normalisation: never exact
        f0 = yin_pitch.lookahead_samples() if self.f0_method == "yin" else HOP * (f0_track.RIGHT_MARGIN + 1)
        volume = HOP // 2                                    # frame k's RMS window ends at 128 k + 64
        return max(f0, volume, self._content_lookahead_samples())

    def _content_lookahead_samples(self) -> int:
        right = self.content_rf[1]
        if self.content_rate == MODEL_RATE:
            # Content frame j = mel frame j (the mel-grid framing: hop 128), final once the stream reaches
            # 128 (j + right) + offset + window.
            return HOP * right + self.content_offset + self.content_window
        # 16 kHz: mel frame k takes content frame floor(k · 4/15), which needs 16 kHz samples up to
        # 320 (j + right) + 400, lagging by the resampler; bounded over k by whole frames.
        frames = int(np.ceil((right * self.content_hop + self.content_window + self._d16)
                             * MODEL_RATE / CONTENT_RATE / HOP)) + 1
        return HOP * (frames + 1)

    def set_pitch(self, semitones: float) -> None:
        self._pitch_factor = 2.0 ** (float(semitones) / 12.0)

    def set_speaker(self, index: int) -> None:
        if not 0 <= index < max(self.manifest.speakers.values()) + 1:
            raise ValueError(f"speaker {index} does not exist in voice {self.manifest.name!r}")
        self._speaker = np.array([index], dtype=np.int64)

    def describe(self) -> str:
        return f"{self.manifest.name} ({self.manifest.content['kind']}, {self.provider})"

    def reset(self) -> None:
        keep = _KEEP_SECONDS * MODEL_RATE
        frames_keep = keep // HOP
        self._audio = History(keep)
        # 16 kHz audio only for a 16 kHz content encoder or FCPE (its resampler costs time and delay)
        self._audio16 = History(_KEEP_SECONDS * CONTENT_RATE)
        self._resample16 = (StreamResampler(MODEL_RATE, CONTENT_RATE)
                            if self.content_rate == CONTENT_RATE or self.f0_method == "fcpe" else None)
        self._d16 = int(round(self._resample16.delay)) if self._resample16 else 0
        # the stream the content encoder reads, and how far it lags the input (samples at its rate)
        self._content_audio, self._content_delay = ((self._audio, 0) if self.content_rate == MODEL_RATE
                                                    else (self._audio16, self._d16))
        self._f0 = History(frames_keep)            # held (voiced-filled) F0, Hz, unshifted
        self._f0_final = 0                         # frames < this are final
        self._last_voiced = 0.0                    # held value at the final boundary
        self._volume = History(frames_keep)
        self._volume_final = 0
        self._units = History(keep * self.content_rate // MODEL_RATE // self.content_hop + 8, self.content_width)
        self._units_final = 0
        self._phase_done = np.zeros(self.n_harmonics)   # harmonic phase (cycles) at the start of frame `done`
        self._out = History(keep)
        self._tail = np.zeros(0, dtype=np.float32)  # provisional audio after the committed frames
        self._done_frames = 0                       # frames of audio committed to `_out`
        self._emitted = 0                           # output samples returned so far
        # Small pages: a page is drawn whole when first needed (8192 rows of source noise took 1 ms, a
        # spike in every 17th 20 ms block); 1024 rows spread the same work evenly over the blocks.
        self._mel_noise = PositionLockedNoise(self.seed, self.n_mels, page_rows=256, cache_pages=32)
        self._source_noise = PositionLockedNoise(self.seed + 1, self.n_harmonics, page_rows=1024, cache_pages=64)

    def process(self, x24: np.ndarray) -> np.ndarray:
        """Take N new samples at 24 kHz, return N output samples delayed by `latency_24k`."""
        x24 = np.asarray(x24, dtype=np.float32).reshape(-1)
        if len(x24) > self._audio.keep // 2:
            self._reserve(2 * len(x24))
        self._audio.append(x24)
        if self._resample16 is not None:
            self._audio16.append(self._resample16.process(x24))
        self._advance()
        start = self._emitted - self.latency_24k
        self._emitted += len(x24)
        return self._out.read(start, self._emitted - self.latency_24k)

    def _advance(self) -> None:
        """Synthesise what the audio received so far allows."""
        target = self._audio.end // HOP - self.hold_frames
        if target > self._done_frames:
            self._synthesise(target)

    def _reserve(self, samples: int) -> None:
        """Keep `samples` of 24 kHz history (and the same time span of every per-frame stream)."""
        frames = samples // HOP + 64
        for history in (self._audio, self._out):
            history.reserve(samples)
        self._audio16.reserve(samples * CONTENT_RATE // MODEL_RATE)
        for history in (self._f0, self._volume):
            history.reserve(frames)
        self._units.reserve(samples * self.content_rate // MODEL_RATE // self.content_hop + 8)

    # ------------------------------------------------------------------ features
    def _update_f0(self, stop: int) -> None:
        """Frames [final, stop): the pack's F0 extractor on a window with margins; hold unvoiced."""
        start = self._f0_final
        if stop <= start:
            return
        available = self._audio.end
        if self.f0_method == "yin":
            # frame-local: frames whose window is complete are final, the rest are held (provisional)
            final_stop = max(start, min(stop, (available - yin_pitch.WINDOW_END) // HOP + 1))
            raw = np.zeros(stop - start, dtype=np.float32)
            if final_stop > start:
                first = start * HOP + yin_pitch.WINDOW_END - yin_pitch.SPAN
                window = self._audio.read(first, first + yin_pitch.SPAN + HOP * (final_stop - start - 1))
                raw[: final_stop - start] = yin_pitch.yin_frames(window, final_stop - start)
        elif self.f0_method == "fcpe":
            raw = self._fcpe_frames(start, stop)
            final_stop = min(stop, available // HOP - f0_track.FCPE_RIGHT_MARGIN)
        else:
            lo = start - f0_track.LEFT_MARGIN
            window = self._audio.read(lo * HOP, available)
            raw = f0_track.dio_frames(window, stop - lo)[f0_track.LEFT_MARGIN:]
            final_stop = min(stop, available // HOP - f0_track.RIGHT_MARGIN)
        n_final = max(0, final_stop - start)
        held, last = f0_track.hold_unvoiced(raw[:n_final], self._last_voiced)
        provisional, _ = f0_track.hold_unvoiced(raw[n_final:], last)
        self._f0.write(start, np.concatenate([held, provisional]))
        self._f0_final, self._last_voiced = start + n_final, last

    def _fcpe_frames(self, start: int, stop: int) -> np.ndarray:
        """Raw F0 of mel frames [start, stop) from pitch.onnx (FCPE, 10 ms frames at 16 kHz).

        The window starts on FCPE's absolute frame grid (a multiple of its hop), so pitch frame k
        is always centred at 16 kHz sample 160 k + 80 whatever the window; mel frames take the
        linear interpolation of the two nearest pitch frames when both are voiced, else the nearest.
        """
        hop, centre = f0_track.FCPE_HOP, f0_track.FCPE_HOP // 2
        first_k = max(0, (start * HOP * CONTENT_RATE // MODEL_RATE - centre) // hop - f0_track.FCPE_CONTEXT)
        usable = self._audio16.end - self._d16
        lo16 = first_k * hop
        if usable - lo16 < f0_track.FCPE_MIN_SAMPLES:
            return np.zeros(stop - start, dtype=np.float32)
        audio = self._audio16.read(lo16 + self._d16, usable + self._d16)
        f0p = self.sessions["pitch"].run({"audio": audio[None]})[0][0]
        return f0_track.pitch_frames_to_mel(f0p, first_k, start, stop)

    def _update_volume(self, stop: int) -> None:
        start = self._volume_final
        if stop <= start:
            return
        available = self._audio.end
        window = np.zeros((stop - start) * HOP, dtype=np.float32)
        lo = start * HOP - HOP // 2
        got = self._audio.read(lo, min(lo + len(window), available))
        window[: len(got)] = got
        self._volume.write(start, f0_track.rms_frames(window, stop - start))
        # frame k's window [128 k − 64, 128 k + 64) is complete once the input reaches 128 k + 64
        self._volume_final = max(start, min(stop, (available - HOP // 2) // HOP + 1))

    def _content_frames_available(self) -> int:
        """Content frames whose window [hop j + offset, hop j + offset + window) the input covers."""
        usable = self._content_audio.end - self._content_delay - self.content_offset - self.content_window
        return max(0, usable // self.content_hop + 1) if usable >= 0 else 0

    def _update_units(self, need_start: int) -> None:
        """Content frames from `need_start` (or the first non-final one) up to what the audio allows."""
        avail = self._content_frames_available()
        if self.content_rf is None:
            # Attention sees its whole input: recompute the needed frames from `context_ms` of audio.
            context = int(self.context_ms * CONTENT_RATE / 1000 / self.content_hop)
            first = max(0, min(need_start, self._units.end))
            lo = max(0, first - context)
        else:
            first = self._units_final
            lo = max(0, first - self.content_rf[0])
        if avail <= first:
            return
        shift = self.content_offset + self._content_delay
        audio = self._content_audio.read(lo * self.content_hop + shift,
                                         (avail - 1) * self.content_hop + self.content_window + shift)
        units = self.sessions["content"].run({"audio": audio[None]})[0][0]
        self._units.write(first, units[first - lo: avail - lo])
        if self.content_rf is not None:
            self._units_final = max(self._units_final, avail - self.content_rf[1])

    def _content_index(self, frames: np.ndarray) -> np.ndarray:
        """Mel frame i (time 128 i / 24000 s) takes content frame floor(i · 128 · rate / (24000 · hop))
        (16 kHz ContentVec framing: floor(4 i / 15); the mel-grid framing: i)."""
        return (np.maximum(frames, 0) * (HOP * self.content_rate)) // (MODEL_RATE * self.content_hop)

    def _features(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Decoder inputs for frames [start, stop) (start may be negative: silence before 0)."""
        self._update_f0(stop)
        self._update_volume(stop)
        frames = np.arange(start, stop)
        index = self._content_index(frames)
        self._update_units(int(index[0]))
        units = np.zeros((len(frames), self.content_width), dtype=np.float32)
        if self._units.end > 0:
            index = np.minimum(index, self._units.end - 1)  # provisional: repeat the newest frame
            lo = int(index[0])
            units = self._units.read(lo, int(index[-1]) + 1)[index - lo]
            units[frames < 0] = 0.0
        f0 = self._f0.read(start, stop) * self._pitch_factor
        return {
            "units": units[None].astype(np.float32),
            "f0": f0[None].astype(np.float32),
            "volume": self._volume.read(start, stop)[None],
            "speaker": self._speaker,
            "noise": self._mel_noise.take(start, stop)[None].astype(np.float32),
        }

    # ------------------------------------------------------------------ synthesis
    def _synthesise(self, target: int) -> None:
        """Commit audio for frames [done, target) and keep a provisional crossfade tail."""
        done, xf = self._done_frames, self.crossfade_frames
        lv, rv = self.vocoder_rf
        ld, rd = self.decoder_rf
        available = self._audio.end // HOP
        voc_start, voc_stop = done - lv, min(target + xf + rv, available)
        dec_start, dec_stop = voc_start - ld, min(voc_stop + rd, available)
        feats = self._features(dec_start, dec_stop)
        decoder = self.sessions["decoder"]
        # A single-speaker graph has no `speaker` input (the exporter prunes unused inputs).
        mel = decoder.run({k: v for k, v in feats.items() if k in decoder.input_names})[0][0]
        mel = mel[voc_start - dec_start: voc_stop - dec_start]
        f0 = feats["f0"][0, voc_start - dec_start: voc_stop - dec_start]
        # The harmonic phase at `voc_start`, counted back from the committed phase at `done` with the
        # F0 used now: the new audio then reaches `done` in exactly the phase the committed audio
        # left off with, even when the F0 of the context frames changed since (a pitch change, a
        # provisional F0 that became final). With exact lookahead this equals the forward track.
        steps = np.arange(1, self.n_harmonics + 1) * HOP / MODEL_RATE
        back = (f0[: done - voc_start, None].astype(np.float64) * steps[None, :]).sum(axis=0)
        phase = np.mod(self._phase_done - back, 1.0)[None]
        noise = self._source_noise.take(voc_start * HOP, voc_stop * HOP)
        audio = self.sessions["vocoder"].run({
            "mel": mel[None].astype(np.float32),
            "f0": f0[None].astype(np.float32),
            "phase": phase.astype(np.float32),
            "noise": noise[None].astype(np.float32),
        })[0][0]
        audio[: max(0, -voc_start) * HOP] = 0.0  # nothing before the stream started
        fresh = audio[(done - voc_start) * HOP:]
        committed = (target - done) * HOP
        fresh = self._join(fresh, committed)
        self._out.write(done * HOP, fresh[:committed])
        # Only the crossfade's worth of provisional audio is kept: frames further on lack context.
        self._tail = fresh[committed: committed + xf * HOP].copy()
        # Advance the committed phase over the committed frames with the F0 they were voiced with.
        f0_committed = f0[done - voc_start: target - voc_start, None].astype(np.float64)
        self._phase_done = np.mod(self._phase_done + (f0_committed * steps[None, :]).sum(axis=0), 1.0)
        self._done_frames = target

    def _join(self, fresh: np.ndarray, committed: int) -> np.ndarray:
        """Crossfade the previous provisional tail into the head of the new audio.

        Both were synthesised for the same absolute samples with the same noise and phase track, so
        they are aligned by construction: a SOLA time search (needed by engines whose blocks are
        synthesised independently) would only add jitter here. With exact lookahead the two are
        equal and the crossfade changes nothing.
        """
        n = min(len(self._tail), len(fresh), committed)
        if n == 0:
            return fresh
        fresh = fresh.copy()
        crossfade(self._tail[:n], fresh[:n], fade_in(n), out=fresh[:n])
        return fresh
