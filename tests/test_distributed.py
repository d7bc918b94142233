"""Data-parallel training under torchrun (CPU, gloo): two processes train exactly as one process
that takes both processes' batches as micro-batches of each step."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import yaml
from conftest import REPO, tcli, tiny_config_dict
from safetensors.torch import load_file


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_under_torchrun_train_as_one_process_with_two_micro_batches(corpus, tmp_path):
    config = tmp_path / "tiny.yaml"
    # 12 steps of 2 batches of 500 tokens stay in the first epoch: at an epoch's end the two
    # processes leave out its last batch if the epoch has an odd number of them.
    settings = dict(max_steps=12, eval_every=6, log_every=3, batch_tokens=500)
    raw = tiny_config_dict(corpus, **settings)
    raw["model"]["dropout"] = 0.1  # each process draws its own masks: those of its batches
    config.write_text(yaml.safe_dump(raw))
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default per process
    two = tmp_path / "two"
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "transformer_cli", "train", str(config), "--out", str(two), "--device", "cpu"],
        capture_output=True, text=True, cwd=REPO, env=one_thread, timeout=300,
    )  # fmt: skip
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    assert torchrun.stderr.count("stopped at step 12 (max_steps)") == 1  # rank 0 reports alone
    one = tmp_path / "one"
    single = subprocess.run(
        [sys.executable, "-m", "transformer_cli", "train", str(config), "--out", str(one),
         "--device", "cpu", "--set", "train.accum_steps=2"],
        capture_output=True, text=True, cwd=REPO, env=one_thread, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr

    # One set of files, each record written once, by rank 0.
    checkpoints = sorted(p.name for p in (two / "checkpoints").iterdir())
    assert checkpoints == sorted(p.name for p in (one / "checkpoints").iterdir())
    records = _records(two)
    assert max(Counter((r["kind"], r["step"]) for r in records).values()) == 1
    # The same gradient every step: the same losses and, bit for bit here, the same weights.
    losses = [(r["kind"], r["step"], r["loss"]) for r in records]
    assert {r["epoch"] for r in records} == {0} and len(losses) == 6
    assert losses == [(r["kind"], r["step"], r["loss"]) for r in _records(one)]
    two_weights = load_file(two / "checkpoints" / "step-00000012.safetensors")
    one_weights = load_file(one / "checkpoints" / "step-00000012.safetensors")
    assert not any(name.startswith("module.") for name in two_weights)
    for name, tensor in one_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, atol=1e-5, rtol=0)

    translated = tcli("translate", two, "--device", "cpu", stdin="A dog runs.\nTwo men.\n")
    assert len(translated.stdout.splitlines()) == 2

    # Resuming with another number of processes: the data position is counted over all of them.
    # Two processes resumed as one taking two micro-batches a step, and the one-process run
    # resumed as two, go on exactly as the two processes do.
    shutil.copytree(two, tmp_path / "two_then_one")
    shutil.copytree(one, tmp_path / "one_then_two")
    for run_dir, how in [
        (two, ["--nproc", "2"]),  # tcli's own launcher this time
        (tmp_path / "two_then_one", ["--set", "train.accum_steps=2"]),
        (tmp_path / "one_then_two", ["--nproc", "2", "--set", "train.accum_steps=1"]),
    ]:
        resumed = subprocess.run(
            [sys.executable, "-m", "transformer_cli", "train", "--resume", str(run_dir), *how,
             "--set", "train.max_steps=14", "--device", "cpu"],
            capture_output=True, text=True, cwd=REPO, env=one_thread, timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert resumed.stderr.count("stopped at step 14 (max_steps)") == 1
    expected = load_file(two / "checkpoints" / "step-00000014.safetensors")
    for run_dir in ("two_then_one", "one_then_two"):
        weights = load_file(tmp_path / run_dir / "checkpoints" / "step-00000014.safetensors")
        for name, tensor in expected.items():
            torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=0)


def _endless_two_process_run(corpus, tmp_path) -> tuple[subprocess.Popen, Path]:
    """`tcli train --nproc 2` on a run with no end in sight, once both processes are training."""
    config = tmp_path / "long.yaml"
    settings = dict(max_steps=100_000, eval_every=100_000, log_every=2, batch_tokens=500)
    config.write_text(yaml.safe_dump(tiny_config_dict(corpus, **settings)))
    run_dir = tmp_path / "run"
    training = subprocess.Popen(
        [sys.executable, "-m", "transformer_cli", "train", str(config), "--out", str(run_dir),
         "--nproc", "2", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)  # training has started on both processes
    return training, run_dir


def test_sigterm_stops_every_process_after_the_same_step_with_one_checkpoint(corpus, tmp_path):
    training, run_dir = _endless_two_process_run(corpus, tmp_path)
    training.send_signal(signal.SIGTERM)
    _, stderr = training.communicate(timeout=120)
    assert training.returncode == 143, stderr[-3000:]
    stopped = re.findall(r"stopped by SIGTERM after step (\d+); checkpoint saved", stderr)
    assert len(stopped) == 1  # said once, by rank 0
    step = int(stopped[0])
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["latest.json", f"step-{step:08d}.safetensors", f"step-{step:08d}.state.pt"]
    assert f"--resume {run_dir} --nproc 2" in stderr
    resumed = tcli("train", "--resume", run_dir, "--nproc", "2", "--device", "cpu",
                   "--set", f"train.max_steps={step + 2}")  # fmt: skip
    assert f"stopped at step {step + 2} (max_steps)" in resumed.stderr


def test_a_process_killed_mid_run_stops_the_others_with_one_line_errors(corpus, tmp_path):
    training, _ = _endless_two_process_run(corpus, tmp_path)
    workers = subprocess.run(
        ["pgrep", "-P", str(training.pid)], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, stderr = training.communicate(timeout=120)  # no waiting for the collective timeout
    assert training.returncode == 128 + signal.SIGKILL, stderr[-3000:]
    killed = re.findall(r"tcli: error: training process (\d) was killed by SIGKILL", stderr)
    told = re.findall(
        r"tcli: error: training process (\d) stops: another process of the run died", stderr
    )
    assert len(killed) == len(told) == 1 and {*killed, *told} == {"0", "1"}
    assert "Traceback" not in stderr


def test_two_machines_on_loopback_with_their_own_run_directories(corpus, tmp_path):
    """Two torchrun "nodes" that share no run directory: the second gets the tokenizer (and, on
    resume, the training state) through torch.distributed and encodes its own copy of the
    corpus; only the first holds checkpoints. Stopped and resumed, they end where two processes
    of one machine training straight through end."""
    config = tmp_path / "tiny.yaml"
    settings = dict(max_steps=4, eval_every=4, log_every=2, batch_tokens=500)
    config.write_text(yaml.safe_dump(tiny_config_dict(corpus, **settings)))
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}

    def node(rank: int, port: int, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
             str(rank), "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
             f"127.0.0.1:{port}", "--rdzv_id", "tcli-test", "-m", "transformer_cli", "train",
             *args, "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=one_thread,
        )  # fmt: skip

    def both_nodes(*args_of: list[str]) -> list[str]:
        with socket.socket() as probe:  # a free port for the rendezvous
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        nodes = [node(rank, port, *args) for rank, args in enumerate(args_of)]
        outputs = [node.communicate(timeout=240) for node in nodes]
        for process, (_, stderr) in zip(nodes, outputs, strict=True):
            assert process.returncode == 0, stderr[-3000:]
        assert "done:" not in outputs[1][1]  # rank 0 reports alone
        return outputs[0][1]

    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    gloo = ["--set", "train.dist_backend=gloo"]
    started = both_nodes(*([str(config), "--out", str(out), *gloo] for out in (node0, node1)))
    assert "stopped at step 4 (max_steps)" in started
    assert (node0 / "tokenizer.model").read_bytes() == (node1 / "tokenizer.model").read_bytes()
    assert (node1 / "cache").is_dir() and not (node1 / "checkpoints").exists()  # rank 0 writes
    shutil.rmtree(node1)  # a machine with no copy of the run at all can join the resumed run
    resumed = both_nodes(
        *(["--resume", str(out), "--set", "train.max_steps=6"] for out in (node0, node1))
    )
    assert "stopped at step 6 (max_steps)" in resumed and not (node1 / "checkpoints").exists()

    straight = tmp_path / "straight"
    tcli("train", config, "--out", straight, "--nproc", "2", "--device", "cpu",
         "--set", "train.max_steps=6")  # fmt: skip
    expected = load_file(straight / "checkpoints" / "step-00000006.safetensors")
    weights = load_file(node0 / "checkpoints" / "step-00000006.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=0)
