"""Per-user settings of the app: one JSON file in the platformdirs user config folder.

What is stored is what the user chose, not indices: devices by (name, host API) because PortAudio
indices change when a USB device is plugged in. Loading never fails: a missing, corrupt or
out-of-range file gives defaults plus human-readable warnings the window shows in its status bar.
Whenever something saved could not be used (invalid UTF-8 or JSON, nesting too deep to parse,
numbers too large, wrong types), the file is first kept as `settings.json.bad-<time>` and then
rewritten with what was usable, so the warning is shown once and nothing the user had is lost.
Writes are atomic (`engine.safe_write`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from app.engine_adapter import OutputError, Settings, default_voice, write_bytes, write_text
from app.values import DeviceRef

APP_NAME = "como-live"
FILE_NAME = "settings.json"
STORE_VERSION = 1
CONFIG_DIR_ENV = "COMO_LIVE_CONFIG_DIR"  # tests and portable installs point this elsewhere
#: Saved but never restored: starting in bypass would put the streamer's real voice on air unasked.
NOT_RESTORED = frozenset({"bypass"})


def config_dir() -> Path:
    """Folder of settings.json ($COMO_LIVE_CONFIG_DIR or the platform's user config folder)."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or platformdirs.user_config_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class AppConfig:
    """Everything the window lets the user choose. `None` device = the system default."""

    input_device: DeviceRef | None = None
    output_device: DeviceRef | None = None
    monitor_device: DeviceRef | None = None
    sample_rate: int | None = None
    input_channel: int = 0
    voice: str = field(default_factory=default_voice)   # the engine's DEFAULT_VOICE
    settings: Settings = field(default_factory=Settings)
    record_dir: str | None = None
    preview_voices: bool = True      # play a speaker's preview clip when it is chosen

    def with_settings(self, **changes: Any) -> "AppConfig":
        return replace(self, settings=self.settings.with_changes(**changes))


def _device(raw: Any, key: str, warnings: list[str]) -> DeviceRef | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and isinstance(raw.get("hostapi"), str):
        return DeviceRef(raw["name"], raw["hostapi"])
    warnings.append(f"Saved {key.replace('_', ' ')} was unreadable; using the default.")
    return None


def _settings(raw: Any, warnings: list[str]) -> Settings:
    """Apply each stored value on its own so one bad value does not lose the others."""
    result = Settings()
    if not isinstance(raw, dict):
        return result
    defaults = {f.name: getattr(result, f.name) for f in fields(Settings)}
    for name, value in raw.items():
        if name not in defaults or name in NOT_RESTORED:
            continue  # a setting from a newer/older version: ignore silently
        kind = type(defaults[name])
        # JSON has one number type; bools must really be bools ("false" would be truthy).
        if isinstance(value, bool) != (kind is bool):
            ok = False
        else:
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok:
            warnings.append(f"Saved setting {name}={value!r} has the wrong type; using {defaults[name]!r}.")
            continue
        try:
            result = result.with_changes(**{name: kind(value)})
        except (ValueError, OverflowError) as exc:  # out of range; an int too large for a float
            warnings.append(f"Saved setting ignored: {exc}.")
    return result


def config_from_json(data: Any) -> tuple[AppConfig, list[str]]:
    """Parse the stored JSON object; returns (config, warnings). Never raises."""
    warnings: list[str] = []
    if not isinstance(data, dict):
        return AppConfig(), ["Saved settings were unreadable; using defaults."]
    rate = data.get("sample_rate")
    if rate is not None and not (isinstance(rate, int) and 8000 <= rate <= 384000):
        warnings.append(f"Saved sample rate {rate!r} is invalid; using the device default.")
        rate = None
    channel = data.get("input_channel", 0)
    if not (isinstance(channel, int) and 0 <= channel < 64):
        warnings.append(f"Saved input channel {channel!r} is invalid; using channel 1.")
        channel = 0
    voice = data.get("voice")
    if not isinstance(voice, str) or not voice:
        voice = default_voice()
    record_dir = data.get("record_dir")
    preview_voices = data.get("preview_voices", True)
    if not isinstance(preview_voices, bool):
        warnings.append(f"Saved preview setting {preview_voices!r} is not true or false; previews stay on.")
        preview_voices = True
    config = AppConfig(
        input_device=_device(data.get("input_device"), "input_device", warnings),
        output_device=_device(data.get("output_device"), "output_device", warnings),
        monitor_device=_device(data.get("monitor_device"), "monitor_device", warnings),
        sample_rate=rate,
        input_channel=channel,
        voice=voice,
        settings=_settings(data.get("settings"), warnings),
        record_dir=record_dir if isinstance(record_dir, str) and record_dir else None,
        preview_voices=preview_voices,
    )
    return config, warnings


def config_to_json(config: AppConfig) -> dict[str, Any]:
    data = asdict(config)
    data["version"] = STORE_VERSION
    return data


class SettingsStore:
    """Reads and writes `settings.json` in `folder` (default: `config_dir()`)."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else config_dir()

    @property
    def path(self) -> Path:
        return self.folder / FILE_NAME

    def load(self) -> tuple[AppConfig, list[str]]:
        """The saved config (defaults when there is none) and warnings about what was dropped.

        When anything was dropped the file is kept as `settings.json.bad-<time>` and rewritten with
        what was usable (so the next start is clean); the last warning names the kept copy.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AppConfig(), []
        except OSError as exc:
            return AppConfig(), [f"Could not read saved settings ({exc}); using defaults."]
        try:
            config, warnings = config_from_json(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            config, warnings = AppConfig(), [f"Saved settings were corrupt ({exc}); using defaults."]
        except RecursionError:
            config, warnings = AppConfig(), ["Saved settings were nested too deeply to read; using defaults."]
        except (ValueError, OverflowError, TypeError, MemoryError) as exc:  # e.g. a number too long to parse
            config, warnings = AppConfig(), [f"Saved settings were unreadable ({type(exc).__name__}); using defaults."]
        if warnings:
            warnings.append(self._keep_bad_copy(raw, config))
        return config, warnings

    def _keep_bad_copy(self, raw: bytes, usable: AppConfig) -> str:
        """Keep the file as it was, then rewrite it with `usable`; returns the sentence saying where it went."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.folder / f"{FILE_NAME}.bad-{stamp}"
        for n in range(2, 100):
            if not backup.exists():
                break
            backup = self.folder / f"{FILE_NAME}.bad-{stamp}-{n}"
        try:
            write_bytes(backup, raw)
            self.save(usable)
        except OSError as exc:
            return f"Could not keep a copy of the settings file as it was ({exc})."
        return f"The settings file as it was is kept as {backup}."

    def save(self, config: AppConfig) -> None:
        """Write atomically (temp file, fsync, rename) so a crash never leaves half a file; raises OSError."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            write_text(self.path, json.dumps(config_to_json(config), indent=2, sort_keys=True) + "\n")
        except OutputError as exc:
            raise OSError(str(exc)) from exc
