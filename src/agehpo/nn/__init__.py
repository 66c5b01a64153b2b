"""PyTorch: the network, its training steps and CUDA-graph capture (no Optuna, no MLflow)."""
