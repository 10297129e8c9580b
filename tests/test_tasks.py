"""Tasks: registry, splits, dense accuracy, evaluation, fine-tuning, the planted teacher.

The pretrained-weights cache is tested in test_cache.py.
"""

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toy_tasks import blobs_task, load_blobs

import prune_gym.tasks
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet, effective_weight
from prune_gym.tasks import PlantedTeacherTask, Split, Task, TrainRecipe
from prune_gym.tasks.train import augment_batch, evaluate_tensors, lr_factor


def load_numbered() -> tuple[Split, Split]:
    """500 training samples whose single feature is their index; 5 classes of 100."""
    train = Split(torch.arange(500, dtype=torch.float32).unsqueeze(1), torch.arange(500) % 5)
    test = Split(torch.zeros(10, 1), torch.arange(10) % 5)
    return train, test


def numbered_task(seed: int = 0, **options: float) -> Task:
    return Task(
        "numbered", lambda: nn.Linear(1, 5), load_numbered, TrainRecipe(), (1,), 5, seed=seed,
        **options,
    )  # fmt: skip


# registry ---------------------------------------------------------------------------------
def test_builtin_tasks_are_registered():
    assert set(prune_gym.tasks.list_tasks()) >= {
        "digits-mlp",
        "digits-cnn",
        "teacher-mlp",
        "mnist-lenet300",
        "mnist-lenet5",
        "fashion-lenet5",
        "cifar10-resnet20",
        "cifar10-vgg16",
    }


def test_unknown_task_names_it_and_lists_available():
    with pytest.raises(ValueError, match=r"'no-such-task'.*digits-mlp.*teacher-mlp"):
        prune_gym.tasks.make("no-such-task")


def test_unknown_override_names_it_and_the_accepted_ones():
    with pytest.raises(TypeError, match=r"\['bogus'\].*'seed'"):
        prune_gym.tasks.make("digits-mlp", bogus=1)


def test_duplicate_registration_needs_overwrite():
    with pytest.raises(ValueError, match="'digits-mlp' is already registered"):
        prune_gym.tasks.register_task("digits-mlp", blobs_task)
    prune_gym.tasks.register_task("dup-test", blobs_task, overwrite=True)
    prune_gym.tasks.register_task("dup-test", blobs_task, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        prune_gym.tasks.register_task("dup-test", blobs_task)
    with pytest.raises(TypeError, match="callable"):
        prune_gym.tasks.register_task("not-callable", 3)


def test_factory_must_return_a_task():
    prune_gym.tasks.register_task("returns-none", lambda **kw: None, overwrite=True)
    with pytest.raises(TypeError, match="returned NoneType"):
        prune_gym.tasks.make("returns-none")


def test_user_registered_task_works_with_make():
    from prune_gym.tasks import Task, TrainRecipe, register_task

    register_task(
        "blobs-mlp",
        lambda seed=0: Task(
            "blobs-mlp",
            build_model=lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)),
            load_data=load_blobs,
            recipe=TrainRecipe(optimizer="adam", lr=1e-2, batch_size=32, epochs=3),
            input_shape=(4,),
            num_classes=3,
            seed=seed,
        ),
        overwrite=True,
    )
    task = prune_gym.tasks.make("blobs-mlp", seed=1)
    assert "blobs-mlp" in prune_gym.tasks.list_tasks() and task.seed == 1
    model = task.pretrained_model()
    assert task.evaluate(model, "test")["accuracy"] > 0.9
    assert task.example_input(2).shape == (2, 4)


# recipes ----------------------------------------------------------------------------------
def test_recipe_validation_and_overrides():
    with pytest.raises(ValueError, match=r"optimizer='rmsprop'.*'sgd', 'adam'"):
        TrainRecipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="batch_size=0"):
        TrainRecipe(batch_size=0)
    default = prune_gym.tasks.make("digits-mlp").recipe
    short = prune_gym.tasks.make("digits-mlp", recipe={"epochs": 1}).recipe
    assert short.epochs == 1 and short.lr == default.lr and short.optimizer == default.optimizer
    assert prune_gym.tasks.make("digits-mlp", recipe=TrainRecipe(lr=0.5)).recipe.lr == 0.5
    with pytest.raises(ValueError, match=r"\['epoch'\]"):
        prune_gym.tasks.make("digits-mlp", recipe={"epoch": 1})


