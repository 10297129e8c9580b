"""The README's Python examples run as written (with the test run's shared weights cache)."""

import re
from pathlib import Path

import pytest

from prune_gym.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, capsys):
    namespace: dict = {"__name__": "__main__"}  # as run with ``python file.py``
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), namespace)
    if "one_thread_env" in namespace:  # the SubprocVecEnv example ran its guarded part
        assert namespace["rewards"].shape == (2,) and namespace["vec_env"].closed
    if "VectorEnvAdapter" in namespace:  # the batched vector env: 4 episodes, then PPO
        assert namespace["terminated"].all()
        assert (namespace["infos"]["final_info"]["params_ratio"] <= 0.3 + 1e-9).all()
        assert namespace["model"].num_timesteps == 64
    if "PPO" in namespace and "action" in namespace and "info" in namespace:  # the envs' example
        assert namespace["info"]["feasible"]  # density logits meet the budget
    if "masks" in namespace:  # the quickstart: 80% pruned, fine-tuning helps
        out = capsys.readouterr().out
        assert "sparsity 0.80" in out
        assert namespace["task"].evaluate(namespace["model"], "test")["accuracy"] > 0.9


def test_readme_has_the_install_and_test_commands():
    text = README.read_text()
    assert 'python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"' in text
    assert "\npytest\n" in text


def test_cli_list_prints_tasks_and_metrics(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "cifar10-resnet20" in out
    assert "synflow" in out and "grasp" in out
    assert "prune_gym/Panning-v0" in out
