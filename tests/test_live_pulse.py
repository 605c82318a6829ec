"""The live engine through real PulseAudio devices (null sinks), measured on one clock.

A private server (scripts/pulse.sh) gives: vc_in (we play a signal into it; the engine captures its
monitor), vc_out (the engine's virtual cable) and meter, a stereo sink whose left channel is vc_in
and right channel vc_out. Recording meter.monitor therefore captures the engine's input and output
on one clock, so the lag between them is the true end-to-end latency.

Skipped, with the reason, where no server can be started (pulseaudio / pulseaudio-utils /
libportaudio2 / libasound2-plugins missing).

What a run can judge depends on the machine. The 2-core VMs this runs on stall real-time threads
now and then (a SCHED_FIFO thread sleeping 1 ms woke up to 19 ms late on an idle VM; the engine's
worker, measured from a block's input to its output, took up to 42-50 ms where its median was
10 ms, and its CPU time for the same work varied 2x). A window of audio in which the driver, the
sound server or the engine recorded such a disturbance cannot be compared sample for sample and
is not judged (nor its latency, in a run whose output delay the engine saw step somewhere it cannot
place); every other window is, in every run. How late blocks and latency come out on a
given machine (the issue-14 figures: 20 ms blocks, adaptive budget, <= 100 ms, late blocks over
20 s) is printed by each run (`pytest -s`): a measurement of that machine, not a bound here.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from engine.converter import Converter, convert_whole
from engine.dsp_voice import DspCore
from engine.latency import ms_to_samples
from engine.session import core_factory
from engine.budget import TIGHTEN_AFTER_S
from engine.settings import AUTO_BUDGET, Settings
from tests.pulse import RATE, MeterRecording, StreamingPlayer, play, start_or_skip

pytestmark = pytest.mark.audio

# No gate; a fixed one-block budget (80 ms), so the budget cannot move while a run is measured.
OPEN = Settings(gate_db=-120.0, compute_budget_ms=80.0)
# The acceptance run of issue 14: the built-in voice at 20 ms blocks with the adaptive budget.
FAST = OPEN.with_changes(block_ms=20.0, compute_budget_ms=0.0)
# A stateful neural pack at 20 ms blocks with a fixed budget of two blocks (the adaptive budget's
# ceiling): its compute (~6 ms a block live for the tiny pack) can outrun a warm-up's estimate on a
# busy machine, and late blocks are not what this case checks (the measured latency against the
# reported one through real devices is); on a 2-core VM that stalls real-time threads for 20-50 ms
# (measured this way: a SCHED_FIFO thread sleeping 1 ms woke up to 19 ms late on an idle machine),
# one block of budget left a late block in most runs.
FAST_FIXED = OPEN.with_changes(block_ms=20.0, compute_budget_ms=40.0)
TOLERANCE_MS = 15.0
# Runs of one case at most, while the engine records a disturbance (see the test below). In CI a
# whole-machine stall (a driver underflow and a late block at the same instant, with the callbacks
# and the worker at real-time priority) hit one 24 s run in two on a shared 2-core machine.
ATTEMPTS = 3


def passthrough(settings: Settings) -> DspCore:
    return DspCore(passthrough=True)


# Voices to run end to end, with seconds of audio: a voice is a spec ("builtin:dsp", a voice-pack
# folder), a core factory, or "fixture:NAME" for a voice pack made by a conftest fixture. The
# passthrough run is the long zero-underrun run (>= 20 s).
VOICES = [pytest.param(passthrough, 21.0, OPEN, id="passthrough"), pytest.param("builtin:dsp", 10.0, OPEN, id="dsp"),
          pytest.param("builtin:dsp", 20.0, FAST, id="dsp-20ms-auto"),
          pytest.param("fixture:ppg_pack", 8.0, OPEN, id="onnx"),
          pytest.param("fixture:low_latency_pack", 10.0, FAST_FIXED, id="low-latency-20ms")]


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    server = start_or_skip(tmp_path_factory.mktemp("pulse"))
    yield server
    server.stop()


def voiced(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: a gliding buzz with syllable envelopes and noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 * 2 ** (0.3 * np.sin(2 * np.pi * 0.4 * t) + 0.1 * np.sin(2 * np.pi * 2.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) * np.exp(-k / 12) for k in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * 1.7 * t), 0, None) ** 0.5
    noise = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 0.9 * t) > 0.95)
    return (0.12 * x * env + 0.03 * noise).astype(np.float32)


def lag_of(y: np.ndarray, x: np.ndarray, max_lag: int, min_lag: int = 0) -> int:
    """Delay d of y against x (y[n + d] ~ x[n]) in [min_lag, max_lag], by FFT cross-correlation."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.arange(min_lag, max_lag + 1)
    return int(lags[np.argmax(c[lags % n])])


