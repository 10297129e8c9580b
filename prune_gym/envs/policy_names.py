"""Names of the fixed policies (``prune_gym.baselines``), grouped by the action they take.

An env names the ones that can act on it (``PruningEnv.fixed_policies``), so a new env
family supports fixed policies without any edit to the baselines.
"""

#: uniformly random actions, projected onto the budget where the env needs it.
RANDOM = "random"
#: random scores, one global threshold: random weights anywhere (the env must rank the
#: weights inside each layer by ``rank_by``, made ``"random"``).
RANDOM_WEIGHTS = "random-weights"
#: methods that allocate per-layer ratios, acted through ``allocation_action``.
RATIO_METHODS = (
    "uniform",
    "layer-magnitude",
    "erk",
    "owl",
    "global-magnitude",
    "global-wanda",
    "snip",
    "grasp",
    "synflow",
)
#: the methods of one global threshold on a metric: a per-layer allocation on envs whose
#: actions are ratios, else the metric's one-hot mix (``mix_action``).
GLOBAL_METRIC = {
    "global-magnitude": "magnitude",
    "global-wanda": "wanda",
    "snip": "snip",
    "grasp": "grasp",
    "synflow": "synflow",
}
#: the metric a ratio method ranks weights by inside each layer where the env's action
#: chooses the ranking (MetricMix's joint mode); the others rank by every metric alike.
RANKING_METRIC = {
    **GLOBAL_METRIC,
    "layer-magnitude": "magnitude",
    "erk": "magnitude",
    "owl": "wanda",
}
#: methods that choose a metric mix at every step of an iterative env (Panning).
PANNING_METHODS = ("iterative-snip", "iterative-grasp", "iterative-synflow", "panning-handset")
