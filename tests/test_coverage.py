"""Every Haiku API that real code uses has a rule: converting, or a TODO rule saying why not.

The list is the Haiku API counted over about 95 files (18k lines) of public Haiku packages, most used
first. `haiku2flax rules` prints the same index (`rules_doc.api_index`).
"""

from __future__ import annotations

import haiku as hk
import pytest

from haiku2flax.rules_doc import api_index

USED_BY_REAL_CODE = [
    "Module", "Linear", "initializers.Constant", "initializers.TruncatedNormal", "initializers.VarianceScaling",
    "initializers.RandomNormal", "initializers.UniformScaling", "initializers.RandomUniform", "initializers.Initializer",
    "Sequential", "transform", "get_parameter", "without_apply_rng", "nets.MLP", "next_rng_key", "PRNGSequence",
    "dropout", "LSTMState", "LayerNorm", "Params", "State", "Transformed", "scan", "LSTM", "Flatten", "custom_creator",
    "custom_getter", "running_init", "transparent", "RNNCore", "static_unroll", "MultiHeadAttention", "eval_shape",
    "cond", "remat", "Reshape", "Conv1D", "BatchNorm", "experimental.name_scope", "vmap", "while_loop",
    "maybe_next_rng_key", "with_rng", "DeepRNN", "Conv2D", "max_pool", "BatchApply", "dynamic_unroll", "GRU", "Embed",
    "data_structures", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv2D", "RMSNorm",
    "GroupNorm", "InstanceNorm", "VanillaRNN", "avg_pool", "switch", "fori_loop", "layer_stack", "mixed_precision",
    "transform_with_state", "multi_transform", "get_state", "set_state",
]


@pytest.mark.parametrize("api", USED_BY_REAL_CODE)
def test_api_has_a_rule(api: str):
    value: object = hk
    for part in api.split("."):
        value = getattr(value, part)  # the name is real Haiku API
    assert api in api_index(), f"hk.{api}: no rule converts it or says why not (see `haiku2flax rules`)"
