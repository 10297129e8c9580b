"""The language-model tasks: corpus, model, costs, Wanda, OWL, 2:4 masks, post-training reward."""

import gzip
import math
from collections import Counter
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.baselines import make_policy, policy_env_settings
from prune_gym.bench import BenchSpec, run_benchmark, write_report
from prune_gym.envs.allocations import layer_block, owl_ratios
from prune_gym.evaluation import assess_policy
from prune_gym.pruning import MaskSet, compute_scores, prunable_layers
from prune_gym.pruning.allocate import outlier_density, owl_sparsities
from prune_gym.pruning.scores import group_ranks
from prune_gym.tasks import evaluate_split, make, register_task
from prune_gym.tasks.builtins import LanguageModelTask
from prune_gym.tasks.corpus import CORPUS_SHA256, corpus_bytes, load_corpus_windows
from prune_gym.wrappers import BudgetProjection

PROJECTIONS = ("q", "k", "v", "o", "up", "down")


@pytest.fixture(scope="module")
def lm() -> LanguageModelTask:
    """lm-tiny trained one epoch (seconds), not its full recipe."""
    return LanguageModelTask("tiny", recipe={"epochs": 1})


def windows(*splits) -> Counter:
    """The multiset of the splits' windows (inputs and the last target byte)."""
    return Counter(
        (*row.tolist(), int(last))
        for split in splits
        for row, last in zip(split.inputs, split.targets[:, -1], strict=True)
    )


def test_the_corpus_is_the_shipped_one_and_cut_into_disjoint_windows(tmp_path):
    data = corpus_bytes()
    assert len(data) == 466_273 and data.startswith(b'The "assert" statement')
    train, test = load_corpus_windows(context=64)
    assert len(train) + len(test) == len(data) // 65 and len(test) == round(0.1 * 7173)
    # each window's targets are its inputs moved by one byte
    assert torch.equal(train.inputs[:, 1:], train.targets[:, :-1])
    # train and test partition the 65-byte tiles of the corpus
    stream = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    tiles = Counter(tuple(t.tolist()) for t in stream[: 7173 * 65].view(7173, 65))
    assert windows(train, test) == tiles
    again_train, again_test = load_corpus_windows(context=64)
    assert torch.equal(again_test.inputs, test.inputs)
    assert torch.equal(again_train.inputs, train.inputs)
    tampered = tmp_path / "corpus.txt.gz"
    tampered.write_bytes(gzip.compress(data[:-1] + b"!"))
    with pytest.raises(ValueError, match=r"sha256 .* not the shipped"):
        corpus_bytes(tampered)


def test_the_corpus_fingerprint_keys_the_task(lm):
    assert lm.data_options["corpus_sha256"] == CORPUS_SHA256
    assert make("lm-tiny").definition_key() != make("lm-small").definition_key()
    splits = lm.splits
    sizes = [len(splits[name]) for name in ("train", "reward", "val", "test")]
    assert sizes == [5681, 129, 646, 717]
    # the four splits partition the windows (some texts repeat, so count them)
    train, test = load_corpus_windows(context=64)
    assert windows(*splits.values()) == windows(train, test)
    tokens, targets = lm.calibration_batch(8, seed=1)
    assert tokens.shape == targets.shape == (8, 64) and tokens.dtype == torch.int64
    with pytest.raises(ValueError, match="sequence targets"):
        lm.calibration_batch(256, class_balanced=True)


def test_every_projection_is_prunable_and_the_embeddings_are_not(lm):
    model = lm.build_model()
    names = [name for name, _ in prunable_layers(model)]
    per_block = [f"attention.{p}" for p in PROJECTIONS[:4]] + ["up", "down"]
    assert names == [f"blocks.{i}.{p}" for i in range(2) for p in per_block]
    assert len(names) == 12 and lm.cost_model(model).params_dense == 98_304


