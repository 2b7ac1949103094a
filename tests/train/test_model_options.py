"""--model-option KEY=VALUE: typed changes of a model's config dataclass."""

from __future__ import annotations

import pytest

from empcn.train.model_options import ModelOptionError, apply_model_options, parse_model_options, settable_fields
from empcn.train.models.egnn import EGNNConfig
from empcn.train.models.empcn_dynamics import EMPCNDynamicsConfig


def test_values_take_the_type_of_the_field():
    base = EMPCNDynamicsConfig()
    changes = parse_model_options(
        base,
        [
            "fourier_scale=0.5",
            "inv_size=8",
            "velocity_invariants=true",
            "inv-embedding=rbf",
            "edge_adjacency=1_1_lower,1_1_upper",
        ],
    )
    assert changes == {
        "fourier_scale": 0.5,
        "inv_size": 8,
        "velocity_invariants": True,
        "inv_embedding": "rbf",
        "edge_adjacency": ("1_1_lower", "1_1_upper"),
    }
    cfg = apply_model_options(base, ["residual=no", "coord_weight=2"])
    assert cfg.residual is False and cfg.coord_weight == 2.0 and cfg.hidden == base.hidden
    assert apply_model_options(base, []) is base


@pytest.mark.parametrize(
    "option, message",
    [
        ("hidden=32", "use --hidden"),
        ("dropout=0.1", "use --dropout"),
        ("in_node_features=3", "set from the cache"),
        ("nonsense=1", "has no such field"),
        ("inv_size", "expected KEY=VALUE"),
        ("inv_size=eight", "expected an integer"),
        ("fourier_scale=big", "expected a number"),
        ("residual=maybe", "expected true or false"),
        ("coord_agg=max", "coord_agg must be"),  # the config's own validation
    ],
)
def test_bad_options_are_one_line_errors(option, message):
    with pytest.raises(ModelOptionError, match=message) as info:
        apply_model_options(EMPCNDynamicsConfig(), [option])
    assert "\n" not in str(info.value)


def test_repeated_option_is_refused_and_fields_are_listed():
    with pytest.raises(ModelOptionError, match="given twice"):
        parse_model_options(EGNNConfig(), ["attention=false", "attention=true"])
    names = settable_fields(EGNNConfig())
    assert "attention" in names and "hidden" not in names and "in_node_features" not in names
