"""Bad command lines: one line naming the problem, exit code 2, nothing written."""

import re

import pytest

from prune_gym.cli import main

BENCH = ["bench", "--budgets", "params=0.5", "--methods", "uniform", "--seeds", "1"]


def usage_error(argv: list[str], capsys) -> str:
    """The stderr of ``prune-gym argv``, which must exit 2 with one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--methods", "uniform"], "give --suite, or --task and --budgets"),
        (["bench", "--task", "digits-mlp"], "give --suite, or --budgets"),
        (["train", "--seeds", "0,,1"], r"'0,,1' has an empty item"),
        (["bench", "--task", "digits-mlp", "--finetune-steps", "200,"], "has an empty item"),
        (["bench", "--task", "digits-mlp", "--budgets", "params=0.1,,flops=0.5"], "empty budget"),
        (
            ["train", "--env-kwargs", "{bad json"],
            r"argument --env-kwargs: '\{bad json' is not JSON",
        ),
        (["train", "--env-kwargs", "[1, 2]"], "argument --env-kwargs: .* not a JSON object"),
        (
            ["train", "--env-kwargs", '{"rewrd": "accuracy"}'],
            r"does not take the setting\(s\) \['rewrd'\].* Did you mean 'reward'\?",
        ),
        (
            [*BENCH, "--task", "digits-mpl"],
            r"unknown task 'digits-mpl'.* Did you mean 'digits-mlp'\?",
        ),
        (["train", "--task", "digits-mpl"], r"Did you mean 'digits-mlp'\?"),
        (
            [*BENCH, "--task", "digits-mlp", "--methods", "unifrom"],
            r"unknown method 'unifrom'.* Did you mean 'uniform'\?",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_bad_command_line_is_one_error_line_and_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    err = usage_error([*argv, "--out", str(out)], capsys)
    assert err.strip().splitlines()[-1].startswith("prune-gym ")  # the error line comes last
    assert re.search(message, err), err
    assert not (out / "records.jsonl").exists() and not (out / "run.json").exists()


def test_an_empty_suite_file_is_named(tmp_path, capsys):
    suite = tmp_path / "empty.yaml"
    suite.write_text("")
    err = usage_error(["bench", "--suite", str(suite), "--out", str(tmp_path / "out")], capsys)
    assert f"suite {suite} holds nothing; a suite is a YAML mapping" in err
    suite.write_text("- a list\n")
    err = usage_error(["bench", "--suite", str(suite), "--out", str(tmp_path / "out")], capsys)
    assert "holds ['a list']" in err