def test_macs_match_flop_counter_dense_and_masked(lm):
    model = lm.build_model().eval()
    tokens = lm.example_input(2)
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    per_module = counter.get_flop_counts()
    layer_macs = {
        name: sum(per_module[f"DecoderLM.{name}"].values()) / 2 / len(tokens)
        for name, _ in prunable_layers(model)
    }
    cost_model = lm.cost_model(model)
    assert cost_model.macs_dense == sum(layer_macs.values()) == 6_291_456
    masks = MaskSet.from_ratios(model, {"blocks.0.up": 0.75, "blocks.1.attention.q": 0.5})
    densities = masks.densities()
    expected = sum(macs * densities[name] for name, macs in layer_macs.items())
    assert cost_model.used_fractions(masks)["flops"] == pytest.approx(
        expected / cost_model.macs_dense
    )


def test_wanda_is_weight_magnitude_times_the_input_norm(lm):
    model = lm.pretrained_model()
    tokens, targets = lm.calibration_batch(16, seed=3)
    scores = compute_scores(model, "wanda", (tokens, targets))
    # the inputs of block 0's up projection, computed by hand
    block = model.blocks[0]
    with torch.no_grad():
        x = model.embedding(tokens) + model.position(torch.arange(tokens.shape[1]))
        x = x + block.attention(block.attention_norm(x))
        hidden = block.mlp_norm(x).reshape(-1, x.shape[-1]).double()
    norms = hidden.pow(2).sum(dim=0).sqrt()
    expected = block.up.weight.detach().abs().double() * norms
    torch.testing.assert_close(scores["blocks.0.up"].double(), expected, rtol=1e-5, atol=0)
    # per-output-row groups: ranks within each row, so ratio r prunes r of every row
    rows = compute_scores(model, "wanda-row", (tokens, targets))["blocks.0.up"]
    assert torch.equal(rows.sort(dim=1).values[0], torch.arange(1, 65, dtype=torch.float32))
    masks = MaskSet.from_ratios(
        model,
        {"blocks.0.up": 0.5},
        scores={n: s for n, s in compute_scores(model, "wanda-row", (tokens, targets)).items()},
    )
    kept = masks["blocks.0.up"].sum(dim=1)
    assert set(kept.tolist()) == {32}
    assert torch.equal(masks["blocks.0.up"], expected.argsort(dim=1).argsort(dim=1) >= 32)


def test_wanda_scores_a_convolution_by_input_channel():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv1d(4, 6, 3, groups=2), nn.Flatten(), nn.Linear(6 * 6, 3))
    inputs = torch.randn(5, 4, 8)
    scores = compute_scores(conv, "wanda", (inputs, torch.zeros(5, dtype=torch.long)))
    norms = inputs.pow(2).sum(dim=(0, 2)).sqrt()  # per input channel
    # output channels 0-2 read input channels 0-1, outputs 3-5 read inputs 2-3
    per_output = torch.stack([norms[[0, 1]]] * 3 + [norms[[2, 3]]] * 3)
    expected = conv[0].weight.detach().abs() * per_output[:, :, None]
    torch.testing.assert_close(scores["0"], expected)


def test_owl_follows_the_papers_formula():
    # D = 2 * 0.08 * (L - min) / (max - min) = [0, 0.16, 0.08]; centred on 1 - 0.7: the
    # kept fractions [0.22, 0.38, 0.30], so the sparsities [0.78, 0.62, 0.70]
    np.testing.assert_allclose(owl_sparsities([1.0, 3.0, 2.0], 0.7, 0.08), [0.78, 0.62, 0.70])
    np.testing.assert_allclose(owl_sparsities([2.0, 2.0], 0.7, 0.08), [0.7, 0.7])
    np.testing.assert_allclose(owl_sparsities([0.0, 1.0], 0.05, 0.2), [0.25, 0.01])  # clamped
    # 10 is the only score above 3 x the mean 2.8 of [1, 1, 1, 1, 10]: 1 in 5
    scores = [torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0, 10.0])]
    assert outlier_density(scores, 3.0) == pytest.approx(20.0)
    assert layer_block("blocks.1.attention.q") == "blocks.1" and layer_block("fc1") == "fc1"


