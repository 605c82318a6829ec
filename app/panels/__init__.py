"""One panel per file; each observes the AudioBridge's signals and calls its methods."""
from app.panels.audio_panel import AudioPanel
from app.panels.readouts_panel import ReadoutsPanel
from app.panels.timing_panel import TimingPanel
from app.panels.voice_panel import VoicePanel

__all__ = ["AudioPanel", "ReadoutsPanel", "TimingPanel", "VoicePanel"]
