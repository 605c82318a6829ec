"""Cached-state convolutions: the one home of streaming for every streamable network.

A streaming network is called on chunks of new frames and carries, between calls, the left context
of each convolution (its *state*). A convolution with right padding `r` can only emit an output once
`r` later inputs exist, so each emits its outputs `r` samples late; the delays add up along the
network, and every branch that is summed with another is first delayed to the same point
(`DelayLine`). Each call therefore returns exactly as many outputs as it got inputs (times the
upsampling), and the whole stream equals the whole-sequence network delayed by a fixed number of
samples — the network's right receptive field (its *intrinsic delay*).

Bookkeeping (static, worked out when the streaming module is built): a signal is a `Stream(rate,
delay)`: `rate` samples per input frame, and the samples a call emits are the positions
`rate·position − delay + j` (j = 0..n-1), where `position` is the number of frames given to earlier
calls (an int64 `[1]` state of its own). The whole-sequence network pads each convolution's input
with zeros outside [0, T); the stream reproduces the left padding by zeroing every convolution input
at a negative position (those come out of the delays at the start), so the stream is exact from the
first frame. Outputs at negative positions are produced during the first `delay` samples and are
discarded by the caller.

States are plain tensors passed in and out by name (`StreamContext`), so a traced graph has them as
inputs and outputs (in the order `collect_states` lists them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Stream:
    """A signal inside a streaming network: `rate` samples per frame, emitted `delay` samples late."""

    rate: int
    delay: int

    def delayed(self, extra: int) -> Stream:
        return Stream(self.rate, self.delay + extra)


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: shape without the batch axis (batch is 1), float32, initially zeros."""

    name: str
    shape: tuple[int, ...]