def test_owl_gives_every_layer_of_a_block_its_blocks_ratio_and_meets_the_budget(lm):
    env = gym.make(
        "prune_gym/GlobalRatio-v0", task=lm, budget={"params": 0.3}, max_ratio=1.0, rank_by="wanda"
    ).unwrapped
    ratios = dict(zip(env.layer_names, owl_ratios(env), strict=True))
    blocks = [{r for n, r in ratios.items() if n.startswith(f"blocks.{i}.")} for i in range(2)]
    assert all(len(block) == 1 for block in blocks)
    (first,), (second,) = blocks
    assert abs(first - second) == pytest.approx(0.16, abs=0.01)  # the band 2 * lambda
    assert (first + second) / 2 == pytest.approx(0.7, abs=1e-3)
    scores = env.context.metric_scores("wanda")
    lod = [
        outlier_density([scores[n] for n in ratios if n.startswith(f"blocks.{i}.")], 5.0)
        for i in range(2)
    ]
    assert (first < second) == (lod[0] > lod[1])  # more outliers, pruned less
    (record,) = assess_policy(make_policy("owl", env), env)
    assert record["feasible"] and record["params_ratio"] <= 0.3


def test_semi_structured_masks_keep_exactly_2_of_every_4(lm):
    model = lm.pretrained_model()
    masks = MaskSet.semi_structured(model)
    for name, mask in masks.masks.items():
        groups = mask.reshape(mask.shape[0], -1, 4)
        assert (groups.sum(dim=-1) == 2).all(), name
    weight = model.blocks[0].up.weight.detach().abs().reshape(256, -1, 4)
    kept = masks["blocks.0.up"].reshape(256, -1, 4)
    assert (
        weight[kept].reshape(256, -1, 2).min(-1).values
        >= weight[~kept].reshape(256, -1, 2).max(-1).values
    ).all()
    assert masks.sparsity() == 0.5
    with pytest.raises(ValueError, match="not a multiple of m=3"):
        MaskSet.semi_structured(model, 2, 3)


@pytest.mark.parametrize("metric", ["magnitude", "wanda"])
def test_uniform_at_half_the_params_ranked_in_groups_of_four_is_2_of_4(lm, metric):
    name = f"uniform@{metric}-2:4"
    settings = {"rank_by": "wanda", "metrics": ["magnitude", "wanda"]} | policy_env_settings(name)
    env = gym.make("prune_gym/GlobalRatio-v0", task=lm, budget={"params": 0.5}, **settings)
    (record,) = assess_policy(make_policy(name, env), env)
    masks = env.unwrapped.last_masks
    for layer, mask in masks.masks.items():
        assert (mask.reshape(mask.shape[0], -1, 4).sum(dim=-1) == 2).all(), layer
    model = lm.pretrained_model()
    scores = None if metric == "magnitude" else env.unwrapped.context.metric_scores(metric)
    expected = MaskSet.semi_structured(model, scores=scores)
    assert all(torch.equal(masks[n], expected[n]) for n in expected.masks)
    assert record["params_ratio"] == 0.5


def test_the_post_training_reward_is_minus_the_log_perplexity_on_the_reward_split(lm):
    env = gym.make(
        "prune_gym/GlobalRatio-v0",
        task=lm,
        budget={"params": 0.5},
        reward="loss",
        max_ratio=1.0,
        rank_by="wanda",
        metrics=["magnitude", "wanda"],
    )
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(env.action_space.sample())
    assert terminated
    model = lm.pretrained_model()
    env.unwrapped.last_masks.apply(model)
    reward_split = evaluate_split(model, lm.splits["reward"])
    assert reward == pytest.approx(-reward_split["loss"], rel=1e-6)
    perplexity = math.exp(-reward)
    assert 1.0 < perplexity < 256.0
    # the test perplexity the bench reports is the same measure on the test split
    test_loss = env.unwrapped.context.assess(env.unwrapped.last_masks)["test_loss"]
    assert test_loss == pytest.approx(evaluate_split(model, lm.splits["test"])["loss"], rel=1e-6)


