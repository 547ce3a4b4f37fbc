"""Routers trained by reinforcement learning: TRIM-Agg and TRIM-Seq (PPO), their features and environment."""
