from __future__ import annotations

import optuna
import torch

from agehpo.nn.model import UniformDropout, build_model
from agehpo.search_space import suggest


def test_model_built_from_params_matches_model_built_from_trial() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    captured: list[torch.nn.Module] = []

    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(0)
        captured.append(build_model(suggest(trial), in_features=144))
        return 0.0

    study.optimize(objective, n_trials=3)
    for trial, from_trial in zip(study.trials, captured, strict=True):
        torch.manual_seed(0)
        from_params = build_model(trial.params, in_features=144)
        assert repr(from_params) == repr(from_trial)
        for (name_a, a), (name_b, b) in zip(
            from_params.state_dict().items(), from_trial.state_dict().items(), strict=True
        ):
            assert name_a == name_b
            assert torch.equal(a, b)


def test_layers_follow_the_params() -> None:
    params = {
        "num_fc_layers": 5,
        **{f"fc_output_feat_{i}": size for i, size in enumerate([55, 53, 62, 62, 28])},
        **{f"fc_dropout_{i}": p for i, p in enumerate([0.13, 0.15, 0.07, 0.04, 0.39])},
        "last_fc": 55,
    }
    model = build_model(params, in_features=576)
    linears = [m for m in model.body if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in linears] == [55, 53, 62, 62, 28, 55]
    dropouts = [m.p for m in model.body if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.13, 0.15, 0.07, 0.04, 0.39]
    logits = model(torch.zeros(3, 576))
    assert [t.shape for t in logits] == [(3, 5), (3, 5), (3, 2)]


def test_dropout_drops_at_rate_p_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    dropout = UniformDropout(0.3)
    ones = torch.ones(400, 500)
    dropped = dropout(ones)
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(dropped[kept], torch.full_like(dropped[kept], 1 / 0.7))
    assert abs(dropped.mean().item() - 1.0) < 0.01
    dropout.eval()
    assert dropout(ones) is ones


def test_dropout_gradient_flows_through_kept_units_only() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    out = UniformDropout(0.5)(x)
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (out != 0).float() * 2.0)
