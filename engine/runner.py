"""The inference thread and the audio callback's side of it, with a constant, known latency.

```
audio callback ──push──▶ input ring (by absolute sample position) ──▶ worker thread ──▶ converter
audio callback ◀─pull─── output ring (by absolute sample position) ◀──────────────────┘
```
The callback only copies into and out of two preallocated rings: no allocation of sample buffers,
no model call, no wait. Its only synchronisation is `Event.set()` to wake the worker (a lock held
for a few instructions, never across a converter call). The worker owns the converter (and so
the ONNX sessions) and is the only thread that ever calls it.

Latency is fixed by construction. Output sample `j` of the main stream always plays converter
output `j + anchor - prefill`, i.e. the input captured `converter.latency() + prefill` =
`latency()` samples earlier (`anchor` is 0 for a duplex stream). When
the worker is late, those positions are simply not in the output ring yet: the callback crossfades
to silence (or to the same-latency dry input, `late_fill="dry"`), counts an underrun and moves on;
when the late audio arrives, the part whose time has passed is never read (it is stale) and
playback resumes at the right position. Latency never grows, whatever the converter does.

`prefill` is the runner's share of the latency: one worker chunk (the converter can only start once
a chunk is complete) + one callback (audio arrives a callback at a time) + the compute budget
(how late a converter block may finish and still be on time; one block by default, the real-time
limit).

Adaptive budget (`adaptive=AdaptiveBudget(...)`, see `engine.budget`): the caller starts the runner
with a measured budget; when a block comes late the worker raises it (`back_off`); once
`TIGHTEN_AFTER_S` of blocks with sound have run since the start without a late block, the worker lowers it to
what the running blocks' ready delays call for (`tighten`: only when that saves a quarter or more, and
never again after a raise). Each reader adopts a new prefill at its next callback with a faded dip
(fade out, then fade in at the new position: the latency steps by exactly the budget change,
reported in `RunnerStats`). Nothing else moves the read position but the split streams'
re-anchoring below.

Duplex streams call `process` (input and output of one callback, locked to one position
counter). Split streams call `push` from the input callback and `pull` from the output callback;
the output is anchored to the input position when it starts and re-anchored if the two clocks
drift apart. A monitor stream is a second `pull` reader of the same output ring.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from engine.budget import TIGHTEN_AFTER_S, AdaptiveBudget
from engine.ringbuffer import SampleRing
from engine.settings import LATE_FILL_CHOICES


SOUNDING_MEAN_SQUARE = 1e-6     # -60 dBFS: a block above it carried sound (for the budget's lowering)
POSITIONS_KEPT = 64             # input positions of resyncs / budget changes kept for the stats
INPUT_AGE_PERCENTILE = 5.0      # of the capture time stamps' input ages (see RealtimeRunner._in_lat)


class StreamConverter(Protocol):
    """What the runner needs of `engine.converter.Converter` (device-rate, any block length)."""

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def latency(self) -> int: ...

    def reset(self) -> None: ...

    def update(self, **settings: Any) -> None: ...


_ONE = np.float32(1.0)
_MINUS_ONE = np.float32(-1.0)


def _clip_unit(x: np.ndarray) -> None:
    """Clip to [-1, 1] in place; ufuncs with float32 scalars allocate nothing (np.clip with Python
    floats did, ~120 bytes a call, in the audio callback)."""
    np.minimum(x, _ONE, out=x)
    np.maximum(x, _MINUS_ONE, out=x)


class _Reader:
    """One output stream's view of the output ring: its anchor, late fill and crossfade state."""

    def __init__(self, runner: "RealtimeRunner", locked: bool) -> None:
        self.r = runner
        self.locked = locked          # duplex: output position == input position, never re-anchored
        self.pos = 0                  # samples this stream has played
        self.anchor: int | None = 0 if locked else None
        self.gain = 1.0               # current wet weight of the late-fill crossfade
        self.last = 0.0               # last wet sample (held while fading to the fill)
        self.broken = False           # wet positions were skipped: the held sample must fade out fully first
        self.lag_avg = 0.0            # split: smoothed input-vs-output offset, for drift detection
        self.steady = 0               # split: samples played since the last anchoring
        self._recent = np.zeros(16, np.float64)   # split: the last raw offsets (a step's size)
        self._recent_i = 0
        self.settle_until = 0.0
        self.last_pull = 0.0
        self.jumped = False           # a drift resync moved the read position: fade across the jump
        self.prefill = runner.prefill   # adopted from the runner at a callback start (budget changes)
        m = runner.max_frames
        self._wet = np.zeros(m, np.float32)
        self._fill = np.zeros(m, np.float32)
        self._g = np.zeros(m, np.float32)
        self._tmp = np.zeros(m, np.float32)

    def next_abs(self) -> int:
        """The converter-output position this stream plays next."""
        return self.pos + (self.anchor or 0) - self.prefill

    def pull(self, out: np.ndarray, now: float) -> tuple[int, int]:
        """Fill `out` with this stream's next samples; returns (late samples, abs position)."""
        m = self.r.max_frames
        if len(out) <= m:
            return self._pull(out, now)
        late, pos = 0, 0
        for k in range(0, len(out), m):         # a driver handed us an unusually large buffer
            piece_late, piece_pos = self._pull(out[k:k + m], now)
            late, pos = late + piece_late, pos if k else piece_pos
        return late, pos

    def _pull(self, out: np.ndarray, now: float) -> tuple[int, int]:
        r, n = self.r, len(out)
        if self.prefill != r.prefill:
            self.prefill = r.prefill   # the budget changed: a dip across the jump, like a drift resync
            self.jumped = True
        if not self.locked and not self._anchored(now, n):
            out[:] = 0.0
            self.pos += n
            return 0, 0
        pos = self.next_abs()
        ring = r.out_ring
        a = ring.available(pos, n)
        dip = self.jumped
        if dip:
            # Play as if late (fade out, holding the last sample), and fade back in at the new
            # position once the fade-out is complete: a drift resync is a short dip, never a step.
            # It is not a late block, so it is not counted as an underrun.
            a, self.jumped = 0, False
        wet, fill, g = self._wet[:n], self._fill[:n], self._g[:n]
        ring.read_into(pos, wet[:a])
        late = n - a
        if late == 0 and self.gain >= 1.0:
            out[:] = wet
            self.last = float(wet[n - 1])
        else:
            self._fill_with(pos, fill)
            ramp = r.ramp
            held = 0
            if self.broken and a:
                # Positions were skipped (late audio, a dip): the wet signal resumes elsewhere, so the
                # held sample must fade out completely before it does; fading in from a partial gain
                # would step by gain x (new - held). The positions this covers have passed unplayed.
                held = min(a, math.ceil(self.gain * r.fade))
                if held:
                    self._fade_out(g[:held], wet[:held])
            if a > held:
                np.add(ramp[:a - held], self.gain, out=g[held:a])
                np.minimum(g[held:a], 1.0, out=g[held:a])
                self.last = float(wet[a - 1])
                self.gain = float(g[a - 1])
                self.broken = False
            if late:
                self._fade_out(g[a:], wet[a:])
                self.broken = True
            tmp = self._tmp[:n]
            np.subtract(wet, fill, out=tmp)
            np.multiply(tmp, g, out=tmp)
            np.add(fill, tmp, out=out)
        self.pos += n
        return (0 if dip else late), pos

    def _fade_out(self, g: np.ndarray, wet: np.ndarray) -> None:
        """Fill `wet` with the held last sample and `g` with its fade from the current gain (no step)."""
        np.subtract(self.gain, self.r.ramp[:len(g)], out=g)
        np.maximum(g, 0.0, out=g)
        wet[:] = self.last
        self.gain = float(g[-1])

    def _fill_with(self, pos: int, fill: np.ndarray) -> None:
        """What plays while the wet signal is missing: silence, or the input `latency()` earlier."""
        r = self.r
        if r.late_fill != "dry":
            fill[:] = 0.0
            return
        src = pos - r.converter_latency
        a = r.in_ring.available(src, len(fill))
        r.in_ring.read_into(src, fill[:a])
        fill[a:] = 0.0

    def _anchored(self, now: float, n: int) -> bool:
        """Split streams: tie this output to the input position; re-anchor on clock drift."""
        r = self.r
        if r.in_ring.end == 0:
            return False
        lag = r.in_ring.end - (self.pos + (self.anchor or 0))
        gap, self.last_pull = now - self.last_pull, now
        if self.anchor is None or gap > r.settle_s or now < self.settle_until:
            # While the output settles (drivers prime their buffers with a burst of callbacks at
            # start, some then pause), keep re-anchoring and play silence; after a long pause, settle
            # again rather than drift-correct.
            if self.anchor is None or gap > r.settle_s:
                self.settle_until = now + r.settle_s
            self.anchor = r.in_ring.end - self.pos - r.split_margin
            self.lag_avg = float(r.split_margin)
            self.steady, self._recent_i = 0, 0
            return False
        self.lag_avg += (lag - self.lag_avg) * min(1.0, n / r.drift_window)
        self._recent[self._recent_i % len(self._recent)] = lag
        self._recent_i += 1
        self.steady += n
        # Until the average has seen a whole window only a gross offset counts; once settled, a
        # step of more than a callback does too (the callbacks' phase alone moves the mean lag by
        # up to one): a driver underrun's lost output callbacks are never made up, so without this
        # the latency would stay that much higher.
        tolerance = r.drift_tolerance if self.steady < r.drift_window else r.step_tolerance
        # Once settled, each time the recent window has refilled (every 16 callbacks: no work in
        # most callbacks), a step that all of the recent offsets show (they spread by no more
        # than the callbacks' phase, one callback) counts at once: the slow average would take
        # seconds to cross the tolerance for a step just over it (2.5 s for 21 ms), all of them
        # played late. A window that straddles the step spreads wider and waits for the next.
        stepped = False
        if self.steady >= r.drift_window and self._recent_i % len(self._recent) == 0:
            mean = float(self._recent.sum()) / len(self._recent)
            stepped = abs(mean - r.split_margin) > r.step_tolerance and \
                self._recent.max() - self._recent.min() <= r.split_margin
        if stepped or abs(self.lag_avg - r.split_margin) > tolerance:
            # When the recent offsets agree (a step, not jitter), move by their mean at once; the
            # slow average only says that it moved.
            agree = self._recent_i >= len(self._recent) and \
                self._recent.max() - self._recent.min() <= 3 * r.split_margin
            offset = float(self._recent.sum()) / len(self._recent) if agree else self.lag_avg
            shift = int(round(offset - r.split_margin))
            self._shift(shift)
            self.lag_avg = offset - shift
            if abs(shift) >= r.split_margin and self.steady >= r.drift_window:
                how = "fell behind the input by" if shift > 0 else "ran ahead of the input by"
                r.resync_note = (f"The output {how} {1000.0 * abs(shift) / r.rate:.0f} ms (a driver underrun or a "
                                 "stalled device); re-synced to the fixed latency with a short fade.")
        return True

    def _shift(self, shift: int) -> None:
        """Move the read position by `shift` samples (a dip, not a step; counted as a resync)."""
        self.anchor = (self.anchor or 0) + shift
        self._recent -= shift
        self.jumped = True
        self.r.resyncs += 1
        self.r.mark_position(self.r.resync_positions)


