"""A newcomer's first hour: the CLI's flows as the README gives them, one meaning per flag,
help that shows every default, and runs that say when they are unfinished."""

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agents.run_config import AGENTS, RunConfig
from prune_gym import __version__
from prune_gym.algorithms import INCOMPLETE_MARKER
from prune_gym.bench import BenchSpec, RecordStore, load_suite
from prune_gym.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN = ["train", "--task", "digits-mlp", "--budget", "params=0.6", "--timesteps", "64"]
TRAIN += ["--searches", "none", "--episodes", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished train run assessed on 2 episodes (seeds 0 and 1)."""
    out = tmp_path_factory.mktemp("run")
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def readme_commands() -> list[str]:
    """Every ``prune-gym`` command in the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.startswith("prune-gym")]


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_as_written(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.verb in ("list", "train", "eval", "bench")


def test_bench_policy_alone_benches_the_run_as_train_compared_it(run, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--policy", str(run / "model.zip"), "--out", str(out)]) == 0
    records = RecordStore(out).read()
    assert {r["budget"] for r in records} == {"params=0.6"}  # the trained budget
    assert {r["seed"] for r in records} == {0, 1}  # the run's two episodes
    assert {r["finetune_steps"] for r in records} == {0}  # post-training, as trained
    learned = [r for r in records if r["kind"] == "learned"]
    assert len({r["method"] for r in records if r["kind"] != "learned"}) > 5  # every fixed
    rows = json.loads((run / "results.json").read_text())
    trained = next(row for row in rows if row["kind"] == "learned")
    mean = sum(r["test_accuracy"] for r in learned) / len(learned)
    assert mean == pytest.approx(trained["test_accuracy"], abs=1e-12)  # the same numbers


def test_bench_warns_when_a_policy_acts_outside_its_training(run, tmp_path, capsys):
    argv = ["bench", "--task", "digits-mlp", "--budgets", "params=0.3", "--methods", "uniform"]
    argv += ["--seed", "0", "--finetune-steps", "0", "--policy", str(run / "model.zip")]
    assert main([*argv, "--algo", "ppo", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "--algo ppo is ignored" in err and "loads it as ppo-lag" in err
    assert "was trained at params <= 0.6; it is benched at ['params=0.3']" in err
    assert main([*argv, "--budgets", "params=0.6", "--out", str(tmp_path / "c")]) == 0
    assert "warning" not in capsys.readouterr().err  # at its own budget: nothing to say


def test_eval_reproduces_train_with_the_runs_own_episodes(run, capsys):
    capsys.readouterr()
    assert main(["eval", "--model", str(run / "model.zip")]) == 0
    table = capsys.readouterr().out
    rows = json.loads((run / "results.json").read_text())
    trained = next(row for row in rows if row["kind"] == "learned")
    assert trained["episodes"] == 2
    learned_line = next(line for line in table.splitlines() if "learned (ppo-lag)" in line)
    assert f"{trained['test_accuracy']:.3f}" in learned_line


def test_an_interrupted_train_marks_its_folder_and_eval_and_bench_refuse_it(
    run, tmp_path, monkeypatch, capsys
):
    from agents.ppo_lagrangian import PPOLagrangian

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(PPOLagrangian, "learn", interrupted)
    out = tmp_path / "cut"
    assert main([*TRAIN, "--out", str(out)]) == 130
    assert "marked by an INCOMPLETE file" in capsys.readouterr().err
    assert (out / "run.json").exists() and not (out / "model.zip").exists()
    assert "not finished" in (out / INCOMPLETE_MARKER).read_text()
    (out / "model.zip").write_bytes((run / "model.zip").read_bytes())  # a stale model too
    capsys.readouterr()
    model = str(out / "model.zip")
    for argv in (["eval", "--model", model], ["bench", "--policy", model, "--out", str(out)]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "holds an unfinished prune-gym train run" in capsys.readouterr().err
    assert not (run / INCOMPLETE_MARKER).exists()  # a finished run has no marker


def test_seeds_mean_the_same_in_every_verb(tmp_path):
    parser = build_parser()
    for verb in (["train"], ["bench", "--suite", "smoke"]):
        assert parser.parse_args([*verb, "--seeds", "3"]).seeds == 3  # a count
        assert parser.parse_args([*verb, "--seeds", "0,2,5"]).seeds == (0, 2, 5)
        assert parser.parse_args([*verb, "--seed", "4"]).seed == 4
    spec = BenchSpec(tasks=("digits-mlp",), budgets=("params=0.5",), seeds=(2, 0))
    assert spec.seed_values == (2, 0)
    assert BenchSpec(tasks=("t",), budgets=("params=0.5",), seeds=2, first_seed=3).seed_values == (
        3,
        4,
    )
    with pytest.raises(ValueError, match="distinct seeds"):
        BenchSpec(tasks=("t",), budgets=("params=0.5",), seeds=(1, 1))
    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks: [digits-mlp]\nbudgets: [params=0.5]\nseeds: [1, 3]\n")
    assert load_suite(str(suite)).seed_values == (1, 3)


def test_bench_runs_exactly_the_seeds_named(tmp_path):
    argv = ["bench", "--task", "digits-mlp", "--budgets", "params=0.5", "--methods", "uniform"]
    argv += ["--finetune-steps", "0"]
    assert main([*argv, "--seeds", "0,2", "--out", str(tmp_path / "a")]) == 0
    assert sorted(r["seed"] for r in RecordStore(tmp_path / "a").read()) == [0, 2]
    assert main([*argv, "--seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert [r["seed"] for r in RecordStore(tmp_path / "b").read()] == [1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--seeds", "0"], "give a number of seeds >= 1"),
        (["train", "--seeds", "1,-1"], "distinct seeds >= 0"),
        (["bench", "--suite", "smoke", "--seed", "0", "--seeds", "2"], "not both"),
        (["train", "--env-kwargs", '{"metrics": "snip"}'], "metrics must be a list"),  # TypeError
        (["bench", "--policy", "nowhere/model.zip"], "no model at nowhere/model.zip"),
        (["bench", "--suite", "smoke", "--device", "cuda:99"], "device='cuda:99'"),  # not here
    ],
)
def test_every_usage_error_exits_2_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1 and "Traceback" not in err


def test_out_has_a_default_in_every_verb_that_writes():
    parser = build_parser()
    assert parser.parse_args(["train"]).out == "runs/train"
    assert parser.parse_args(["bench", "--suite", "smoke"]).out == "runs/bench"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    return next(
        action.choices
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )


@pytest.mark.parametrize("verb", ["list", "train", "eval", "bench"])
def test_help_gives_every_options_default_and_meaning(verb):
    parser = subcommands()[verb]
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, action.option_strings
        shown = parser._get_formatter()._get_help_string(action)
        assert action.required or "default" in shown, (action.option_strings, shown)
    assert "Exit status" in text


def test_train_help_states_the_run_configs_own_defaults():
    text = " ".join(subcommands()["train"].format_help().split())
    config = RunConfig()
    for shown in (
        f"(default: {config.task})",
        f"(default: {config.env})",
        f"(default: {config.agent})",
        f"(default: {config.timesteps})",
        f"(default: {config.eval_episodes})",
        "(default: params=0.2:0.5)",
        f"(default: {config.seed})",
    ):
        assert shown in text, shown
    assert config.budget == {"params": [0.2, 0.5]}
    train = subcommands()["train"]
    agent = next(a for a in train._actions if a.dest == "agent")
    assert tuple(agent.choices) == tuple(AGENTS)


def test_version_and_help_answer_without_importing_torch():
    code = (
        "import sys\n"
        "from prune_gym.cli import main\n"
        "for argv in (['--version'], ['--help'], ['bench', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, stop.code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0] == f"prune-gym {__version__}"
    assert done.stdout.splitlines()[-1] == "False"


def test_readme_says_how_to_install_the_cpu_only_torch_first():
    text = README.read_text()
    install = text[text.index("## Install and test") : text.index("## The main command")]
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in (
        install
    )
    assert 'pip install -e ".[dev]"' in install  # the two commands stay as they are


def test_output_piped_into_head_ends_quietly():
    listing = subprocess.Popen(
        [sys.executable, "-m", "prune_gym.cli", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    listing.stdout.close()  # the reader goes before the listing is written (`| head -0`)
    err = listing.stderr.read()
    assert listing.wait() in (0, 141) and "error" not in err, err
