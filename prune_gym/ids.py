"""The names the package registers, importable without torch.

``import prune_gym`` registers the env ids below with Gymnasium, and the ``prune-gym``
console script parses its command line with them, both before anything imports torch.
"""

#: registered id -> entry point, registered at ``import prune_gym``.
ENV_IDS = {
    "prune_gym/LayerRatio-v0": "prune_gym.envs.layer_ratio:LayerRatioEnv",
    "prune_gym/GlobalRatio-v0": "prune_gym.envs.global_ratio:GlobalRatioEnv",
    "prune_gym/MetricMix-v0": "prune_gym.envs.metric_mix:MetricMixEnv",
    "prune_gym/Panning-v0": "prune_gym.envs.panning:PanningEnv",
}
#: registered id -> the native vector env ``gymnasium.make_vec`` makes (``PruningVectorEnv``).
VECTOR_ENTRY_POINTS = {
    "prune_gym/LayerRatio-v0": "prune_gym.envs.vector:LayerRatioVectorEnv",
    "prune_gym/GlobalRatio-v0": "prune_gym.envs.vector:GlobalRatioVectorEnv",
}
#: where runs of ``prune-gym bench`` and ``train`` execute (``prune_gym.executors``).
EXECUTORS = ("local", "ray")
