"""The `vocoder` stage: NSF-HiFiGAN or the harmonic-plus-noise vocoder (`vocoder_model.type`) from
scratch (sizes from `vocoder_model`), or fine-tuned from a checkpoint (`--init-from`, its kind and
sizes), on the prepared audio and mels.

Losses: lambda_mel · log10-mel L1 + lambda_stft · multi-resolution STFT from the first step; for
NSF-HiFiGAN, from `vocoder_train.adv_start_step` on, LSGAN with the configured discriminators +
lambda_fm · feature matching (the harmonic-plus-noise vocoder has no discriminators). NSF-HiFiGAN
trains with plain (folded) weights; its checkpoints are written in the weight-norm layout of its
family (`models.vocoder.to_checkpoint_state`), the harmonic-plus-noise vocoder's as
`hn_vocoder_<step>.ckpt`.

`--mels-from CKPT` (an acoustic model's teacher or student checkpoint): the vocoder learns, and is
validated, on that model's one-step mels of the items instead of the recorded ones (made once, kept in
`<stage folder>/generated_mels`; models/train/generated_mels.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoints import CheckpointError
from models.hn_vocoder import HarmonicNoiseVocoder, HNConfig
from models.train.checkpoint_io import newest_vocoder, read_resume, write_hn_vocoder, write_vocoder
from models.train.dataset import VocoderItems, generated_mel, read_list, vocoder_item
from models.train.discriminators import build_discriminators
from models.train.errors import TrainError
from models.train.logger import TrainLogger
from models.train.loop import Dist, Stage
from models.train.vocoder_losses import (discriminator_loss, feature_matching_loss, generator_adversarial_loss,
                                         mel_l1, multi_resolution_stft)
from models.vocoder import (NSFHiFiGAN, Vocoder, VocoderConfig, VocoderConfigError, load_vocoder,
                            seeded_source_noise, to_checkpoint_state)


def config_from_training(cfg: dict[str, Any]) -> VocoderConfig | HNConfig:
    """The generator config of `vocoder_model` (+ the model audio of `data`)."""
    v, data = cfg["vocoder_model"], cfg["data"]
    if v["type"] == "hn":
        raw = {**v["hn"], "sample_rate": data["sampling_rate"], "hop_size": data["hop_length"], "num_mels": 80,
               "right_context": v.get("right_context") or 0}
        try:
            return HNConfig.from_dict(raw, source="config.yaml vocoder_model.hn")
        except VocoderConfigError as exc:
            raise TrainError(str(exc)) from None
    raw = {"audio_sample_rate": data["sampling_rate"], "hop_size": data["hop_length"], "audio_num_mel_bins": 80,
           "fft_size": 512, "win_size": 512, "fmin": 30.0, "fmax": 12000.0, "use_pitch_embed": True,
           **{k: v[k] for k in ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                                "resblock_kernel_sizes", "resblock_dilation_sizes")},
           "right_context": v.get("right_context")}
    if v.get("layout", "m4singer") != "m4singer":
        raise TrainError("vocoder_model.layout: a vocoder trained from scratch uses the m4singer layout; "
                         "fine-tune an openvpi one with --init-from")
    try:
        return VocoderConfig.from_dict("m4singer", raw, source="config.yaml vocoder_model")
    except VocoderConfigError as exc:
        raise TrainError(str(exc)) from None


def build_vocoder(config: VocoderConfig | HNConfig) -> Vocoder:
    """A freshly initialised vocoder of `config`'s kind."""
    return HarmonicNoiseVocoder(config) if isinstance(config, HNConfig) else NSFHiFiGAN(config)


def _load(path: str | Path, option: str) -> Vocoder:
    try:
        return load_vocoder(path)
    except (CheckpointError, VocoderConfigError, OSError) as exc:
        raise TrainError(f"{option} {path}: {exc}") from None


