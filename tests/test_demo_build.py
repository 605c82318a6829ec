"""`python -m models.demo build`: stages in order, done ones skipped, a failed one resumed, one plan per folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from models.demo import build as demo_build
from models.demo.__main__ import main


def _runner(calls: list[list[str]], fail: str | None = None):
    def run(cmd: list[str], log: Path) -> int:
        calls.append(cmd)
        return 3 if fail and fail in cmd else 0
    return run


def test_stages_run_in_order_and_a_second_build_skips_them(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    ran = demo_build.build(tmp_path, tmp_path / "pack", dict(demo_build.PLAN), runner=_runner(calls), log=lambda m: None)
    assert ran == list(demo_build.STAGES)
    assert [c[3] for c in calls[:3]] == ["data", "ppg", "targets"]
    assert calls[3][2:4] == ["models.train", "prepare"] and "yin" in calls[3]
    assert "--no-mbrola" in calls[0] and "--no-mbrola" in calls[1]
    assert all(str(tmp_path) in " ".join(c) for c in calls[:7])        # WORK spelled out
    assert calls[-1][1:] == ["-m", "models.demo", "export", str(tmp_path), "--pack", str(tmp_path / "pack")]
    assert demo_build.build(tmp_path, tmp_path / "pack", dict(demo_build.PLAN), runner=_runner(calls),
                            log=lambda m: None) == []
    assert (tmp_path / "build" / "teacher.done").read_text().startswith("wall ")


def test_a_failed_stage_stops_the_build_and_runs_again_next_time(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    with pytest.raises(demo_build.BuildError, match="stage teacher stopped .exit code 3.*run build again"):
        demo_build.build(tmp_path, tmp_path / "pack", dict(demo_build.PLAN), runner=_runner(calls, fail="teacher"),
                         log=lambda m: None)
    assert not (tmp_path / "build" / "teacher.done").exists() and (tmp_path / "build" / "vocoder.done").exists()
    calls.clear()
    ran = demo_build.build(tmp_path, tmp_path / "pack", dict(demo_build.PLAN), runner=_runner(calls), log=lambda m: None)
    assert ran == ["teacher", "distill", "tune-vocoder", "export"]


def test_another_plan_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    demo_build.build(tmp_path, tmp_path / "pack", dict(demo_build.PLAN), until="data", runner=_runner([]),
                     log=lambda m: None)
    other = demo_build.plan_with(["teacher_steps=10"])
    with pytest.raises(demo_build.BuildError, match="teacher_steps differ"):
        demo_build.build(tmp_path, tmp_path / "pack", other, runner=_runner([]), log=lambda m: None)


def test_a_folder_started_before_a_plan_name_existed_keeps_its_plan(tmp_path: Path) -> None:
    """plan.json of an earlier build lacks the names added since (the vocoder type): it was built with
    the values of before (NSF-HiFiGAN), whatever today's defaults are."""
    import json

    # (those builds distilled a student: 1,200 steps)
    old = {k: v for k, v in demo_build.PLAN.items() if k not in demo_build.ADDED_TO_PLAN} | {"distill_steps": 1200}
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "plan.json").write_text(json.dumps(old))
    then = demo_build.plan_with([f"{k}={json.dumps(v)}" for k, v in demo_build.ADDED_TO_PLAN.items()]
                                + ["distill_steps=1200"])
    assert then["vocoder_type"] == "nsf-hifigan" and then["teacher_prior_steps"] == 0
    demo_build.check_plan(tmp_path, then)
    differ = ", ".join(sorted(k for k, v in demo_build.ADDED_TO_PLAN.items() if demo_build.PLAN[k] != v))
    assert "vocoder_type" in differ and "teacher_prior_steps" in differ
    with pytest.raises(demo_build.BuildError, match=f"{differ} differ"):
        demo_build.check_plan(tmp_path, dict(demo_build.PLAN))


def test_the_plan_trains_the_harmonic_plus_noise_vocoder_and_can_choose_nsf_hifigan(tmp_path: Path, capsys) -> None:
    assert main(["build", str(tmp_path / "a"), "--dry-run", "--only", "prepare"]) == 0
    out = capsys.readouterr().out
    assert "vocoder_model.type=hn" in out and "vocoder_train.lr=0.001" in out
    assert main(["build", str(tmp_path / "b"), "--dry-run", "--only", "prepare", "--set", "vocoder_type=nsf-hifigan",
                 "--set", "vocoder_lr=2e-4"]) == 0
    out = capsys.readouterr().out
    assert "vocoder_model.type=nsf-hifigan" in out and "vocoder_train.lr=0.0002" in out


def test_plan_changes_are_checked() -> None:
    assert demo_build.plan_with(["ppg_steps=12", "data_minutes=5"])["data_minutes"] == 5
    # a longer teacher alone would end in EDM steps that the shipped one-step network never had
    for bad in ("ppg_steps=many", "nonsense=1", "ppg_steps", "teacher_steps=3000"):
        with pytest.raises(demo_build.BuildError):
            demo_build.plan_with([bad])


def test_cli_dry_run_lists_the_commands(tmp_path: Path, capsys) -> None:
    assert main(["build", str(tmp_path), "--dry-run", "--until", "prepare"]) == 0
    out = capsys.readouterr().out
    assert "data:" in out and "prepare:" in out and "teacher" not in out
    # the training stages checkpoint often enough that a stopped build loses minutes, not the stage
    assert f"train.interval_force_save={demo_build.PLAN['checkpoint_every']}" in out and demo_build.PLAN["checkpoint_every"] < demo_build.PLAN["teacher_steps"]
    # the acoustic network: one-step regression for all its steps, shipped as the student as it is
    assert demo_build.PLAN["teacher_prior_steps"] == demo_build.PLAN["teacher_steps"]
    assert f"train.prior_steps={demo_build.PLAN['teacher_prior_steps']}" in out and "train.lr=0.001" in out
    assert main(["build", str(tmp_path), "--dry-run", "--only", "distill"]) == 0
    assert "models.train distill" in (distill := capsys.readouterr().out) and "--max-steps 0 " in distill
    assert not (tmp_path / "build" / "plan.json").exists()
    assert main(["build", str(tmp_path), "--set", "ppg_steps=lots", "--dry-run"]) == 2
    assert main(["build", str(tmp_path), "--dry-run", "--only", "tune-vocoder"]) == 0
    tune = capsys.readouterr().out      # the vocoder run continued, on the student's mels
    total = demo_build.PLAN["vocoder_steps"] + demo_build.PLAN["vocoder_tune_steps"]
    assert f"models.train vocoder {tmp_path}/train --max-steps {total}" in tune
    assert f"--mels-from {tmp_path}/train/logs/como/model_<step>.pt" in tune
    assert f"--set vocoder_train.lr={demo_build.PLAN['vocoder_tune_lr']}" in tune
    assert main(["build", str(tmp_path), "--dry-run", "--only", "export", "--pack", "out/demo"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-m models.demo export {tmp_path} --pack out/demo")