class _Window:
    """Last `n` values of a measurement, written by one thread, summarised by another."""

    def __init__(self, n: int) -> None:
        self._v = np.full(n, np.nan, np.float64)
        self._i = 0

    def add(self, value: float) -> None:
        self._v[self._i % len(self._v)] = value
        self._i += 1

    def values(self) -> np.ndarray:
        return self._v[np.isfinite(self._v)]

    def percentile(self, q: float) -> float | None:
        v = self._v[np.isfinite(self._v)]
        return float(np.percentile(v, q)) if len(v) else None


@dataclass(frozen=True)
class RunnerStats:
    """A snapshot of the runner. Times in ms, levels in dBFS, positions in samples."""

    blocks_processed: int
    input_position: int            # input samples captured so far: the *_positions' clock
    compute_p50_ms: float | None
    compute_p99_ms: float | None
    block_budget_ms: float
    budget_auto: bool              # the budget adapts (raised after late blocks)
    budget_raises: int             # times it was raised while running
    budget_note: str | None        # the last change, as a sentence
    underruns: int                 # late blocks: the converter had its whole budget and was not done
    late_blocks_answered: int      # of them, those the adaptive budget has answered (it sees them a block later)
    late_samples: int
    ran_ahead: int                 # output callbacks that found no audio because they came early
    queue_depth: int               # converted samples ready ahead of the main output
    input_backlog: int             # captured samples the worker has not taken yet
    skipped_samples: int           # input the worker dropped to catch up after a long stall
    resyncs: int                   # split streams: re-anchors after clock drift or a latency step
    resync_note: str | None        # the last step that was corrected, as a sentence
    resync_positions: tuple[int, ...]   # input positions of the resyncs, each a faded dip (the last POSITIONS_KEPT)
    budget_change_positions: tuple[int, ...]   # input positions where the worker changed the budget (ditto)
    input_latency_ms: float | None   # from the callback time stamps (None: host gave none)
    output_latency_ms: float | None
    queue_ms: float | None           # split streams: measured input-to-output callback offset
    input_level_db: float
    output_level_db: float
    fault: str | None