class VocoderStage(Stage):
    name = "vocoder"

    def __init__(self, work_dir: Path, cfg: dict[str, Any], dist_: Dist, init_from: str | None = None,
                 mels_from: str | None = None) -> None:
        super().__init__(work_dir, cfg, dist_)
        self.mel_dir = None
        if mels_from:
            from models.train.generated_mels import write_generated_mels

            self.mel_dir = write_generated_mels(work_dir, cfg, mels_from, self.folder / "generated_mels",
                                                dist_.device)
        resumed = read_resume(self.folder)
        weights = resumed[1] if resumed is not None else newest_vocoder(self.folder)
        if weights is not None:  # the checkpoint being resumed fixes layout and sizes
            generator = _load(weights, "resume")
        elif init_from:
            generator = _load(init_from, "--init-from")
        else:
            generator = build_vocoder(config_from_training(cfg))
        self.generator = generator.train().to(dist_.device)
        v = cfg["vocoder_train"]
        self.g_trainer = dist_.wrap(self.generator)
        betas = tuple(float(b) for b in v["betas"])
        self.opt_g = torch.optim.AdamW(self.generator.parameters(), lr=float(v["lr"]), betas=betas)
        # the harmonic-plus-noise vocoder trains with the spectral losses only
        self.adversarial = not isinstance(self.generator, HarmonicNoiseVocoder)
        if self.adversarial:
            self.discriminators = build_discriminators(list(v["discriminators"]), int(v["disc_base"])).to(
                dist_.device)
            self.d_trainer = dist_.wrap(self.discriminators)
            self.opt_d = torch.optim.AdamW(self.discriminators.parameters(), lr=float(v["lr"]), betas=betas)

    def dataset(self) -> tuple[VocoderItems, int]:
        v = self.cfg["vocoder_train"]
        ds = VocoderItems(self.work_dir, read_list(self.work_dir, "train"), self.cfg["spk"],
                          int(self.cfg["train"]["seed"]), int(v["segment_frames"]), self.mel_dir)
        return ds, int(v["batch_size"])

    def _excitation(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random initial harmonic phases [B, H+1] and source noise [B, T·hop, H+1] (as the official source)."""
        b, t = mel.shape[:2]
        h = self.generator.n_harmonics
        phase = torch.rand(b, h, device=mel.device)
        phase[:, 0] = 0.0  # the fundamental starts at phase 0 (official)
        return phase, torch.randn(b, t * self.generator.hop_size, h, device=mel.device)

    def _discriminate(self, real: torch.Tensor, fake: torch.Tensor):
        """One pass over real and fake stacked (one DDP forward per backward) -> per discriminator
        (real scores, fake scores, real maps, fake maps)."""
        b = real.shape[0]
        scores, maps = [], []
        for score, fmap in self.d_trainer(torch.cat([real, fake]).unsqueeze(1)):
            scores.append((score[:b], score[b:]))
            maps.append(([m[:b] for m in fmap], [m[b:] for m in fmap]))
        return scores, maps

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        v = self.cfg["vocoder_train"]
        mel, f0, real = batch["mel"], batch["f0"], batch["audio"]
        phase, noise = self._excitation(mel)
        with self.precision.autocast():
            fake = self.g_trainer(mel, f0, phase, noise)
        scalars: dict[str, float] = {}
        adversarial = self.adversarial and step >= int(v["adv_start_step"])
        if adversarial:
            with self.precision.autocast():
                scores, _ = self._discriminate(real, fake.detach())
                d_loss = discriminator_loss([r for r, _ in scores], [f for _, f in scores])
            self.precision.step(d_loss, self.opt_d)
            scalars["loss_disc"] = float(d_loss.detach())
        with self.precision.autocast():
            l_mel = mel_l1(fake, real)
            l_stft = multi_resolution_stft(fake, real)
            g_loss = float(v["lambda_mel"]) * l_mel + float(v["lambda_stft"]) * l_stft
            if adversarial:
                scores, maps = self._discriminate(real, fake)
                l_adv = generator_adversarial_loss([f for _, f in scores])
                l_fm = feature_matching_loss([r for r, _ in maps], [f for _, f in maps])
                g_loss = g_loss + l_adv + float(v["lambda_fm"]) * l_fm
                scalars.update(loss_adv=float(l_adv.detach()), loss_fm=float(l_fm.detach()))
        self.precision.step(g_loss, self.opt_g)
        scalars.update(loss=float(g_loss.detach()), loss_mel=float(l_mel.detach()), loss_stft=float(l_stft.detach()),
                       lr=float(self.opt_g.param_groups[0]["lr"]))
        return scalars

    def write_weights(self, step: int) -> Path:
        if isinstance(self.generator, HarmonicNoiseVocoder):
            return write_hn_vocoder(self.folder, step, self.generator.checkpoint(step))
        config = self.generator.config
        return write_vocoder(self.folder, step, to_checkpoint_state(self.generator), config.layout, config.to_dict())

    def load_weights(self, path: Path) -> None:
        self.generator.load_state_dict(_load(path, "resume").state_dict())

    def newest_weights(self) -> Path | None:
        return newest_vocoder(self.folder)

    def state(self) -> dict[str, Any]:
        if not self.adversarial:
            return {"opt_g": self.opt_g.state_dict()}
        return {"discriminators": self.discriminators.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """The optimisers' moments as saved, at the config's learning rate (the vocoder has no
        schedule: a run continued with another `--set vocoder_train.lr` uses it, e.g. the demo plan's
        tune-vocoder stage)."""
        self.opt_g.load_state_dict(state["opt_g"])
        optimisers = [self.opt_g]
        if self.adversarial:
            self.discriminators.load_state_dict(state["discriminators"])
            self.opt_d.load_state_dict(state["opt_d"])
            optimisers.append(self.opt_d)
        for opt in optimisers:
            for group in opt.param_groups:
                group["lr"] = float(self.cfg["vocoder_train"]["lr"])

    @torch.no_grad()
    def validate(self, step: int, logger: TrainLogger) -> dict[str, float]:
        """Resynthesise the validation items from their mel (their own, or the acoustic model's with
        --mels-from) and f0 (and seeded source noise, as the engine feeds): mel L1 of the result against
        the recording's mel, and how well its pitch (YIN) follows the f0 it was given — a vocoder that
        learned to ignore its harmonic source keeps a good mel L1 but buzzes at the frame rate whatever
        the f0."""
        from models.audio import mel_spectrogram
        from models.pitch import f0_agreement, make_pitch_extractor

        self.generator.eval()
        yin = make_pitch_extractor("yin")
        errors, corrs, cents = [], [], []
        for index, name in enumerate(read_list(self.work_dir, "val")[: int(self.cfg["train"]["val_items"])]):
            item = vocoder_item(self.work_dir, name)
            recorded = item["mel"]
            if self.mel_dir is not None:
                item["mel"] = generated_mel(self.mel_dir, name, recorded.shape)
            mel = torch.from_numpy(item["mel"])[None].to(self.dist.device)
            f0 = torch.from_numpy(item["f0"].astype(np.float32))[None].to(self.dist.device)
            wav = self.generator(mel, f0, None, seeded_source_noise(self.generator, mel.shape[1], index, mel.device))
            resynth = mel_spectrogram(wav)
            errors.append(float((resynth[0].cpu() - torch.from_numpy(recorded)).abs().mean()))
            audio = wav[0].float().cpu().numpy()
            rmse, corr = f0_agreement(yin.raw(audio)[0], item["f0"], item["uv"])
            corrs.append(corr)
            cents.append(rmse)
            logger.audio(step, f"audio/{name}", audio)
            logger.mel_image(step, f"mel/{name}", {"ground truth": recorded, **(
                {"vocoder input": item["mel"]} if self.mel_dir is not None else {}), "vocoder": resynth[0].cpu().numpy()})
        self.generator.train()
        if not errors:
            return {}
        return {"val/vocoder_mel_l1": float(np.mean(errors)), "val/vocoder_f0_corr": float(np.nanmean(corrs)),
                "val/vocoder_f0_rmse_cents": float(np.nanmean(cents))}
