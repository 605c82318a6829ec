"""Content encoders (spec §2): audio 16 kHz [B, N] -> units [B, T_c, C] at 50 Hz.

`load_content_encoder(path)` reads any supported checkpoint:
- ContentVec / HuBERT-Base: a fairseq .pt (dict with 'model' + 'args'/'cfg'), an HF folder
  (config.json + pytorch_model.bin | model.safetensors) or an HF weights file;
- the project's PPG encoder: a .pt with {'kind': 'ppg', 'config': ..., 'state_dict': ...}.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from models.checkpoints import safe_load
from models.content.align import align_units, content_index_for_mel_frames
from models.content.base import ContentEncoder
from models.content.hubert import ContentVec, ContentVecConfig, contentvec_from_object, load_contentvec
from models.content.ppg import PPGConfig, PPGEncoder, load_ppg


def load_content_encoder(path: str | os.PathLike) -> ContentEncoder:
    """Load a content encoder in eval mode, choosing the format from what the file contains."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_contentvec(path)
    obj = safe_load(path)
    if isinstance(obj, Mapping) and obj.get("kind") == PPGEncoder.kind:
        return PPGEncoder.from_checkpoint(obj)
    return contentvec_from_object(obj, path)


__all__ = ["ContentEncoder", "ContentVec", "ContentVecConfig", "PPGConfig", "PPGEncoder", "align_units",
           "content_index_for_mel_frames", "load_content_encoder", "load_contentvec", "load_ppg"]
