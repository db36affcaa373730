"""Training under torchrun on the CPU (Gloo): two processes give the weights of one process with the same
global batch, only rank 0 writes the checkpoint, a run resumes with another number of processes, and
train_cli trains the model of a benchmark cell where the benchmark finds it."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from course_lib import distributed
from course_lib.diffusion import Diffusion
from course_lib.nets import UNet, UNetConfig
from course_lib.train import TrainConfig, train

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None or not torch.distributed.is_available(),
                                reason="torchrun / torch.distributed not available")

# the worker and the test build the same tiny model and images (no dropout: the one per-process draw)
SETUP = """
import torch
from course_lib.diffusion import Diffusion
from course_lib.nets import UNet, UNetConfig
from course_lib.train import TrainConfig
torch.set_num_threads(1)
def tiny():
    torch.manual_seed(0)
    return UNet(UNetConfig(1, 8, 8, (1, 2), 1, (4,), 0.0, 2, 4))
g = torch.Generator().manual_seed(0)
IMAGES = (torch.rand(16, 1, 8, 8, generator=g) > 0.5).float() * 2 - 1
def config(**kw):
    return TrainConfig(**{**dict(steps=6, batch_size=4, lr=2e-3, warmup=3, ema_decay=0.9, log_every=2), **kw})
"""
namespace: dict = {}
exec(SETUP, namespace)
tiny, IMAGES, config = namespace["tiny"], namespace["IMAGES"], namespace["config"]


def torchrun(tmp_path, body: str, n: int = 2) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SETUP + textwrap.dedent(body))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(["torchrun", "--standalone", f"--nproc_per_node={n}", str(script)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5)   # Adam divides by tiny gradients: float order shows


def test_two_processes_train_the_weights_of_one_and_only_rank_0_writes(tmp_path):
    torchrun(tmp_path, """
        import json
        import course_lib.train as tr
        from course_lib import distributed
        distributed.init_from_env("cpu")
        real_save = tr.save_checkpoint
        def save(path, *a, **kw):
            with open(f"writes-{distributed.rank()}.txt", "a") as fh:
                fh.write(str(a[3]) + "\\n")              # the step
            real_save(path, *a, **kw)
        tr.save_checkpoint = save
        model = tiny()
        result = tr.train(model, Diffusion(1000), IMAGES, config(checkpoint_path="ckpt.pt", checkpoint_every=3),
                          device="cpu", progress=False)
        torch.save({"model": model.state_dict(), "ema": result.ema.state_dict()}, f"rank{distributed.rank()}.pt")
        json.dump(result.losses, open(f"losses-{distributed.rank()}.json", "w"))
    """)
    model = tiny()
    one = train(model, Diffusion(1000), IMAGES, config(), device="cpu", progress=False)
    for r in (0, 1):                                     # every process ends with the one-process weights
        two = torch.load(tmp_path / f"rank{r}.pt")
        close(two["model"], model.state_dict())
        close(two["ema"], one.ema.state_dict())
        assert json.loads((tmp_path / f"losses-{r}.json").read_text()) == pytest.approx(one.losses, rel=1e-5)
    assert (tmp_path / "writes-0.txt").read_text().split() == ["3", "6"]
    assert not (tmp_path / "writes-1.txt").exists() and (tmp_path / "ckpt.pt").exists()


def test_a_run_stopped_in_one_process_resumes_in_two(tmp_path):
    train(tiny(), Diffusion(1000), IMAGES, config(steps=3, checkpoint_path=str(tmp_path / "ckpt.pt")),
          device="cpu", progress=False)                  # stopped at step 3 of 6
    torchrun(tmp_path, """
        from course_lib import distributed
        from course_lib.train import train
        distributed.init_from_env("cpu")
        model = tiny()
        result = train(model, Diffusion(1000), IMAGES, config(checkpoint_path="ckpt.pt"), device="cpu",
                       progress=False, resume="ckpt.pt")
        if distributed.is_main():
            torch.save({"model": model.state_dict(), "ema": result.ema.state_dict(), "steps": result.steps},
                       "resumed.pt")
    """)
    model = tiny()
    whole = train(model, Diffusion(1000), IMAGES, config(), device="cpu", progress=False)
    resumed = torch.load(tmp_path / "resumed.pt")
    assert resumed["steps"] == 6
    close(resumed["model"], model.state_dict())
    close(resumed["ema"], whole.ema.state_dict())


def test_train_cli_under_torchrun_trains_the_model_the_benchmark_finds(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    env = {**os.environ, "COURSE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("COURSE_CHECKPOINTS", None)
    args = ["--task", "digits", "--category", "3", "--profile", "smoke", "--steps", "4"]
    run = subprocess.run(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "course_lib.programs.train_cli", *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 process(es), global batch 16" in run.stdout and run.stdout.count("trained ") == 1   # rank 0 speaks
    assert len(list((cache / "checkpoints").glob("*.pt"))) == 1
    monkeypatch.setenv("COURSE_CACHE", str(cache))
    monkeypatch.delenv("COURSE_CHECKPOINTS", raising=False)
    from course_lib.programs import train_cli
    info = train_cli.main(args)                          # one process now: the same cell's model is found
    assert info["loaded"] and info["steps"] == 4


def test_one_process_without_torchrun_is_not_distributed():
    assert distributed.init_from_env("cpu") == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(6) == slice(0, 6)
    values = torch.tensor([1.0, 2.0])
    assert distributed.mean_over_processes(values) is values


def test_torchrun_environment_without_its_variables_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set.*torchrun"):
        distributed.init_from_env("cpu")


@pytest.mark.parametrize("argv, env, words", [
    (["--task", "digits", "--steps", "-5"], {}, ["train_steps", "-5"]),
    (["--task", "digits", "--batch-size", "0"], {}, ["batch_size", "0"]),
    (["--task", "digits"], {"WORLD_SIZE": "abc"}, ["WORLD_SIZE='abc'", "unset it"]),
    (["--task", "digits"], {"COURSE_DEVICE": "tpu"}, ["COURSE_DEVICE 'tpu'", "use cpu"]),
    (["--task", "mnist-c"], {"COURSE_DATA": "/nonexistent-course-data"}, ["MNIST-C not found", "download"]),
])
def test_train_cli_answers_bad_settings_in_one_line_before_training(argv, env, words, monkeypatch, capsys):
    from course_lib.programs import train_cli
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(train_cli, "fit_denoiser", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(argv + ["--profile", "smoke"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and all(w in last for w in words), last
