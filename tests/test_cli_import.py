"""The CLI with a user's own module (``--import``) and suites shipped as package data."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from prune_gym.bench import available_suites, load_suite
from prune_gym.cli import main

USER_MODULE = Path(__file__).with_name("data") / "my_lab.py"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A working directory holding the user's ``my_lab.py`` (a task, a metric, an env id)."""
    shutil.copy(USER_MODULE, tmp_path / "my_lab.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delitem(sys.modules, "my_lab", raising=False)
    yield tmp_path
    sys.modules.pop("my_lab", None)


def test_list_shows_what_an_imported_module_registers(lab, capsys):
    assert main(["list", "--import", "my_lab"]) == 0
    out = capsys.readouterr().out
    tasks = next(line for line in out.splitlines() if line.startswith("tasks:"))
    metrics = next(line for line in out.splitlines() if line.startswith("metrics:"))
    assert "sensor-cnn" in tasks and "squared" in metrics
    envs = next(line for line in out.splitlines() if line.startswith("envs:"))
    assert "my_lab/SensorGlobal-v0" in envs and "prune_gym/GlobalRatio-v0" in envs


def test_list_names_fixed_policies_training_methods_and_suites(capsys):
    assert main(["list"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert {"global-magnitude", "random-weights", "panning-handset"} <= {
        name.strip() for name in lines["policies"].split("(")[0].split(",")
    }
    assert {"gmp", "granet", "flipout", "swd", "imp"} <= {
        name.strip() for name in lines["methods"].split("(")[0].split(",")
    }
    assert "smoke" in lines["suites"]


def test_bench_runs_a_user_task_from_an_imported_module(lab):
    out = lab / "bench"
    args = ["bench", "--import", "my_lab", "--task", "sensor-cnn", "--budgets", "params=0.5"]
    args += ["--methods", "global-magnitude", "--seeds", "1", "--finetune-steps", "0"]
    assert main([*args, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["task"], r["method"], r["status"]) for r in records] == [
        ("sensor-cnn", "global-magnitude", "ok")
    ]
    assert records[0]["params_ratio"] <= 0.5


def test_train_accepts_a_user_registered_id_for_a_prune_gym_env(lab):
    out = lab / "train"
    args = ["train", "--import", "my_lab.py", "--env", "my_lab/SensorGlobal-v0"]
    args += ["--task", "sensor-cnn", "--budget", "params=0.5", "--timesteps", "32"]
    assert main([*args, "--finetune-steps", "0", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["env"] == "my_lab/SensorGlobal-v0"
    # the id's family (GlobalRatio-v0) supplies the defaults: density logits, accuracy reward
    assert run["env_kwargs"]["action"] == "logits" and run["env_kwargs"]["reward"] == "accuracy"
    learned = json.loads((out / "results.json").read_text())[0]
    assert learned["params_ratio"] <= 0.5 and learned["feasible"] == 1.0


def test_unknown_module_is_one_line_and_exit_2(lab, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--import", "no_such_lab"])
    assert exit_info.value.code == 2
    assert "--import 'no_such_lab': no such module" in capsys.readouterr().err


def test_a_missing_dependency_inside_the_module_is_not_hidden(lab):
    (lab / "broken_lab.py").write_text("import no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        main(["list", "--import", "broken_lab"])
    sys.modules.pop("broken_lab", None)


def test_train_refuses_an_env_that_is_not_a_prune_gym_env(lab, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", "CartPole-v1", "--timesteps", "8", "--out", str(lab / "x")])
    assert exit_info.value.code == 2
    assert "'CartPole-v1'" in capsys.readouterr().err


def test_suites_load_by_name_and_by_path(tmp_path):
    assert {"smoke", "digits", "mnist1d", "teacher"} <= set(available_suites())
    own = tmp_path / "mine.yaml"
    own.write_text("tasks: [digits-mlp]\nbudgets: [params=0.3]\nmethods: [erk]\nseeds: 1\n")
    spec = load_suite(str(own))
    assert spec.tasks == ("digits-mlp",) and spec.methods == ("erk",) and spec.seeds == 1
    with pytest.raises(FileNotFoundError, match="Did you mean 'smoke'"):
        load_suite("smok")
    with pytest.raises(FileNotFoundError, match="no benchmark suite file"):
        load_suite(str(tmp_path / "absent.yaml"))


def test_the_wheel_ships_every_built_in_suite(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", "runs", ".git", "build"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, str(source), "-w", str(tmp_path)], check=True)
    (wheel,) = tmp_path.glob("prune_gym-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"prune_gym/bench/suites/{name}.yaml" for name in available_suites()} <= shipped
