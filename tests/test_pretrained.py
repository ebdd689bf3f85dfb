"""Optional pretrained checkpoints (course.pretrained): loading, falling back to training, saving,
and the shipped checkpoints of notebooks 07 and 08 (they load into the course's models and sample
recognisable digits)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from course import pretrained
from course.pretrained import load, load_or_train, loaded_from_checkpoint, save

SHIPPED = ["judge_digits8", "07_ring_eps", "07_digits_eps", "08_vae", "08_latent_flow", "08_pixel_flow"]


def _net(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 1))


def _trainer(model, calls):
    def train_fn():
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        return {"losses": [3.0, 2.0, 1.0], "seconds_per_step": 0.01}

    return train_fn


@pytest.fixture
def ckpt_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)  # no checkpoints/ in the working directory or its parent
    monkeypatch.delenv("COURSE_CHECKPOINTS", raising=False)
    monkeypatch.delenv("COURSE_SAVE_CHECKPOINTS", raising=False)
    monkeypatch.delenv("COURSE_FAST", raising=False)
    return tmp_path


def test_save_then_load_restores_weights_and_record(ckpt_dir):
    trained = _net()
    with torch.no_grad():
        trained[0].weight.fill_(0.5)
    save("toy", trained, {"losses": [1.0, 0.5], "steps": 2})
    fresh = _net()
    record, reason = load("toy", fresh)
    assert reason is None
    assert record == {"losses": [1.0, 0.5], "steps": 2}
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))


def test_load_or_train_loads_when_asked_and_skips_training(ckpt_dir, capsys):
    save("toy", _net(), {"losses": [9.0]})
    model, calls = _net(), []
    record = load_or_train("toy", model, _trainer(model, calls), pretrained=True)
    assert calls == [] and record == {"losses": [9.0]}
    assert loaded_from_checkpoint(model)
    assert "loaded pretrained 'toy'" in capsys.readouterr().out


def test_load_or_train_trains_by_default(ckpt_dir, monkeypatch):
    save("toy", _net(), {"losses": [9.0]})
    monkeypatch.delenv("COURSE_PRETRAINED", raising=False)
    model, calls = _net(), []
    record = load_or_train("toy", model, _trainer(model, calls))
    assert calls == [1] and record["losses"] == [3.0, 2.0, 1.0]
    assert not loaded_from_checkpoint(model)


def test_environment_variable_turns_loading_on(ckpt_dir, monkeypatch):
    save("toy", _net(), {"losses": [9.0]})
    monkeypatch.setenv("COURSE_PRETRAINED", "1")
    model, calls = _net(), []
    assert load_or_train("toy", model, _trainer(model, calls)) == {"losses": [9.0]} and calls == []


def test_missing_checkpoint_falls_back_to_training_and_names_the_script(ckpt_dir, capsys):
    model, calls = _net(), []
    load_or_train("absent", model, _trainer(model, calls), pretrained=True)
    out = capsys.readouterr().out
    assert calls == [1]
    assert "not using a pretrained 'absent'" in out and "scripts/train_checkpoints.py" in out


def test_mismatched_architecture_names_the_difference_and_trains(ckpt_dir, capsys):
    save("toy", _net(width=4))
    model, calls = _net(width=8), []
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_or_train("toy", model, lambda: calls.append(1), pretrained=True)
    out = capsys.readouterr().out
    assert calls == [1]
    assert "does not fit" in out and "'0.weight'" in out and "(4, 2)" in out and "(8, 2)" in out
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched by the failed load

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(2, 4), nn.Linear(4, 1)

    load_or_train("toy", Renamed(), lambda: calls.append(1), pretrained=True)
    assert "entries the checkpoint lacks (e.g. 'first.bias')" in capsys.readouterr().out


def test_checkpoints_are_found_beside_the_notebooks_or_where_the_environment_says(ckpt_dir, tmp_path, monkeypatch):
    """After a non-editable install the package's own folder has no checkpoints: a notebook running
    in <project>/notebooks finds <project>/checkpoints, and $COURSE_CHECKPOINTS wins over both."""
    project = tmp_path / "project"
    save("toy", _net(), {"where": "project"}, directory=project / "checkpoints")
    (project / "notebooks").mkdir()
    monkeypatch.chdir(project / "notebooks")
    assert load("toy", _net())[0] == {"where": "project"}
    save("toy", _net(), {"where": "env"}, directory=tmp_path / "elsewhere")
    monkeypatch.setenv("COURSE_CHECKPOINTS", str(tmp_path / "elsewhere"))
    assert load("toy", _net())[0] == {"where": "env"}


def test_unreadable_or_foreign_file_falls_back(ckpt_dir, capsys):
    (ckpt_dir / "broken.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": 1}, ckpt_dir / "foreign.pt")
    for name in ["broken", "foreign"]:
        calls = []
        load_or_train(name, _net(), lambda: calls.append(1), pretrained=True)
        assert calls == [1]
    out = capsys.readouterr().out
    assert "cannot read" in out and "not a course checkpoint" in out


def test_saving_is_asked_by_the_environment_and_never_in_fast_mode(ckpt_dir, tmp_path, monkeypatch):
    out_dir = tmp_path / "made"
    monkeypatch.setenv("COURSE_SAVE_CHECKPOINTS", str(out_dir))
    model, calls = _net(), []
    load_or_train("made", model, _trainer(model, calls))
    record, reason = load("made", _net(), directory=out_dir)
    assert reason is None and record["seconds_per_step"] == 0.01
    monkeypatch.setenv("COURSE_FAST", "1")
    load_or_train("fast", _net(), lambda: None)
    assert not (out_dir / "fast.pt").exists()


# ---------------------------------------------------------------------------------------------
# The shipped checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_exists_and_is_small(name):
    path = pretrained.CHECKPOINT_DIR / f"{name}.pt"
    assert path.is_file(), f"{path} missing: run python scripts/train_checkpoints.py"
    assert path.stat().st_size < 4 * 2**20


def _load_into(name, model):
    record, reason = load(name, model)
    assert reason is None, reason
    return model.eval(), record


def test_07_digits_checkpoint_samples_recognisable_digits_with_guidance():
    from course.ddim import ddim_timesteps
    from course.guidance import guided_sample
    from course.judge import get_judge
    from course.nets import TimeMLP
    from course.schedules import make_schedule

    model, record = _load_into("07_digits_eps", TimeMLP(dim=64, hidden=384, depth=3, emb_dim=64, n_classes=10))
    assert len(record) > 1000 and record[-1] < record[0]  # the loss history of the full-mode training
    _, alpha_bar = make_schedule(1000, "linear")
    y = torch.arange(200) % 10
    x_T = torch.randn(200, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = guided_sample(model, x_T, y, 1.0, ddim_timesteps(1000, 20), alpha_bar)
    accuracy = get_judge().accuracy(images.reshape(-1, 1, 8, 8).clamp(-1, 1), y)
    assert accuracy >= 0.9, accuracy


def test_08_checkpoints_sample_recognisable_digits_in_latent_space():
    from course.autoencoder import ConvVAE
    from course.digits import load_digits
    from course.guidance import cfg_combine
    from course.judge import get_judge
    from course.latent import decode_latents, encode_dataset, latent_scale
    from course.rectified_flow import sample_ode
    from course.unet import UNet

    vae, _ = _load_into("08_vae", ConvVAE(in_ch=1, latent_ch=2, hidden=32))
    flow, record = _load_into("08_latent_flow", UNet(2, 32, (1, 2), 64, n_classes=10))
    _, pixel_record = _load_into("08_pixel_flow", UNet(1, 32, (1, 2), 64, n_classes=10))
    assert record["steps"] == len(record["losses"]) and record["seconds_per_step"] > 0
    # the pixel model was given the latent model's training time
    latent_s, pixel_s = (r["steps"] * r["seconds_per_step"] for r in (record, pixel_record))
    assert 0.5 < pixel_s / latent_s < 1.5, (latent_s, pixel_s)
    x_train, _ = load_digits(16, split="train")
    scale = latent_scale(encode_dataset(vae, x_train))
    y = torch.arange(100) % 10
    x0 = torch.randn(100, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        velocity = lambda xt, t: cfg_combine(flow(xt, 1000 * t, y), flow(xt, 1000 * t, None), 1.0)  # noqa: E731
        images = decode_latents(vae, sample_ode(velocity, x0, 20), scale)
    accuracy = get_judge().accuracy(images, y)
    assert accuracy >= 0.9, accuracy


def _run_pretrained(nid, tmp_path, monkeypatch):
    from grader.workflows.execute import execute_notebook
    from grader.paths import ROOT

    metrics = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("COURSE_PRETRAINED", "1")
    monkeypatch.setenv("COURSE_METRICS_FILE", str(metrics))
    out = tmp_path / f"{nid}.ipynb"
    execute_notebook(ROOT / "solutions" / f"{nid}.ipynb", fast=True, timeout=600, output=out)
    text = out.read_text()
    return text, {m["name"]: m["value"] for m in map(json.loads, metrics.read_text().splitlines())}


def test_07_in_fast_mode_with_pretrained_models_loads_them_and_samples_well(tmp_path, monkeypatch):
    text, metrics = _run_pretrained("07_guidance", tmp_path, monkeypatch)
    assert "loaded pretrained '07_ring_eps'" in text and "loaded pretrained '07_digits_eps'" in text
    assert metrics["digits_accuracy_chosen_w"] >= 0.9, metrics


def test_08_in_fast_mode_with_pretrained_models_loads_them_and_samples_well(tmp_path, monkeypatch):
    text, metrics = _run_pretrained("08_latent_unet", tmp_path, monkeypatch)
    for name in ["08_vae", "08_latent_flow", "08_pixel_flow"]:
        assert f"loaded pretrained '{name}'" in text
    assert metrics["latent_cfg_judge_accuracy"] >= 0.9, metrics