def test_lr_schedules():
    multistep = lr_factor(TrainRecipe(schedule="multistep", milestones=(0.5, 0.75)), 100)
    assert [multistep(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    cosine = lr_factor(TrainRecipe(schedule="cosine"), 100)
    assert [cosine(s) for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0])
    assert lr_factor(TrainRecipe(schedule="constant"), 100)(99) == 1


def test_crop_flip_augmentation_is_seeded_and_shape_preserving():
    images = torch.randn(8, 3, 32, 32)
    first = augment_batch(images, "crop-flip", torch.Generator().manual_seed(0))
    second = augment_batch(images, "crop-flip", torch.Generator().manual_seed(0))
    assert first.shape == images.shape and torch.equal(first, second)
    assert not torch.equal(first, images)
    padded = F.pad(images, (4, 4, 4, 4))
    for out, source in zip(first, padded, strict=True):  # each is a crop, maybe flipped
        crops = [source[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out, crop) or torch.equal(out, crop.flip(2)) for crop in crops)
    assert augment_batch(images, None, torch.Generator()) is images


# models and splits ------------------------------------------------------------------------
def test_build_model_is_seeded_and_leaves_global_rng_alone():
    rng_state = torch.get_rng_state()
    first = prune_gym.tasks.make("digits-mlp").build_model()
    assert torch.equal(rng_state, torch.get_rng_state())
    second = prune_gym.tasks.make("digits-mlp").build_model()
    other = prune_gym.tasks.make("digits-mlp", seed=1).build_model()
    assert torch.equal(first.fc1.weight, second.fc1.weight)
    assert not torch.equal(first.fc1.weight, other.fc1.weight)


def test_splits_are_disjoint_stratified_and_seeded():
    splits = numbered_task(seed=0).splits
    ids = {name: splits[name].inputs.flatten().long() for name in ("train", "reward", "val")}
    assert [len(ids[n]) for n in ids] + [len(splits["test"])] == [400, 50, 50, 10]
    assert set(ids["train"].tolist()).isdisjoint(ids["val"].tolist())
    assert set(ids["reward"].tolist()).isdisjoint(ids["val"].tolist() + ids["train"].tolist())
    assert sorted(torch.cat(list(ids.values())).tolist()) == list(range(500))
    for name in ("reward", "val"):
        assert torch.bincount(splits[name].targets).tolist() == [10] * 5
        assert torch.equal(splits[name].targets, ids[name] % 5)  # targets follow inputs
    for name in ("reward", "val"):
        assert torch.equal(numbered_task(seed=0).splits[name].inputs, splits[name].inputs)
        assert not torch.equal(numbered_task(seed=1).splits[name].inputs, splits[name].inputs)


def test_fractions_are_of_the_loaded_training_data_and_must_leave_some_for_training():
    task = numbered_task(val_fraction=0.2, reward_fraction=0.3)
    sizes = {name: len(split) for name, split in task.splits.items()}
    assert sizes == {"train": 250, "reward": 150, "val": 100, "test": 10}
    with pytest.raises(ValueError, match=r"val_fraction=0.5 and reward_fraction=0.5 leave no"):
        numbered_task(val_fraction=0.5, reward_fraction=0.5)


def test_the_reward_fraction_keys_the_task():
    key = numbered_task(reward_fraction=0.1).definition_key()
    assert key == numbered_task(reward_fraction=0.1).definition_key()
    assert key != numbered_task(reward_fraction=0.2).definition_key()


def test_builtin_digits_splits_sizes_and_sharing():
    task = prune_gym.tasks.make("digits-cnn")
    sizes = {name: len(split) for name, split in task.splits.items()}
    # val (selection) is a fifth of the 1437 training images, the reward split a tenth
    assert sizes == {"train": 1008, "reward": 142, "val": 287, "test": 360}
    other = prune_gym.tasks.make("digits-mlp")
    assert other.splits["train"].inputs is task.splits["train"].inputs
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10


def test_builtin_task_pickles_without_its_data():
    task = prune_gym.tasks.make("digits-cnn")
    task.splits  # noqa: B018  (loads the data)
    payload = pickle.dumps(task)
    assert len(payload) < 50_000
    clone = pickle.loads(payload)
    assert torch.equal(clone.build_model().conv1.weight, task.build_model().conv1.weight)
    assert torch.equal(clone.splits["val"].targets, task.splits["val"].targets)


# evaluation and calibration ---------------------------------------------------------------
def test_evaluate_matches_manual_computation_and_restores_mode():
    task = prune_gym.tasks.make("digits-mlp")
    model = task.build_model().train()
    result = task.evaluate(model, "val", limit=50)
    assert model.training
    inputs, targets = task.splits["val"]
    with torch.no_grad():
        logits = model.eval()(inputs[:50])
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == targets[:50]).float().mean())
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, targets[:50]).item(), rel=1e-5)
    batched = evaluate_tensors(model, inputs, targets, batch_size=7)
    assert batched == pytest.approx(task.evaluate(model, "val"))
    with pytest.raises(ValueError, match="split='dev'"):
        task.evaluate(model, "dev")


def test_calibration_batch_random_and_class_balanced():
    task = prune_gym.tasks.make("digits-mlp")
    inputs, targets = task.calibration_batch(100, seed=1, class_balanced=True)
    assert inputs.shape == (100, 1, 8, 8)
    assert torch.bincount(targets, minlength=10).tolist() == [10] * 10
    again, _ = task.calibration_batch(100, seed=1, class_balanced=True)
    other, _ = task.calibration_batch(100, seed=2, class_balanced=True)
    assert torch.equal(inputs, again) and not torch.equal(inputs, other)
    plain_inputs, plain_targets = task.calibration_batch(64, seed=0)
    assert plain_inputs.shape == (64, 1, 8, 8) and len(plain_targets) == 64
    with pytest.raises(ValueError, match="n >= num_classes=10"):
        task.calibration_batch(5, class_balanced=True)
    with pytest.raises(ValueError, match="n=100000"):
        task.calibration_batch(100_000)
    counts = torch.bincount(task.splits["train"].targets)
    too_many = (int(counts.min()) + 1) * 10
    with pytest.raises(ValueError, match=f"class {int(counts.argmin())} has"):
        task.calibration_batch(too_many, class_balanced=True)


# pretrained weights -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_dense_digits_test_accuracy_at_least_95(name):
    task = prune_gym.tasks.make(name)
    model = task.pretrained_model()
    assert not model.training
    assert task.evaluate(model, "test")["accuracy"] >= 0.95


# fine-tuning ------------------------------------------------------------------------------
def random_masks(model: nn.Module, density: float = 0.3) -> MaskSet:
    # not seed 0: build_model's init draws the same uniforms, the mask would track signs
    generator = torch.Generator().manual_seed(1234)
    return MaskSet(
        {
            name: torch.rand(module.weight.shape, generator=generator) < density
            for name, module in prunable_layers(model)
        }
    )


def test_finetune_keeps_pruned_weights_and_momentum_at_zero(monkeypatch):
    task = prune_gym.tasks.make(
        "digits-mlp", recipe={"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4}
    )
    model = task.build_model()
    masks = random_masks(model)
    before = {name: m.weight.detach().clone() for name, m in prunable_layers(model)}
    momentum_ok = []
    enforce = MaskSet.enforce

    def checked_enforce(self, model, optimizer=None):
        enforce(self, model, optimizer)
        for name, module in prunable_layers(model):
            buffer = optimizer.state[module.weight_orig]["momentum_buffer"]
            momentum_ok.append(bool((buffer[~self.masks[name]] == 0).all()))

    monkeypatch.setattr(MaskSet, "enforce", checked_enforce)
    tuned = task.finetune(model, masks, steps=5)
    assert tuned is model and not model.training
    assert len(momentum_ok) == 5 * 3 and all(momentum_ok)
    for name, module in prunable_layers(model):
        pruned, kept = ~masks.masks[name], masks.masks[name]
        assert (module.weight_orig[pruned] == 0).all()
        assert torch.equal(module.weight, effective_weight(module))  # not stale
        assert (module.weight[pruned] == 0).all()
        assert not torch.equal(module.weight[kept], before[name][kept])


def test_finetune_is_deterministic_and_validates_steps():
    task = prune_gym.tasks.make("digits-cnn")

    def tuned(seed):
        model = task.build_model()
        return task.finetune(model, random_masks(model, 0.5), steps=3, seed=seed)

    assert torch.equal(tuned(0).fc1.weight_orig, tuned(0).fc1.weight_orig)
    assert not torch.equal(tuned(0).fc1.weight_orig, tuned(1).fc1.weight_orig)
    model = task.build_model()
    original = model.fc1.weight.detach().clone()
    masks = random_masks(model, 0.5)
    task.finetune(model, masks, steps=0)
    assert torch.equal(model.fc1.weight_orig, original)  # no training, masks applied
    assert torch.equal(model.fc1.weight, original * masks.masks["fc1"])
    with pytest.raises(ValueError, match="steps=-1"):
        task.finetune(model, masks, steps=-1)


# planted teacher --------------------------------------------------------------------------
def test_teacher_true_masks_match_the_student_and_label_the_data():
    task = prune_gym.tasks.make("teacher-mlp", n_train=600, n_test=200)
    assert isinstance(task, PlantedTeacherTask)
    student = task.build_model()
    layers = prunable_layers(student)
    assert list(task.true_masks.masks) == [name for name, _ in layers]
    for name, module in layers:
        assert task.true_masks.masks[name].shape == module.weight.shape
    assert task.true_masks.sparsity() == task.true_sparsity == 1 - 986 / 8832
    assert torch.equal(task.support, torch.nonzero(task.true_masks["fc1"].any(dim=0)).flatten())
    student.load_state_dict(task.teacher.state_dict())  # same architecture and layer names
    for split in ("train", "val", "test"):
        assert task.evaluate(student, split)["accuracy"] == 1.0


def test_teacher_labels_are_reproducible():
    first = PlantedTeacherTask(n_train=300, n_test=100)
    second = PlantedTeacherTask(n_train=300, n_test=100, seed=1)  # new val carve, same data
    other = PlantedTeacherTask(n_train=300, n_test=100, teacher_seed=1)
    assert torch.equal(first.splits["test"].inputs, second.splits["test"].inputs)
    assert torch.equal(first.splits["test"].targets, second.splits["test"].targets)
    assert not torch.equal(first.splits["test"].targets, other.splits["test"].targets)
    dense = PlantedTeacherTask(density=0.25, support_size=None, n_train=300, n_test=100)
    assert dense.true_sparsity == pytest.approx(0.75, abs=1e-3)
    assert dense.cache_key() != first.cache_key()


# what keys the cached weights and the benchmark records ------------------------------------
class Blobs(nn.Module):
    """blobs_task's MLP with a choice of activation and of first-layer initialisation."""

    def __init__(self, activation=torch.relu, init_std: float | None = None) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 3)
        self.activation = activation
        if init_std is not None:
            nn.init.normal_(self.fc1.weight, std=init_std)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(x)))


def blobs_with(seed: int = 0, **model) -> Task:
    """blobs_task with ``Blobs(**model)`` as its model (same name, recipe and data)."""
    task = blobs_task(seed)
    task._build_model = lambda: Blobs(**model)
    return task


def test_a_changed_forward_or_initialisation_changes_the_keys():
    base = blobs_with()
    for changed in (blobs_with(activation=torch.tanh), blobs_with(init_std=0.5)):
        assert repr(changed.build_model()) == repr(base.build_model())  # repr cannot tell
        assert changed.model_fingerprint() != base.model_fingerprint()
        assert changed.definition_key() != base.definition_key()
        assert changed.cache_key() != base.cache_key()
    # the same definition keys the same, whatever the seed; the weights key holds the seed
    assert (
        blobs_with(seed=1).definition_key()
        == base.definition_key()
        == blobs_with().definition_key()
    )
    assert blobs_with(seed=1).cache_key() != base.cache_key()


def test_a_changed_forward_is_trained_not_loaded_from_the_cache():
    relu = blobs_with().pretrained_model()
    tanh = blobs_with(activation=torch.tanh).pretrained_model()
    assert tanh.activation is torch.tanh
    assert not torch.equal(relu.fc1.weight, tanh.fc1.weight)


def test_the_package_version_keys_the_cached_weights(monkeypatch):
    before = blobs_task().cache_key()
    monkeypatch.setattr(prune_gym.tasks.task, "__version__", "0.0.0")
    assert blobs_task().cache_key() != before


def test_probe_input_is_a_fixed_random_batch_of_the_input_shape():
    task = prune_gym.tasks.make("digits-mlp")
    probe = task.probe_input(4)
    assert probe.shape == (4, *task.input_shape) and probe.dtype == torch.float32
    assert torch.equal(probe, task.probe_input(4)) and probe.std() > 0.5
    assert torch.equal(
        prune_gym.tasks.make("digits-mlp", seed=3).probe_input(4), probe
    )  # not the task seed