def run_through_engine(pulse, tmp_path, voice, signal, *, input_device="vc_in", output_device="vc_out",
                       settings=OPEN, **cfg_extra):
    """Play `signal` into vc_in with the engine running; returns (meter recording, stats, session,
    history): `history` is the engine's stats every 0.25 s while it ran."""
    import threading

    from engine.session import LiveSession, SessionConfig

    rec = MeterRecording(tmp_path / "meter.raw")
    rec.wait_frames(RATE // 10)
    player = StreamingPlayer("vc_in")         # connected (silent) before the engine starts: no rewind
    session = LiveSession()
    cfg = SessionConfig(input_device=input_device, output_device=output_device, sample_rate=RATE, voice=voice,
                        settings=settings, **cfg_extra)
    history, done = [], threading.Event()
    sampler = threading.Thread(target=lambda: [history.append(session.stats()) for _ in iter(lambda: done.wait(0.25), True)],
                               daemon=True)
    try:
        rec.wait_frames(rec.frames() + RATE // 10)
        session.start(cfg)
        sampler.start()
        start = rec.frames()
        rec.wait_frames(start + RATE // 2)              # let the streams settle
        if (cfg_extra.get("compute_budget_ms") or settings.compute_budget_ms) == AUTO_BUDGET:
            # An adaptive budget makes its one lowering after TIGHTEN_AFTER_S of sound: talk first
            # (as a user does), so that it lands before what is measured (`measure(signal=...)`).
            # Only about half of this signal's blocks count as sound (its syllable envelope), so
            # twice that, and a second more.
            player.play(voiced(2 * TIGHTEN_AFTER_S + 1.0, seed=7))
        player.play(signal)
        player.wait_played(len(signal) / RATE + 30)
        rec.wait_frames(rec.frames() + RATE)            # the tail (latency) comes out
        stats = session.stats()
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        session.stop()
        player.stop()
    return rec.stop(), stats, session, history


def disturbance(st) -> str:
    """What the engine's own counters say disturbed a run ("" = nothing): driver xruns, latency
    steps, late blocks."""
    parts = [f"driver xruns {st.xruns.describe()}"] if st.device_xruns else []
    parts += list(st.latency_steps)
    parts += [f"{st.underruns} late blocks"] if st.underruns else []
    parts += [f"{st.ran_ahead} early output callbacks"] if st.ran_ahead else []
    parts += [note for note in st.notes if "re-synced" in note]
    return "; ".join(parts)


def run_until_undisturbed(pulse, tmp_path, voice, signal, **kwargs):
    """`run_through_engine`, repeated (up to `ATTEMPTS` runs) while the engine itself recorded a
    disturbance.

    On a shared 2-core machine another process can starve the sound server for a moment: the
    driver flags an xrun (and the ALSA pulse plugin may then step the delay). A run the engine
    marks as disturbed is not evidence either way, so it is run again; the last run is asserted as
    strictly as the first would have been, disturbed or not. The bounds never change.
    (The latency test below needs no repeat for a single xrun: it measures the clean windows.)
    """
    for attempt in range(1, ATTEMPTS + 1):
        run = run_through_engine(pulse, tmp_path / str(attempt), voice, signal, **_in(tmp_path / str(attempt), kwargs))
        why = disturbance(run[1])
        if not why or attempt == ATTEMPTS:
            return run
        print(f"\nrepeat: run {attempt} was disturbed ({why})")
    raise AssertionError("unreachable")


SETTLE_AFTER_XRUN_S = 2.0
STEP_BEFORE_RESYNC_S = 1.0


def clean_windows(starts, lags_ms, xrun_positions, history, window_s: float = 2.0, resync_positions=(),
                  budget_positions=(), nearest: bool = False):
    """For each measured window: the latency the engine reported while it played, or None when
    something the engine recorded disturbed it (or no stats snapshot was taken while it played).

    `starts`: each window's first sample as an engine input position (the engine's own input
    recording is indexed by it, as are the xrun, resync and budget-change positions and each
    snapshot's `input_position`). A window is disturbed when an xrun was flagged from half a second
    before its input until its output had played and settled (`SETTLE_AFTER_XRUN_S` later): the
    driver may restart there with another buffer fill. A resync (the runner saw the output fall
    behind or run ahead: a sound-server underrun that ALSA does not flag) counts like an xrun at its
    position and `STEP_BEFORE_RESYNC_S` before it, where the step it corrected can have happened; a
    change of the adaptive budget (a latency step with a dip, reported) like an xrun at its position.
    A clean window is compared with the median of the reports taken while its audio played (the
    snapshots whose input position lay between its first and last sample plus its latency): a report
    follows the delay it measures, so one taken later, before the next disturbance, can already show
    a step that the engine then corrects (in CI the last report before a resync was 15 ms above the
    windows measured before the step).
    `nearest`: of the reports between the window's two disturbances (the snapshots with as many
    xruns, resyncs and budget changes as had happened before it), the one nearest the window's
    measured latency (for a run in which the output delay stepped where nothing places it: the
    window is compared with a report that held at some time, not necessarily while it played).
    """
    xruns = np.asarray(xrun_positions, np.int64)
    resyncs = np.asarray(resync_positions, np.int64)
    budgets = np.asarray(budget_positions, np.int64)
    events = np.concatenate([xruns, resyncs, resyncs - int(STEP_BEFORE_RESYNC_S * RATE), budgets])
    w, settle = int(window_s * RATE), int(SETTLE_AFTER_XRUN_S * RATE)
    running = [st for st in history if st.state == "running" and st.latency is not None]
    stretch: dict[tuple[int, int, int], list[float]] = {}
    for st in running:
        # (xruns by position, one per callback: `device_xruns` counts each flag of a callback)
        key = (len(st.xruns.positions), len(st.resync_positions), len(st.budget_change_positions))
        stretch.setdefault(key, []).append(st.latency.total_ms)
    found = []
    for start, lag_ms in zip(starts, lags_ms):
        if _hit(events, start, lag_ms, w, settle):
            found.append(None)
        elif nearest:
            before = tuple(int(np.count_nonzero(e < start)) for e in (xruns, resyncs, budgets))
            values = stretch.get(before)
            found.append(min(values, key=lambda v: abs(v - lag_ms)) if values else None)
        else:
            lag = int(lag_ms * RATE / 1000)
            values = [st.latency.total_ms for st in running if start + lag <= st.input_position < start + w + lag]
            found.append(float(np.median(values)) if values else None)
    return found


def test_a_window_is_compared_with_the_reports_taken_while_it_played():
    """The CI run that showed it (80 ms blocks): the sound server dropped 24 ms of output, the
    report rose with the measured offset, and the engine re-synced; the windows measured before the
    step (at the latency reported then) were compared with the last report before the resync, 15 ms
    higher. Each window is now compared with the reports taken while it played; `nearest` still
    picks from all of the reports between its disturbances."""
    from types import SimpleNamespace

    from engine.audio.xruns import XrunCounts

    def snapshot(at_s: float, total_ms: float, resyncs: tuple[int, ...] = ()):
        return SimpleNamespace(state="running", latency=SimpleNamespace(total_ms=total_ms), xruns=XrunCounts(),
                               resync_positions=resyncs, budget_change_positions=(), input_position=int(at_s * RATE))

    resync = int(9.0 * RATE)
    history = [snapshot(0.25 * k, 248.6) for k in range(1, 28)]                # up to 6.75 s
    history += [snapshot(0.25 * k, 264.7) for k in range(28, 36)]              # the step, 7-8.75 s
    history += [snapshot(0.25 * k, 248.6, (resync,)) for k in range(36, 48)]   # re-synced at 9 s
    starts = [int(s * RATE) for s in (1.0, 3.0)]
    lags = [249.7, 249.7]
    assert clean_windows(starts, lags, (), history, resync_positions=(resync,)) == [248.6, 248.6]
    # the report of the window's own time, whatever it was: a wrong report is still caught
    for st in history:
        if 1.25 * RATE <= st.input_position < 3.25 * RATE:                   # while the first window played
            st.latency.total_ms = 230.0
    assert clean_windows(starts, lags, (), history, resync_positions=(resync,)) == [230.0, 248.6]
    # a window of the step's stretch is disturbed (the resync's second before it and the settling)
    assert clean_windows([int(6.0 * RATE)], [249.7], (), history, resync_positions=(resync,)) == [None]
    assert clean_windows(starts, lags, (), history, resync_positions=(resync,), nearest=True) == [248.6, 248.6]


def lost_to_xruns(starts, lags_ms, xrun_positions, window_s: float = 2.0) -> np.ndarray:
    """Per window: whether a driver-flagged xrun falls in it (as `clean_windows` reckons) -- the
    windows the machine took, as opposed to ones that were measured and did not match."""
    xruns = np.asarray(xrun_positions, np.int64)
    w, settle = int(window_s * RATE), int(SETTLE_AFTER_XRUN_S * RATE)
    return np.array([_hit(xruns, start, lag_ms, w, settle) for start, lag_ms in zip(starts, lags_ms)], bool)


def _hit(events: np.ndarray, start: int, lag_ms: float, w: int, settle: int) -> bool:
    end = start + w + int(lag_ms * RATE / 1000) + settle
    return bool(np.any((events >= start - RATE // 2) & (events < end)))


def _in(folder, kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    return {k: (folder / "rec" if k == "record_dir" else v) for k, v in kwargs.items()}


def windowed(out: np.ndarray, expected: np.ndarray, lag: int, seconds: float = 2.0, search_ms: float = 30.0,
             span: tuple[int, int] | None = None):
    """(start, lag, correlation, stepped) per window of `expected`, each lag searched near the overall
    `lag`; `stepped`: the delay moved inside the window.

    Windows, because a device-level xrun (an overloaded machine) may shift the driver's buffer and
    with it the latency by a few ms mid-stream; every window must still be right. A window in which
    the delay stepped is checked on both sides of the step (`split_at_step`), each at its own lag:
    the sound server can move our stream by a millisecond or two without anything flagging it (no
    xrun, no time stamp moves that far), and what must hold is that the audio on either side is
    the right conversion. `stepped` also marks a window whose delay moved by a few ms for a stretch
    and came back (`moved_and_back`).
    """
    w, s = int(seconds * RATE), int(search_ms * RATE / 1000)
    lo, hi = span if span is not None else (RATE, len(expected) - RATE)
    found = []
    for start in range(max(lo, RATE), min(hi, len(expected) - RATE) - w + 1, w):
        ref = expected[start:start + w]
        if np.std(ref) < 1e-3:
            continue
        seg = out[start + lag - s:start + lag + s + w]
        local = lag - s + lag_of(seg, ref, 2 * s)
        r = float(np.corrcoef(out[start + local:start + local + w], ref)[0, 1])
        stepped = False
        if r < 0.99:
            local, r, stepped = split_at_step(out, expected, start, w, local, s, r)
        if r < 0.99 and not stepped:
            r, stepped = moved_and_back(out, expected, start, w, local, s, r)
        found.append((start, local, r, stepped))
    return found


MOVE_SEGMENT_S = 0.05
MOVE_MAX_MS = 5.0


def moved_and_back(out, expected, start, w, local, s, r):
    """A window whose correlation at one lag is imperfect and whose two ends sit at the same lag:
    did the delay move for a stretch inside it and come back? (Seen with nothing flagging it, in a
    run without an xrun, a late block or a time-stamp step: 150 ms of one window played 1.4 ms
    early, then the sound server put our stream back; that window correlated 0.876.)

    Per `MOVE_SEGMENT_S` segment, the lag that fits it best; if any differs from the window's by
    more than a sample: (the smallest correlation of the segments at their own lags, leaving out
    each segment next to a change of lag (it holds the move itself), True) -- or (-1, True) when a
    segment sits more than `MOVE_MAX_MS` away (then the window's own lag does not time it) or
    fewer than half of them are left to judge. Else (unchanged, False).
    """
    seg = int(MOVE_SEGMENT_S * RATE)
    lags, rs = [], []
    for lo in range(start, start + w - seg + 1, seg):
        ref = expected[lo:lo + seg]
        if np.std(ref) < 1e-3:
            lags.append(None)
            rs.append(None)
            continue
        best = local - s + lag_of(out[lo + local - s:lo + local + s + seg], ref, 2 * s)
        lags.append(best)
        rs.append(float(np.corrcoef(out[lo + best:lo + best + seg], ref)[0, 1]))
    known = [i for i, lag in enumerate(lags) if lag is not None]
    if all(abs(lags[i] - local) <= 1 for i in known):
        return r, False
    if any(abs(lags[i] - local) > MOVE_MAX_MS * RATE / 1000 for i in known):
        return -1.0, True
    near_move = set()
    for i, j in zip(known, known[1:]):
        if abs(lags[i] - lags[j]) > 1:
            near_move |= {i, j}
    kept = [rs[i] for i in known if i not in near_move]
    return (min(kept) if 2 * len(kept) >= len(known) else -1.0), True


def split_at_step(out, expected, start, w, local, s, r):
    """A window whose correlation at one lag is imperfect: if its first and last quarter sit at
    different lags (a delay step inside), the smaller correlation of the two sides, each at its own
    lag, around the step point that suits them best (the step's own samples left out: the output
    repeats or skips there). Returns (lag after the step, correlation, True); (unchanged, False) when
    no step."""
    q = w // 4
    lags = []
    for lo in (start, start + w - q):
        seg = out[lo + local - s:lo + local + s + q]
        lags.append(local - s + lag_of(seg, expected[lo:lo + q], 2 * s))
    before, after = lags
    if before == after:
        return local, r, False
    guard = abs(after - before) + RATE // 200
    best = -1.0
    for cut in range(start + q // 2, start + w - q // 2, RATE // 100):
        a = slice(start, cut - guard)
        b = slice(cut + guard, start + w)
        ra = float(np.corrcoef(out[a.start + before:a.stop + before], expected[a])[0, 1])
        rb = float(np.corrcoef(out[b.start + after:b.stop + after], expected[b])[0, 1])
        best = max(best, min(ra, rb))
    return after, best, True


def measure(meter: np.ndarray, rec_in: np.ndarray, voice, settings: Settings = OPEN,
            signal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per window: its start as an engine input position, the end-to-end latency (ms), the
    correlation with the offline conversion and whether the delay stepped inside it; with `signal`,
    only windows inside it (not a lead-in).

    The engine's recording of its own input starts at its stream start; find that instant on the
    meter clock. Converting that input offline from the same start gives what the engine should
    have played (the DSP voice's pulse phase and noise depend on the stream start), at zero delay;
    its lag in the meter's right channel is the end-to-end latency.
    """
    heard_in, out = meter[:, 0], meter[:, 1]
    # (parecord may begin a little after the engine's capture: the offset can be negative)
    start = lag_of(heard_in, rec_in, len(heard_in) - RATE, min_lag=-RATE)
    a, b = max(start, 0), max(-start, 0)
    n = min(len(heard_in) - a, len(rec_in) - b)
    # One clock, bit-exact capture (but for a sample or two where PulseAudio rewinds the sink: the
    # monitor already delivered what the sink then re-rendered; see tests/pulse.py on the player).
    assert np.count_nonzero(heard_in[a:a + n] != rec_in[b:b + n]) <= 16
    # fed in the engine's own blocks (the converter is meant to be chunking-invariant; see report)
    converted = convert_whole(Converter(core_factory(voice), settings, RATE), rec_in,
                              block=ms_to_samples(settings.block_ms, RATE))
    expected = np.zeros_like(out)
    expected[a:a + n] = converted[b:b + n]
    lag = lag_of(out, expected, RATE)
    span = None
    if signal is not None:             # where the engine captured it (bit-exact), on the meter clock
        at = lag_of(rec_in, signal, len(rec_in) - len(signal)) - b + a
        span = (at, at + len(signal))
    found = windowed(out, expected, lag, span=span)
    return (np.array([f[0] - a + b for f in found]), np.array([f[1] for f in found]) * 1000.0 / RATE,
            np.array([f[2] for f in found]), np.array([f[3] for f in found], bool))


@pytest.mark.parametrize("voice, seconds, settings", VOICES)
def test_latency_and_conversion_through_pulseaudio(pulse, tmp_path, voice, seconds, settings, request):
    """The voice through real devices: in every window that nothing disturbed, the measured
    latency is the reported one (within `TOLERANCE_MS`; in a run with an unplaced delay step, one
    the engine reported in that stretch) and the audio is the offline conversion; at least
    `seconds // 2 - 2` such windows, timed, in all.

    Each run is judged (its clean windows, its state, its late blocks), and the judged windows of
    all runs count together: while too few have been judged (the machine disturbed the others:
    driver xruns, a sound-server step, a budget change) or, with a fixed budget, the run had a late
    block, it runs again, up to `ATTEMPTS` runs. Late blocks: with a fixed budget one run must have
    none; with the adaptive budget a late block is the event the policy is specified to answer
    (raise, report, keep the reported latency true: see `assert_late_blocks_answered`), and how
    many there are on this machine is printed, a figure, not a bound (see the module doc). Too
    few windows fail the test, unless the machine alone took the missing ones in every run (driver
    xruns, an output delay step the engine recorded): then it is skipped with the figures (nothing
    measured was wrong, too little was measured).
    """
    if isinstance(voice, str) and voice.startswith("fixture:"):
        voice = str(request.getfixturevalue(voice.split(":", 1)[1]))
    x = voiced(seconds)
    need = int(seconds // 2 - 2)
    judged, runs, machine_lost, unmatched = 0, [], [], 0
    for attempt in range(1, ATTEMPTS + 1):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        meter, st, session, history = run_through_engine(pulse, folder, voice, x, settings=settings,
                                                         record_dir=folder / "rec")
        rec_in, _ = sf.read(st.recording_paths[0], dtype="float32")
        starts, lags_ms, rs, stepped = measure(meter, rec_in, voice, settings, signal=x)
        unplaced = bool(st.latency_steps)     # the output delay stepped where nothing places it
        reported = clean_windows(starts, lags_ms, st.xruns.positions, history, resync_positions=st.resync_positions,
                                 budget_positions=st.budget_change_positions, nearest=unplaced)
        # A window in which the delay stepped with nothing flagging it (the sound server moved our
        # stream: in CI 3.5 ms inside one window, whose two sides then correlated only 0.88, the
        # transition spread wider than one clean step) cannot be judged, like one with an xrun; a
        # window that stepped cleanly (both sides >= 0.99) is judged as any other.
        unjudgeable = stepped & (rs < 0.99)
        clean = np.array([r is not None for r in reported]) & ~unjudgeable
        print(f"\n{getattr(voice, '__name__', voice)} (run {attempt}): measured {np.median(lags_ms):.1f} ms "
              f"(windows {lags_ms.min():.1f}..{lags_ms.max():.1f}), reported {st.latency.total_ms:.1f} ms, error "
              f"{np.median(lags_ms) - st.latency.total_ms:+.1f} ms; correlation min {rs.min():.3f} median "
              f"{np.median(rs):.3f}; {clean.sum()} of {len(clean)} windows clean ({stepped.sum()} stepped, "
              f"{unjudgeable.sum()} of them unjudgeable); device xruns "
              f"{st.xruns.describe()}; breakdown {dict((k, round(v, 1)) for k, v in st.latency.as_ms().items())}; "
              f"engine's account: {disturbance(st) or 'undisturbed'}; late blocks {st.underruns}; budget "
              f"{st.block_budget_ms:.1f} ms ({st.budget_note}); compute p50/p99 {st.compute_p50_ms}/{st.compute_p99_ms} ms; "
              f"notes {st.notes}")
        # Every run is judged where it can be: its state, and the audio and latency of each clean
        # window. Where the engine saw the output delay step somewhere it cannot place
        # (`latency_steps`: from the callbacks' time stamps, which through PulseAudio on a busy
        # machine also move without the delay moving; in CI the report followed a +15 ms step that
        # three clean windows of the same run did not show), a window's latency is compared with
        # the nearest report of its stretch, and the window does not count as timed.
        assert st.state == "running" and st.error is None
        assert st.blocks_processed >= seconds * 1000 / settings.block_ms
        timed = clean & (not unplaced)
        errors = [abs(lag - ref) for lag, ref, ok in zip(lags_ms, reported, clean) if ok]
        assert max(errors, default=0.0) <= TOLERANCE_MS, \
            f"run {attempt}: latency errors {errors} ms (windows {lags_ms.round(1).tolist()} ms, reports {reported})"
        assert rs[clean].min(initial=1.0) >= 0.9, f"run {attempt}: correlations {rs[clean]}"
        if settings is FAST:
            # What the engine itself adds at 20 ms blocks is fixed by construction (block 20 + the
            # built-in voice's 21.3 ms + resamplers 6.6 ms at 48 kHz); the rest is budget and devices.
            assert st.budget_auto and st.latency.algorithmic_ms <= 50.0
            assert_late_blocks_answered(st, history, settings.block_ms)
        if settings is FAST_FIXED:
            # the low-latency pack: block 20 + features and decoder 8 ms + resamplers 6.6 ms
            assert st.latency.algorithmic_ms <= 35.0
        judged += int(timed.sum())
        unmatched += int(unjudgeable.sum())
        runs.append(st)
        # what the machine took: windows with a driver xrun, and a stepped run's clean windows
        machine_lost.append(int((~clean & lost_to_xruns(starts, lags_ms, st.xruns.positions) & ~unjudgeable).sum()
                             + (clean & ~timed).sum()))
        if judged >= need and (st.budget_auto or not st.underruns):
            break
        # Too few windows judged so far, or (fixed budget) a block late on a machine busy with other
        # work: not evidence either way, run again.
        print(f"repeat: {disturbance(st) or f'{unjudgeable.sum()} unjudgeable window(s)'}; {judged} windows judged so far")
    if not st.budget_auto:
        assert any(run.underruns == 0 for run in runs), f"late blocks in every run: {[r.underruns for r in runs]}"
    if judged < need and all(machine_lost) and judged + sum(machine_lost) >= need:
        pytest.skip(f"the machine took windows in every run (driver xruns {[run.xruns.describe() for run in runs]}, "
                    f"output delay steps {[len(run.latency_steps) for run in runs]}; windows lost {machine_lost}): "
                    f"{judged} windows judged of {need}, every one of them right; not enough to judge")
    assert judged >= need, (f"{judged} windows judged in {len(runs)} runs; {unmatched} windows matched the offline "
                            "conversion at no lag or lags (a wrong conversion looks like that, too)")


def assert_late_blocks_answered(st, history, block_ms: float) -> None:
    """With the adaptive budget, late blocks are answered as specified: the worker saw every one
    counted half a second before the end (it sees them a block later), the budget was raised, and
    its note says so (or that it already stood at its ceiling). How the reported latency followed
    the raise is checked by the clean windows (a raise is a reported latency step)."""
    half_second = 500.0 / block_ms    # in blocks
    earlier = [h.underruns for h in history if h.blocks_processed <= st.blocks_processed - half_second]
    assert max(earlier, default=0) <= st.late_blocks_answered, (earlier[-1:], st.late_blocks_answered)
    if st.late_blocks_answered:
        note = st.budget_note or ""
        assert (st.budget_raises >= 1 and "late block" in note) or "at its limit" in note, \
            f"{st.late_blocks_answered} late blocks answered by no raise: {st.budget_raises} raises, note {note!r}"


def test_pulse_targets_run_as_two_streams(pulse, tmp_path):
    """pulse:SOURCE and pulse:SINK share the ALSA 'pulse' device, but run as two streams: as one
    duplex stream PortAudio ended 1 in 5 starts (see DeviceInfo.duplex_safe)."""
    from engine.audio.streams import SoundDeviceBackend, plan_streams

    plan = plan_streams(SoundDeviceBackend(), input="pulse:vc_in.monitor", output="pulse:vc_out", sample_rate=RATE)
    assert not plan.duplex
    x = voiced(4.0, seed=1)
    meter, st, _, _ = run_until_undisturbed(pulse, tmp_path, passthrough, x, input_device="pulse:vc_in.monitor",
                                             output_device="pulse:vc_out")
    assert st.underruns == 0 and st.latency is not None
    lag = lag_of(meter[:, 1], meter[:, 0], RATE)
    measured_ms = 1000.0 * lag / RATE
    print(f"\npulse targets: measured {measured_ms:.1f} ms, reported {st.latency.total_ms:.1f} ms")
    assert abs(measured_ms - st.latency.total_ms) <= TOLERANCE_MS


def test_cli_through_pulseaudio(pulse, tmp_path):
    import subprocess
    import sys

    from tests.pulse import ROOT

    done = subprocess.run([sys.executable, "-m", "engine.live", "--input", "vc_in", "--output", "vc_out",
                           "--monitor", "vc_mon", "--sample-rate", str(RATE), "--seconds", "2.5",
                           "--record", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = [line for line in done.stdout.splitlines() if line.startswith("latency")]
    assert len(status) >= 2 and "underruns 0" in status[-1]
    assert len(list(tmp_path.glob("*.wav"))) == 2
    listing = subprocess.run([sys.executable, "-m", "engine.live", "--list-devices"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and "vc_out" in listing.stdout and "pulse:vc_out" in listing.stdout


def test_unplugged_output_waits_and_resumes_by_itself(pulse, tmp_path):
    """The cable is unloaded mid-stream (pactl unload-module), then loaded again; later the whole
    server goes away and comes back. The session waits each time and resumes by itself, with the
    same settings and the same fixed (in-program) latency, and the meter hears the audio again."""
    import threading

    from engine.session import LiveSession, SessionConfig

    session = LiveSession(reconnect_s=0.25)
    events: list[tuple[str, str]] = []
    changed = threading.Event()

    def on_state(state, message):
        events.append((state, message))
        changed.set()

    def wait_state(state: str, after: int) -> str:
        """The message of the first `state` reported after the first `after` events."""
        for _ in range(200):
            found = [m for s, m in events[after:] if s == state]
            if found:
                return found[0]
            changed.wait(0.1)
            changed.clear()
        raise AssertionError(f"no {state!r} after event {after}: {events}")

    session.on_state = on_state
    cfg = SessionConfig(input_device="pulse:vc_in.monitor", output_device="pulse:vc_out", sample_rate=RATE,
                        voice=passthrough, settings=OPEN)
    rec = MeterRecording(tmp_path / "meter.raw")
    try:
        session.start(cfg)
        rec.wait_frames(RATE // 2)
        before = session.stats()
        # 1. The cable disappears. PulseAudio would quietly move our stream to another sink.
        pulse.pactl("unload-module", pulse.module_id("vc_out"))
        message = wait_state("waiting", 0)
        assert "pulse:vc_out is gone" in message and "Waiting for pulse:vc_out" in message
        st = session.stats()
        assert st.state == "waiting" and st.waiting_for.startswith("pulse:vc_out") and st.error is None
        # The cable comes back: audio resumes by itself, at the same latency.
        pulse.pactl("load-module", "module-remap-sink", "sink_name=vc_out", "master=meter", "format=float32le",
                    f"rate={RATE}", "channels=1", "channel_map=mono", "master_channel_map=front-right", "remix=no")
        assert "is back" in wait_state("running", 2)     # (after: starting, running)
        assert_plays(session, rec, tmp_path, "first")
        assert session.stats().reconnects == 1
        # 2. The whole audio server goes away mid-stream: PortAudio ends the stream; we wait.
        rec.proc.kill()
        n = len(events)
        pulse.stop(restore_env=False)
        assert "stopped" in wait_state("waiting", n)
        # (While the server shuts down it may still answer: the session can resume on it and wait
        # again. Only a resume after the new server started counts.)
        n = len(events)
        # Back, with the same device names. The session re-scans PortAudio itself when it resumes; the
        # test re-initialising it from this thread while the session may hold a stream on the dying
        # server deadlocked in Pa_Terminate (seen once in CI: both threads inside devices.refresh).
        pulse.start(rescan=False)
        rec = MeterRecording(tmp_path / "meter2.raw")
        assert "is back" in wait_state("running", n)
        after = assert_plays(session, rec, tmp_path, "second")
    finally:
        rec.proc.kill()
        session.stop()
        print("\n".join(f"[{s}] {m}" for s, m in events))
    states = [s for s, _ in events]
    assert states[:5] == ["starting", "running", "waiting", "running", "waiting"], events
    assert states[-2:] == ["running", "stopped"] and states[4:-1] == ["waiting", "running"] * ((len(states) - 5) // 2)
    assert after.reconnects == (len(states) - 3) // 2      # (late blocks: each play's own, in assert_plays)
    fixed = ("block", "lookahead", "crossfade", "resampling", "core")
    assert all(getattr(after.latency, f) == getattr(before.latency, f) for f in fixed)


def assert_plays(session, rec, tmp_path, name):
    """Play a signal through the resumed session: the meter hears it converted, no block late.

    Played again (up to `ATTEMPTS` times) while the engine records a disturbance during the play
    (a driver xrun, a resync, a late block: the sound server moved the stream, and the signal is
    not comparable sample for sample); the last play is asserted whatever happened.
    (The lag is printed, not asserted: in the first seconds after a stream (re)opens PulseAudio
    still moves its buffers; the latency tests above measure a settled session.)"""
    for attempt in range(1, ATTEMPTS + 1):
        rec.wait_frames(rec.frames() + RATE // 2)      # settled
        before = session.stats()
        x = voiced(3.0, seed=2)
        start = rec.frames()
        player = play(x, tmp_path / f"{name}-{attempt}.raw")
        assert player.wait(30) == 0, player.stderr.read()
        rec.wait_frames(rec.frames() + RATE)
        st = session.stats()
        meter = np.fromfile(rec.path, dtype=np.float32)
        meter = meter[: len(meter) // 2 * 2].reshape(-1, 2)[start:]
        lag = lag_of(meter[:, 1], meter[:, 0], RATE)
        n = len(x)
        r = float(np.corrcoef(meter[lag:lag + n, 1], meter[:n, 0])[0, 1])
        moved = (st.device_xruns - before.device_xruns, len(st.resync_positions) - len(before.resync_positions),
                 st.underruns - before.underruns)
        print(f"\n{name} resume (play {attempt}): measured {1000.0 * lag / RATE:.1f} ms, reported "
              f"{st.latency.total_ms:.1f} ms, r {r:.3f}; during it xruns / resyncs / late blocks {moved}")
        if not any(moved):
            break
    assert st.state == "running" and st.underruns == before.underruns, f"late blocks during the play: {moved}"
    assert r >= 0.9
    return st


def test_pulse_targets_run_at_their_own_rate(pulse):
    """The ALSA `pulse` device says 44.1 kHz; the null sinks run at 48 kHz, and so must the streams
    (at the generic rate an idle null sink stalled and the session stopped)."""
    from engine.audio.streams import SoundDeviceBackend, plan_streams

    plan = plan_streams(SoundDeviceBackend(), input="pulse:vc_in.monitor", output="pulse:vc_out")
    assert plan.rate == RATE