class StreamContext:
    """The states of one streaming call: `take(name)` reads an old one, `put(name, t)` stores the new.

    `position` [1] int64: frames given to earlier calls."""

    def __init__(self, position: torch.Tensor, states: dict[str, torch.Tensor]) -> None:
        self.position = position
        self.old = dict(states)
        self.new: dict[str, torch.Tensor] = {}
        self._positions: dict[int, torch.Tensor] = {}

    def positions(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        """Absolute positions [n] of the samples of x [B, C, n] at `rate` before any delay
        (one Range per rate and call: every stream of that rate has n samples)."""
        if rate not in self._positions:
            self._positions[rate] = self.position * rate + torch.arange(x.shape[-1], device=x.device)
        return self._positions[rate]

    def take(self, name: str) -> torch.Tensor:
        return self.old[name]

    def put(self, name: str, state: torch.Tensor) -> None:
        self.new[name] = state

    def outputs(self, specs: Sequence[StateSpec]) -> list[torch.Tensor]:
        """The new states in the order of `specs` (every one must have been put)."""
        missing = [s.name for s in specs if s.name not in self.new]
        if missing:
            raise ValueError(f"streaming call did not update the states {missing}")
        return [self.new[s.name] for s in specs]


def valid_mask(x: torch.Tensor, stream: Stream, ctx: StreamContext) -> torch.Tensor:
    """x [B, C, n] of `stream` with the samples at negative positions set to zero (an undelayed
    stream has none)."""
    if stream.delay == 0:
        return x
    return x * (ctx.positions(x, stream.rate) >= stream.delay).to(x.dtype)


def pad_conv1d(conv: nn.Conv1d, x: torch.Tensor, pads: tuple[int, int]) -> torch.Tensor:
    """`conv` over x [B, C, T] zero-padded by (left, right) instead of its own symmetric padding."""
    if conv.padding[0] == pads[0] == pads[1]:
        return conv(x)
    return F.conv1d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def crop_conv_transpose1d(conv: nn.ConvTranspose1d, x: torch.Tensor, crops: tuple[int, int]) -> torch.Tensor:
    """`conv` over x [B, C, T] with (left, right) output crops instead of its symmetric `padding`."""
    if conv.padding[0] == crops[0] == crops[1]:
        return conv(x)
    z = F.conv_transpose1d(x, conv.weight, conv.bias, conv.stride)
    return z[..., crops[0]: z.shape[-1] - crops[1]]


def split_right(total: int, right: int) -> tuple[int, int]:
    """(left, right) padding with `right` ≤ total on the right."""
    right = max(0, min(total, right))
    return total - right, right


class DelayLine(nn.Module):
    """Delays a stream by `delay` samples; state [C, delay]."""

    def __init__(self, channels: int, delay: int, name: str) -> None:
        super().__init__()
        if delay < 0:
            raise ValueError(f"a delay line cannot advance a signal ({delay})")
        self.channels, self.delay, self.name = channels, delay, name

    def states(self) -> list[StateSpec]:
        return [StateSpec(self.name, (self.channels, self.delay))] if self.delay else []

    def forward(self, x: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        if not self.delay:
            return x
        full = torch.cat([ctx.take(self.name), x], dim=-1)
        ctx.put(self.name, full[..., -self.delay:])
        return full[..., : -self.delay]  # a constant end: no shape arithmetic in the graph


class _Cached(nn.Module):
    """Base of the cached convolutions: `context` past inputs kept as the state `name`."""

    conv: nn.Module
    context: int
    name: str
    stream_in: Stream

    def states(self) -> list[StateSpec]:
        return [StateSpec(self.name, (self.conv.in_channels, self.context))] if self.context else []

    def with_context(self, x: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        """[state, x with negative positions zeroed] [B, C, context + n]; stores the new state."""
        x = valid_mask(x, self.stream_in, ctx)
        if not self.context:
            return x
        full = torch.cat([ctx.take(self.name), x], dim=-1)
        ctx.put(self.name, full[..., -self.context:])
        return full


class CachedConv1d(_Cached):
    """Streaming view of a trained `conv` (stride s, dilation d) with zero padding (left, right).

    State: the last (k-1)·d + 1 − s + e inputs, where e ≥ 0 extra samples of delay put every
    output on the stride grid. Output stream: rate / s, delay (in + e + (k-1)·d + 1 − left − s) / s
    (stride 1: in + right)."""

    def __init__(self, conv: nn.Conv1d, pads: tuple[int, int], stream_in: Stream, name: str) -> None:
        super().__init__()
        self.conv = conv
        k, d, s = conv.kernel_size[0], conv.dilation[0], conv.stride[0]
        if sum(pads) != (k - 1) * d + 1 - s:
            raise ValueError(f"{name}: padding {pads} does not keep the length of a kernel {k}, "
                             f"dilation {d}, stride {s} convolution")
        if stream_in.rate % s:
            raise ValueError(f"{name}: stride {s} does not divide the stream rate {stream_in.rate}")
        self.stream_in, self.name = stream_in, name
        self.extra = (s - k + pads[0] - stream_in.delay) % s if s > 1 else 0
        self.context = (k - 1) * d + 1 - s + self.extra
        self.stream_out = Stream(stream_in.rate // s,
                                 (stream_in.delay + self.extra + (k - 1) * d + 1 - pads[0] - s) // s)

    def forward(self, x: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        full = self.with_context(x, ctx)
        if self.extra:
            full = full[..., : -self.extra]
        c = self.conv
        return F.conv1d(full, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class CachedConvTranspose1d(_Cached):
    """Streaming view of a trained transposed `conv` (kernel k, stride u) with output crops
    (left, right), left + right = k − u. State: the last ceil(k/u) − 1 inputs. Output stream:
    rate·u, delay in·u + left."""

    def __init__(self, conv: nn.ConvTranspose1d, crops: tuple[int, int], stream_in: Stream, name: str) -> None:
        super().__init__()
        self.conv = conv
        k, u = conv.kernel_size[0], conv.stride[0]
        if sum(crops) != k - u:
            raise ValueError(f"{name}: crops {crops} do not make a kernel {k}, stride {u} transposed "
                             "convolution upsample exactly")
        self.stream_in, self.name, self.k, self.u = stream_in, name, k, u
        self.context = math.ceil(k / u) - 1
        self.stream_out = Stream(stream_in.rate * u, stream_in.delay * u + crops[0])

    def forward(self, x: torch.Tensor, ctx: StreamContext) -> torch.Tensor:
        z = F.conv_transpose1d(self.with_context(x, ctx), self.conv.weight, self.conv.bias, self.u)
        # z[j] is complete (all its inputs present) for j in [context·u, (context + n)·u), and
        # (context + n)·u is k − u before the end of z
        tail = self.k - self.u
        return z[..., self.context * self.u: -tail] if tail else z[..., self.context * self.u:]


def align(streams: Sequence[Stream]) -> int:
    """The common delay a set of streams of one rate is brought to before they are combined."""
    if len({s.rate for s in streams}) != 1:
        raise ValueError(f"cannot combine streams of different rates: {streams}")
    return max(s.delay for s in streams)


def collect_states(module: nn.Module) -> list[StateSpec]:
    """Every state of `module`'s streaming parts (module order: the graph's state inputs/outputs)."""
    specs: list[StateSpec] = []
    for child in module.modules():
        if isinstance(child, (DelayLine, _Cached)):
            specs.extend(child.states())
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("state names must be unique")
    return specs