def _db(mean_square: float) -> float:
    return 10.0 * math.log10(max(mean_square, 1e-12))


class RealtimeRunner:
    """Audio callback ↔ lock-free rings ↔ one worker thread that owns `converter`.

    `block_size`: the converter's block at the device rate (the unit of the compute statistics and
    the default compute budget). `chunk`: how many samples the worker hands the converter per call
    (default 10 ms; `LiveSession` uses one block, since a neural voice costs about the same per
    call whatever its length). `callback_frames`: the largest callback expected (PortAudio may
    vary it; any size up to `max_frames` works, larger ones are only at risk of being late).
    `budget`: compute budget in samples (default `block_size`). `prefill` overrides
    `chunk + callback_frames + budget`. Total latency inside the program: `latency()` samples.
    `adaptive`: raise the budget after late blocks (see the module docstring). `clock`: what times
    the converter calls (tests pass a simulated clock).
    """

    def __init__(self, converter: StreamConverter, block_size: int, *, sample_rate: int,
                 chunk: int | None = None, callback_frames: int | None = None, budget: int | None = None,
                 prefill: int | None = None, late_fill: str = "silence", fade_ms: float = 5.0,
                 max_frames: int = 16384, history_s: float = 4.0, stats_window: int = 256,
                 settle_s: float = 0.25, adaptive: AdaptiveBudget | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if block_size <= 0 or sample_rate <= 0:
            raise ValueError("block_size and sample_rate must be positive")
        if late_fill not in LATE_FILL_CHOICES:
            raise ValueError(f"late_fill must be one of {LATE_FILL_CHOICES}, got {late_fill!r}")
        if adaptive is not None and prefill is not None:
            raise ValueError("an adaptive budget sets the prefill itself: pass budget, not prefill")
        self.converter = converter
        self.adaptive = adaptive
        self._clock = clock
        self.rate = int(sample_rate)
        self.block_size = int(block_size)
        self.chunk = int(chunk or max(1, min(block_size, round(0.01 * sample_rate))))
        self.callback_frames = int(callback_frames or self.chunk)
        self.budget = int(block_size if budget is None else budget)
        self.prefill = int(prefill if prefill is not None else self.chunk + self.callback_frames + self.budget)
        self.converter_latency = int(converter.latency())
        self.late_fill = late_fill
        self.max_frames = int(max_frames)
        self.settle_s = settle_s
        self.split_margin = self.callback_frames
        self.drift_tolerance = 3 * self.callback_frames + round(0.01 * sample_rate)
        self.drift_window = 2.0 * sample_rate
        # Once settled, the smoothed offset may stray this far before a resync: a latency step
        # after a driver underrun is corrected (it was kept while it stayed under drift_tolerance).
        self.step_tolerance = self.callback_frames + round(0.005 * sample_rate)
        self.resync_note: str | None = None
        # input positions of the resyncs (each a faded dip), the last POSITIONS_KEPT (a list: appending
        # and copying it are single steps under the GIL, so stats on another thread never see it half-changed)
        self.resync_positions: list[int] = []
        self.budget_change_positions: list[int] = []   # the latency steps there, with a dip (worker)
        self.fade = max(1, round(fade_ms * sample_rate / 1000.0))   # samples of a late-fill fade
        self.ramp = (np.arange(1, self.max_frames + 1, dtype=np.float32) / self.fade).astype(np.float32)
        most = self.prefill if adaptive is None else self.chunk + self.callback_frames + max(self.budget, adaptive.ceiling)
        capacity = max(round(history_s * sample_rate), 4 * (most + self.converter_latency + self.max_frames))
        self.in_ring = SampleRing(capacity)
        self.out_ring = SampleRing(capacity)
        self._readers = [_Reader(self, locked=False), _Reader(self, locked=False)]
        self._duplex = _Reader(self, locked=True)
        self._main: _Reader | None = None
        # statistics (each written by one thread)
        self.underruns = 0
        self.late_samples = 0
        self.ran_ahead = 0
        self.resyncs = 0
        self.skipped = 0
        self.blocks_processed = 0
        self.budget_raises = 0
        self.budget_note: str | None = None
        self._underruns_seen = 0
        self._hold_until = 0           # input position before which late blocks belong to the last raise
        # blocks with sound processed before the budget may be lowered (once)
        self._tighten_at = max(32, math.ceil(TIGHTEN_AFTER_S * self.rate / self.block_size))
        self._compute = _Window(stats_window)
        # The lowering looks only at blocks that carried sound: a voice can cost far less on
        # silence (the built-in voice: a 10.2 ms budget from 3 s of silence, then a late block
        # when speech came), and a session usually starts before its user speaks. And it looks at
        # how long after its input arrived each output was ready, not at the converter's time
        # alone: the worker's wake-up, a second chunk batched behind the first, a moment without
        # the CPU all count against the budget (from compute times alone it set 10.6-12.9 ms for
        # the built-in voice at 20 ms blocks, and half of the 20 s runs then had a late block).
        self._slowest_ready: float | None = None     # of the blocks with sound, since the start
        self._sounding_blocks = 0
        self._arrival_pos = np.zeros(64, np.int64)    # input end after each of the last 64 pushes
        self._arrival_t = np.zeros(64, np.float64)    # ... and when (on `clock`)
        self._arrivals = 0
        # Input age from the capture time stamps: the low end (5th percentile) over ~10 s of
        # callbacks, not the median of the last few. Through the ALSA pulse plugin the stamps creep
        # up by as much as 15 ms between the server's timing updates and then drop back, while the
        # delay itself stays put (measured on the one-clock meter of tests/test_live_pulse.py:
        # the median made the reported latency 10-15 ms too long; the low end is within 5 ms).
        self._in_lat = _Window(1024)
        self._out_lat = _Window(64)
        self._queue = _Window(64)
        self._in_ms = 0.0
        self._out_ms = 0.0
        self._last_in_pos = 0          # split: start position and clock time of the newest input buffer
        self._last_in_time = 0.0
        self._work_pos = 0             # next input position the worker takes
        self.fault: str | None = None
        self.refused_update: str | None = None   # the last live change the converter refused
        # worker plumbing
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._updates: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- control (any non-audio thread) ------------------------------------------------------------

    def latency(self) -> int:
        """Samples from a captured input sample to its converted output, inside the program."""
        return self.converter_latency + self.prefill

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("runner already started")
        self._thread = threading.Thread(target=self._work, name="como-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker (the converter call in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread_id(self) -> int | None:
        """The worker's OS thread id (the session schedules it real-time), None before start."""
        return None if self._thread is None else self._thread.native_id

    def update(self, **settings: Any) -> None:
        """Live-safe settings: applied by the worker between converter calls (`late_fill` at once)."""
        if "late_fill" in settings:
            if settings["late_fill"] not in LATE_FILL_CHOICES:
                raise ValueError(f"late_fill must be one of {LATE_FILL_CHOICES}, got {settings['late_fill']!r}")
            self.late_fill = settings["late_fill"]
        if settings:
            self._updates.put(dict(settings))
            self._wake.set()

    @property
    def processed_position(self) -> int:
        """Input position up to which the worker has delivered output (for tests and stats)."""
        return self.out_ring.end

    # --- audio callbacks (real-time: copies only) --------------------------------------------------

    def process(self, indata: np.ndarray, outdata: np.ndarray, *, input_latency: float | None = None,
                output_latency: float | None = None) -> None:
        """Duplex callback: `indata` float32[n] in, `outdata` float32[n] out, one clock."""
        self._main = self._duplex
        self.push(indata, input_latency=input_latency)
        late, pos = self._duplex.pull(outdata, 0.0)
        self._after_pull(outdata, late, pos, output_latency)

    def push(self, indata: np.ndarray, *, now: float | None = None, input_latency: float | None = None) -> None:
        """Input callback: append float32[n] (NaN/inf become 0)."""
        n = len(indata)
        pos = self.in_ring.end
        ms = float(np.dot(indata, indata)) / max(n, 1)
        self.in_ring.write(indata)
        if not math.isfinite(ms):
            self._sanitize_input(pos, n)
            ms = 0.0
        self._in_ms = max(ms, self._in_ms * 0.9)
        slot = self._arrivals % len(self._arrival_pos)
        self._arrival_pos[slot] = self.in_ring.end
        self._arrival_t[slot] = self._clock()
        self._arrivals += 1
        self._last_in_pos = pos
        self._last_in_time = time.perf_counter() if now is None else now
        if input_latency is not None and 0.0 <= input_latency < 2.0:
            self._in_lat.add(input_latency)
        self._wake.set()

    def pull(self, outdata: np.ndarray, *, monitor: bool = False, now: float | None = None,
             output_latency: float | None = None) -> None:
        """Output callback of a split stream (`monitor=True`: the monitor stream's own reader)."""
        reader = self._readers[1 if monitor else 0]
        t = time.perf_counter() if now is None else now
        late, pos = reader.pull(outdata, t)
        if monitor:
            _clip_unit(outdata)
            return
        self._main = reader
        if reader.anchor is not None and t >= reader.settle_until:
            # Where the input stream was at this instant, minus where this output reads from.
            in_now = self._last_in_pos + (t - self._last_in_time) * self.rate
            self._queue.add(in_now - (reader.pos - len(outdata) + reader.anchor))
        self._after_pull(outdata, late, pos, output_latency)

    def _after_pull(self, outdata: np.ndarray, late: int, pos: int, output_latency: float | None) -> None:
        _clip_unit(outdata)
        n = len(outdata)
        if late and self._converter_was_late(pos + n - late):
            self.underruns += 1
            self.late_samples += late
        elif late:
            self.ran_ahead += 1

        self._out_ms = max(float(np.dot(outdata, outdata)) / max(n, 1), self._out_ms * 0.9)
        if output_latency is not None and 0.0 <= output_latency < 2.0:
            self._out_lat.add(output_latency)

    def _converter_was_late(self, missing: int) -> bool:
        """Whether output position `missing`, not in the output ring, is the converter's fault.

        It is when the input it is made from arrived at least a budget ago (the chunk it belongs
        to is complete at most `chunk` samples after it; one callback of slack for the callbacks'
        phase). Otherwise the output asked early: a driver that lost time (an xrun) and then
        pulls a burst of callbacks to refill its buffer runs ahead of the input, and no compute
        budget could have had that audio ready. Such pulls are counted as `ran_ahead`, beside the
        driver's own xrun report, not as late blocks.
        """
        waited = self.in_ring.end - missing - self.chunk
        return waited >= self.budget - self.callback_frames

    def _sanitize_input(self, pos: int, n: int) -> None:
        """Rare path (a driver delivered NaN/inf): zero them in place in the ring."""
        ring = self.in_ring
        for lo, hi in ((pos % ring.capacity, min(pos % ring.capacity + n, ring.capacity)),
                       (0, max(0, pos % ring.capacity + n - ring.capacity))):
            np.nan_to_num(ring._data[lo:hi], copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    # --- worker thread ------------------------------------------------------------------------------

    def _work(self) -> None:
        batch = max(4 * self.max_frames, 4 * self.chunk) // self.chunk * self.chunk   # whole chunks only
        block = np.zeros(batch, np.float32)
        acc_t, acc_n, stale, sounding = 0.0, 0, 0, False
        try:
            while not self._stop.is_set():
                self._apply_updates()
                self._wake.clear()
                k = self._work_pos
                avail = self.in_ring.end - k
                if avail < self.chunk:
                    self._wake.wait(0.05)
                    continue
                skipped_to = self._catch_up(k)
                if skipped_to != k:
                    # The converter's first latency() samples after a jump still hold pre-jump audio:
                    # leave them out so the output fades from the fill into clean, aligned audio.
                    k, stale = skipped_to, self.converter_latency
                n = min((self.in_ring.end - k) // self.chunk * self.chunk, len(block))
                if n <= 0:
                    continue
                x = block[:n]
                self.in_ring.read_into(k, x)
                sounding = sounding or float(np.dot(x, x)) > SOUNDING_MEAN_SQUARE * n
                t0 = self._clock()
                y = np.asarray(self.converter.process(x), dtype=np.float32)
                acc_t += self._clock() - t0
                if y.shape != (n,):
                    raise RuntimeError(f"the converter returned {y.shape} samples for {n}")
                if not np.isfinite(y).all():
                    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
                drop = min(stale, n)
                stale -= drop
                if drop < n:
                    self.out_ring.write_at(k + drop, y[drop:])
                self._work_pos = k + n
                acc_n += n
                if acc_n >= self.block_size:
                    blocks = acc_n // self.block_size
                    for _ in range(min(blocks, 4)):
                        self._compute.add(acc_t / blocks)
                    ready = self._ready_delay(k + self.chunk)   # the batch's first chunk waited longest
                    if sounding and ready is not None:
                        self._slowest_ready = max(ready, self._slowest_ready or 0.0)
                    self.blocks_processed += blocks
                    self._sounding_blocks += blocks if sounding else 0
                    acc_t, acc_n = acc_t * (acc_n % self.block_size) / acc_n, acc_n % self.block_size
                    sounding = False
                if self.adaptive is not None and self.underruns != self._underruns_seen:
                    self._late_blocks()
                elif self.adaptive is not None and self._sounding_blocks >= self._tighten_at > 0:
                    self._tighten()
        except Exception as exc:  # noqa: BLE001 - any failure of the voice ends the session with a reason
            self.fault = f"The voice stopped working: {type(exc).__name__}: {exc}"

    def _late_blocks(self) -> None:
        """Worker: blocks came late. Raise the budget once per episode (late blocks until the readers
        have played past the raise are the same episode), the readers adopt it with a dip."""
        late, self._underruns_seen = self.underruns - self._underruns_seen, self.underruns
        if self._work_pos < self._hold_until or self.adaptive is None:
            return
        recent = self._compute.values()
        new = self.adaptive.back_off(self.budget, recent)
        self._tighten_at = 0          # late blocks prove the measurement short: never lower again
        if new <= self.budget:
            self.budget_note = (f"Blocks came late, but the compute budget is already at its limit "
                                f"({self.adaptive.ms(self.budget):.1f} ms): this machine is too slow for this block size.")
            return
        old = self.budget
        self._set_budget(new)
        self.budget_raises += 1
        self._hold_until = self._work_pos + 2 * self.prefill + self.chunk
        self.budget_note = (f"{late} late block(s): compute budget raised from {self.adaptive.ms(old):.1f} to "
                            f"{self.adaptive.ms(new):.1f} ms (latency +{self.adaptive.ms(new - old):.1f} ms, "
                            "one short fade).")

    def _ready_delay(self, end: int) -> float | None:
        """Worker: seconds from the push that completed input position `end` until now (None when
        that push is no longer among the last 64)."""
        pos, times = self._arrival_pos.copy(), self._arrival_t.copy()   # (the callback writes on)
        done = pos >= end
        if not done.any():
            return None
        first = int(np.argmin(np.where(done, pos, np.iinfo(np.int64).max)))
        if self._arrivals > len(pos) and pos[first] == pos.min():
            return None                # the oldest kept push may not be the one that completed it
        return max(0.0, self._clock() - float(times[first]))

    def _tighten(self) -> None:
        """Worker, once: lower the budget to what the slowest of the running blocks' ready delays
        needs (after their input, with sound; see `engine.budget`), if that saves a quarter of it or
        more (the warm-up's few blocks may have caught a slow moment)."""
        self._tighten_at = 0
        assert self.adaptive is not None
        new = self.adaptive.safe([] if self._slowest_ready is None else [self._slowest_ready], percentile=100.0)
        if new > 0.75 * self.budget:
            return
        old = self.budget
        self._set_budget(new)
        self.budget_note = (f"compute budget lowered from {self.adaptive.ms(old):.1f} to {self.adaptive.ms(new):.1f} ms "
                            f"after {self._sounding_blocks} blocks of sound on time (latency -{self.adaptive.ms(old - new):.1f} ms, "
                            "one short fade).")

    def _set_budget(self, new: int) -> None:
        """The readers adopt the new prefill at their next callback (with a dip), near the newest
        input position, which is recorded (the latency steps there)."""
        self.budget = new
        self.prefill = self.chunk + self.callback_frames + new
        self.mark_position(self.budget_change_positions)

    def mark_position(self, positions: list[int]) -> None:
        """Append the newest input position to an event list, keeping its last `POSITIONS_KEPT`."""
        positions.append(int(self.in_ring.end))
        if len(positions) > POSITIONS_KEPT:
            del positions[0]

    def _apply_updates(self) -> None:
        while True:
            try:
                changes = self._updates.get_nowait()
            except queue.Empty:
                return
            changes = {k: v for k, v in changes.items() if k != "late_fill"}
            if changes:
                try:
                    self.converter.update(**changes)
                except ValueError as exc:   # e.g. a speaker the voice lacks: refuse it, keep playing
                    self.refused_update = str(exc)

    def _catch_up(self, k: int) -> int:
        """After a long stall, jump over input whose output could only be stale (keeps positions)."""
        reader = self._main
        if reader is None or (not reader.locked and reader.anchor is None):
            return max(k, self.in_ring.oldest)
        behind = reader.next_abs() - k
        if behind > self.block_size + self.chunk or k < self.in_ring.oldest:
            # Restart from the newest complete chunk: its output has the whole prefill to arrive in time.
            target = k + (self.in_ring.end - self.chunk - k) // self.chunk * self.chunk
            if target > k:
                self.skipped += target - k
                return target
        return k

    # --- statistics (any thread) -------------------------------------------------------------------

    def stats(self) -> RunnerStats:
        reader = self._main
        depth = 0 if reader is None else max(0, self.out_ring.end - reader.next_abs())
        in_lat = self._in_lat.percentile(INPUT_AGE_PERCENTILE)
        out_lat, q = (w.percentile(50) for w in (self._out_lat, self._queue))
        if reader is not None and reader.locked:
            q = 0.0                       # duplex: input and output share one position counter
        return RunnerStats(
            blocks_processed=self.blocks_processed, input_position=int(self.in_ring.end),
            compute_p50_ms=_ms(self._compute.percentile(50)), compute_p99_ms=_ms(self._compute.percentile(99)),
            block_budget_ms=1000.0 * self.budget / self.rate, budget_auto=self.adaptive is not None,
            budget_raises=self.budget_raises, budget_note=self.budget_note,
            underruns=self.underruns, late_blocks_answered=self._underruns_seen, late_samples=self.late_samples,
            ran_ahead=self.ran_ahead, queue_depth=int(depth),
            input_backlog=int(self.in_ring.end - self._work_pos), skipped_samples=self.skipped,
            resyncs=self.resyncs, resync_note=self.resync_note, resync_positions=tuple(self.resync_positions),
            budget_change_positions=tuple(self.budget_change_positions),
            input_latency_ms=_ms(in_lat), output_latency_ms=_ms(out_lat),
            queue_ms=None if q is None else 1000.0 * q / self.rate,
            input_level_db=_db(self._in_ms), output_level_db=_db(self._out_ms), fault=self.fault)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds
