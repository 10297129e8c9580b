"""Tasks: a model factory + data splits + a training recipe, looked up by name.

``make("digits-mlp")`` builds a built-in task; ``register_task(name, factory)`` adds yours.
"""

from prune_gym.tasks.builtins import PlantedTeacherTask, resolve_recipe
from prune_gym.tasks.data import Split
from prune_gym.tasks.registry import list_tasks, make, register_task
from prune_gym.tasks.task import Task
from prune_gym.tasks.train import TrainRecipe, evaluate_split, evaluate_tensors, train_dense

__all__ = [
    "PlantedTeacherTask",
    "Split",
    "Task",
    "TrainRecipe",
    "evaluate_split",
    "evaluate_tensors",
    "list_tasks",
    "make",
    "register_task",
    "resolve_recipe",
    "train_dense",
]