def test_ranked_policies_rank_inside_layers_by_their_metric(lm):
    settings = policy_env_settings("uniform@magnitude")
    assert settings == {"rank_by": "magnitude"}
    with pytest.raises(ValueError, match="takes no @<metric>"):
        policy_env_settings("random-weights@wanda")
    masks = {}
    for name in ("uniform@magnitude", "uniform"):
        env = gym.make(
            "prune_gym/GlobalRatio-v0",
            task=lm,
            budget={"params": 0.5},
            max_ratio=1.0,
            **({"rank_by": "wanda"} | policy_env_settings(name)),
        )
        assess_policy(make_policy(name, env), env)
        masks[name] = env.unwrapped.last_masks
    model = lm.pretrained_model()
    magnitude = MaskSet.from_ratios(model, dict.fromkeys(masks["uniform"].masks, 0.5))
    assert all(torch.equal(magnitude[n], masks["uniform@magnitude"][n]) for n in magnitude.masks)
    assert not all(torch.equal(magnitude[n], masks["uniform"][n]) for n in magnitude.masks)


def test_the_lm_trains_to_a_perplexity_well_below_the_uniform_guess(lm):
    model = lm.pretrained_model()
    result = lm.evaluate(model, "val")
    assert math.exp(result["loss"]) < 20 < 256  # one epoch; the full recipe reaches ~3.3
    logits = model(lm.splits["val"].inputs[:2])
    assert logits.shape == (2, 256, 64)
    assert F.cross_entropy(logits, lm.splits["val"].targets[:2]).item() == pytest.approx(
        lm.evaluate(model, "val", limit=2)["loss"], rel=1e-5
    )


def test_a_bench_on_a_language_model_reports_its_perplexity(tmp_path):
    register_task(
        "lm-tiny-1-epoch", partial(LanguageModelTask, "tiny", recipe={"epochs": 1}), overwrite=True
    )
    spec = BenchSpec(
        tasks=("lm-tiny-1-epoch",),
        budgets=("params=0.5",),
        methods=("uniform", "uniform@magnitude"),
        seeds=1,
        finetune_steps=0,
        env_kwargs={"rank_by": "wanda", "metrics": ["magnitude", "wanda"]},
    )
    records = run_benchmark(spec, tmp_path)
    assert {r["method"] for r in records} == {"uniform", "uniform@magnitude"}
    for record in records:
        assert record["status"] == "ok"
        assert record["test_perplexity"] == pytest.approx(math.exp(record["test_loss"]))
        assert 1.0 < record["dense_perplexity"] < record["test_perplexity"]
    summary = write_report(records, tmp_path)
    assert "test perplexity" in summary and "dense test accuracy" in summary
    assert "uniform@magnitude" in summary
    assert (tmp_path / "accuracy_vs_compression.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("env_id", "settings"),
    [
        ("prune_gym/LayerRatio-v0", {"metrics": ["magnitude", "wanda"]}),
        ("prune_gym/GlobalRatio-v0", {"action": "logits", "reference": "erk"}),
        ("prune_gym/MetricMix-v0", {"metrics": ["magnitude", "wanda"], "mode": "joint"}),
    ],
)
def test_every_ratio_env_prunes_a_language_model(lm, env_id, settings):
    env = BudgetProjection(
        gym.make(env_id, task=lm, budget={"params": 0.4}, reward="loss", max_ratio=1.0, **settings)
    )
    env.action_space.seed(0)
    env.reset(seed=0)
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    assert info["feasible"] and info["params_ratio"] <= 0.4
    assert 0.0 < -reward < math.log(256) + 1  # minus the log perplexity on the reward split


def test_group_ranks_rank_within_rows_and_within_groups_of_a_row():
    scores = {"fc": torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0], [1.0, 1.0, 0.0, 2.0, 2.0]])}
    by_row = group_ranks(scores)["fc"]
    assert by_row.tolist() == [[3, 1, 2, 5, 4], [2, 3, 1, 4, 5]]  # ties: earlier ranks lower
    by_four = group_ranks(scores, 4)["fc"]  # a row of 5: groups of 4 and of 1
    assert by_four.tolist() == [[3, 1, 2, 4, 1], [2, 3, 1, 4, 1]]
