"""Reward signals and ratings: rule-based regional rewards, reward models, win-rates and Bradley–Terry."""
