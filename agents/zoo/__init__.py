"""RL Baselines3 Zoo support: ``hyperparams.yml`` and the ``train_ppo_lag`` entry point."""
