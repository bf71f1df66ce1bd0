"""TorchScript and torch.fx: timm's own checks, ported to archc models.

Ported from timm's ``tests/test_models.py`` (huggingface/pytorch-image-models at aa4b585, the nearest stored
source of timm 1.0.31, which is what runs here and whose FX helpers ``_create_fx_model`` uses):
``test_model_forward_torchscript``, ``test_model_forward_fx``, ``test_model_backward_fx``,
``test_model_forward_fx_torchscript`` and the helpers ``_get_input_size`` and ``_create_fx_model``, with timm's sizes.
timm's package ships no tests, so they are ported, each body as timm wrote it, with ``archc.load`` for
``timm.create_model`` (timm's ``set_scriptable`` only changes how timm builds its own layers).

One difference, added on top: where timm requires the traced model's output to equal the eager model's bit for bit,
an archc model's eager output depends on its path. Traced and scripted models run the conv units module by module
(``emit.fusion``'s fast paths are Python: an autograd Function, layouts chosen per call), so they must equal the
eager model's module path (``set_fast_paths(False)``) exactly, and its default fast paths to float32 rounding.
"""

import copy

import pytest
import torch
from conftest import TINY3D
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor, get_graph_node_names

import archc
from archc.emit.depthwise import plain_only

TARGET_JIT_SIZE = 128
MAX_JIT_SIZE = 320
TARGET_FWD_FX_SIZE = 128
MAX_FWD_FX_SIZE = 256
TARGET_BWD_FX_SIZE = 128
MAX_BWD_FX_SIZE = 224

# Shipped networks, each for what it adds to the traced code.
MODELS = {
    "efficientnet_b0": ("efficientnet_b0", {}),
    "mixnet_s": ("mixnet_s", {}),  # mixed depthwise kernels: a split and one conv per part
    "tf_efficientnet_b0": ("efficientnet_b0", {"overrides": {"padding": "same", "norm.eps": 1e-3}}),  # TF "same" padding, from each input's size
    "mobilenetv3_large_100": ("mobilenetv3_large_100", {}),  # hard swish, SE with a hard sigmoid gate, the efficient head
    "efficientnet3d_b0": ("efficientnet3d_b0", {"resolution": 32}),  # 3D
    "efficientnet_b0_features": ("efficientnet_b0", {"features_only": True}),  # a list of maps, one per level
    "unet3d_ct": ("unet3d_ct", {"resolution": 32}),  # the decoder: upsampling, crops to each skip's size, concatenation
}
CLASSIFIERS = ["efficientnet_b0", "mixnet_s", "tf_efficientnet_b0", "mobilenetv3_large_100", "efficientnet3d_b0"]

# Small ones, for the tests that run by default: the same code paths at a fraction of the cost.
TINY = {
    "tiny3d": {},  # 3D, stride-1 depthwise convs: the training fast path of emit.depthwise would be taken
    "tiny2d_same_mixed": {"overrides": {"dims": 2, "padding": "same", "stages[1].mixed_kernels": [3, 5], "stages[1].kernel": None, "stages[2].se": 0.25}},
    "tiny3d_unet_add": {"overrides": {"decoder.type": "unet", "decoder.fuse": "add", "decoder.deep_supervision": 1}},
    "tiny3d_features": {"features_only": True},
    "tiny1d_layer_norm": {"dims": 1, "overrides": {"norm.type": "layer", "activation": "gelu"}},  # 1D; ChannelLayerNorm
    "tiny3d_group_norm": {"overrides": {"norm.type": "group", "norm.groups": 4, "activation": "hardswish"}},
}


def load(name: str, **kwargs) -> torch.nn.Module:
    if name in TINY:
        return archc.load(TINY3D, seed=0, **TINY[name], **kwargs)
    source, options = MODELS[name]
    return archc.load(source, seed=0, **options, **kwargs)


def _get_input_size(model=None, target=None):
    """timm's, for a model (archc's ``default_cfg`` has ``input_size``; no fixed or minimum sizes)."""
    input_size = model.default_cfg["input_size"]
    if target and max(input_size) > target:
        input_size = tuple([min(x, target) for x in input_size])
    return input_size


def _create_fx_model(model, train=False):
    """timm's: the train-mode return nodes are the inputs of the graph's output node."""
    tracer_kwargs = TRACER_KWARGS
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)

    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes.keys()]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]

    return create_feature_extractor(model, train_return_nodes=train_return_nodes, eval_return_nodes=eval_return_nodes, tracer_kwargs=tracer_kwargs)


TRACER_KWARGS = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True)


def _returned_nodes(model) -> list[str]:
    """The names of the nodes whose values the traced forward returns (for a model returning a list: timm's
    helper returns only the last node in eval mode)."""
    tracer = NodePathTracer(**TRACER_KWARGS)
    graph = tracer.trace(model)
    output = next(node for node in reversed(graph.nodes) if node.op == "output")
    return [tracer.node_to_qualname[node] for node in output.all_input_nodes]


def flat(outputs) -> torch.Tensor:
    """A model's output, or its outputs (a features encoder's, a training U-Net's), flattened into one vector."""
    return torch.cat([y.flatten() for y in (outputs if isinstance(outputs, (tuple, list)) else [outputs])])


def eager_outputs(model, x) -> tuple[torch.Tensor, torch.Tensor]:
    """(module path, fast paths) outputs of ``model`` on ``x``, without autograd."""
    with torch.no_grad():
        fast = flat(model(x))
        reference = flat(model.set_fast_paths(False)(x))
    model.set_fast_paths(True)
    return reference, fast


def check_scripted(model, batch_size, target):
    """timm's test_model_forward_torchscript, and equality with the eager model."""
    model.eval()
    input_size = _get_input_size(model=model, target=target)
    x = torch.randn((batch_size, *input_size))
    reference, fast = eager_outputs(model, x)

    scripted = torch.jit.script(model)
    outputs = scripted(x)
    assert all(y.shape[0] == batch_size for y in (outputs if isinstance(outputs, list) else [outputs]))
    assert not torch.isnan(flat(outputs)).any(), "Output included NaNs"
    assert torch.equal(flat(outputs), reference)
    torch.testing.assert_close(flat(outputs), fast, atol=1e-4, rtol=1e-4)
    assert scripted.state_dict().keys() == model.state_dict().keys()
    return scripted, x


def check_forward_fx(model, batch_size):
    """timm's test_model_forward_fx: the traced model's output equals the eager model's (its module path)."""
    model.eval()
    input_size = _get_input_size(model=model, target=TARGET_FWD_FX_SIZE)
    assert max(input_size) <= MAX_FWD_FX_SIZE
    with torch.inference_mode():
        inputs = torch.randn((batch_size, *input_size))
        outputs, fast = eager_outputs(model, inputs)

        if isinstance(model(inputs), list):  # a features encoder: every map is an output
            model = create_feature_extractor(model, return_nodes=_returned_nodes(model), tracer_kwargs=TRACER_KWARGS)
        else:
            model = _create_fx_model(model)
        fx_outputs = flat(tuple(model(inputs).values()))

    assert torch.all(fx_outputs == outputs)
    torch.testing.assert_close(fx_outputs, fast, atol=1e-4, rtol=1e-4)
    assert not torch.isnan(outputs).any(), "Output included NaNs"


def check_backward_fx(model, batch_size, num_classes=None):
    """timm's test_model_backward_fx: every parameter gets a gradient through the traced training graph."""
    input_size = _get_input_size(model=model, target=TARGET_BWD_FX_SIZE)
    assert max(input_size) <= MAX_BWD_FX_SIZE
    model.train()
    num_params = sum([x.numel() for x in model.parameters()])

    model = _create_fx_model(model, train=True)
    outputs = tuple(model(torch.randn((batch_size, *input_size))).values())
    outputs = flat(outputs) if num_classes is None else torch.cat(outputs)
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    if num_classes is not None:
        assert outputs.shape[-1] == num_classes
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("name", [name if name == "tiny2d_same_mixed" else pytest.param(name, marks=pytest.mark.slow) for name in TINY])
def test_small_models_script_and_trace(name, tmp_path):
    """timm's three checks; and the scripted model saved is a file TorchScript runs without archc (nothing in it
    calls back into Python) at any size (the "same" padding and the decoder's crops follow each input's size)."""
    model = load(name)
    scripted, x = check_scripted(model, batch_size=2, target=TARGET_JIT_SIZE)
    torch.jit.save(scripted, tmp_path / "model.pt")
    restored = torch.jit.load(tmp_path / "model.pt")
    x = torch.randn(2, *x.shape[1:-1], x.shape[-1] + 5)  # another size, odd
    with torch.no_grad():
        assert torch.equal(flat(restored(x)), flat(model.set_fast_paths(False)(x)))
    # in training (batch statistics, stochastic depth; a U-Net's deep-supervision outputs) as well
    scripted.train(), model.train()
    outputs = []
    for module in (scripted, model):
        torch.manual_seed(0)  # the same stochastic-depth masks
        outputs.append(module(x))
    assert type(outputs[0]) is type(outputs[1]) and torch.equal(flat(outputs[0]), flat(outputs[1]))

    check_forward_fx(load(name), batch_size=2)
    check_backward_fx(load(name), batch_size=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_model_forward_torchscript(name):
    check_scripted(load(name), batch_size=1, target=TARGET_JIT_SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_model_forward_fx(name):
    check_forward_fx(load(name), batch_size=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_model_backward_fx(name):
    check_backward_fx(load(name, num_classes=42), batch_size=2, num_classes=42)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnet_b0", "unet3d_ct"])
def test_model_forward_fx_torchscript(name):
    """timm's: trace, script the graph, run it (here also: equal to the eager module path)."""
    model = load(name).eval()
    input_size = _get_input_size(model=model, target=TARGET_JIT_SIZE)
    inputs = torch.randn((1, *input_size))
    reference, _ = eager_outputs(model, inputs)

    model = torch.jit.script(_create_fx_model(model))
    with torch.inference_mode():
        outputs = torch.cat(tuple(model(inputs).values()))

    assert outputs.shape[0] == 1
    assert torch.equal(flat(outputs), reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(archc.api.builtin_specs()))
def test_every_shipped_network_scripts_and_traces(name):
    """Both equal the eager module path exactly, at a small size (3D: 32^3)."""
    model = archc.load(name, seed=0, resolution=32 if "3d" in name else 64).eval()
    x = torch.randn(1, model.plan.in_channels, *model.plan.resolution)
    reference, _ = eager_outputs(model, x)
    with torch.no_grad():
        assert torch.equal(flat(torch.jit.script(model)(x)), reference)
        assert torch.equal(flat(torch.fx.symbolic_trace(model)(x)), reference)


def test_create_feature_extractor_returns_each_stage():
    """torchvision's create_feature_extractor on an archc classifier: each stage's output, as the module computes it."""
    model = load("tiny2d_same_mixed").eval()
    extractor = create_feature_extractor(model, return_nodes={"stages.0": "s0", "stages.1": "s1", "stages.2": "s2", "classifier": "logits"})
    x = torch.randn(2, 1, 35, 30)
    seen = {}
    hooks = [model.get_submodule(path).register_forward_hook(lambda module, args, out, key=key: seen.__setitem__(key, out))
             for path, key in [("stages.0", "s0"), ("stages.1", "s1"), ("stages.2", "s2"), ("classifier", "logits")]]
    with torch.no_grad():
        extracted = extractor(x)
        model.set_fast_paths(False)(x)
    for hook in hooks:
        hook.remove()
    assert extracted.keys() == seen.keys()
    assert all(torch.equal(extracted[key], seen[key]) for key in seen)


@pytest.mark.slow
def test_fx_quantization_prepares_the_module_path():
    """FX graph mode quantization traces the model; the prepared graph (observers in, batch norms folded into their
    convs by prepare_fx) computes what the model computes."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = load("tiny2d_same_mixed").eval()
    x = torch.randn(2, 1, 32, 32)
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), example_inputs=(x,))
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model.set_fast_paths(False)(x), atol=1e-5, rtol=1e-4)
        quantized = convert_fx(prepared)(x)
    assert quantized.shape == (2, 2) and torch.isfinite(quantized).all()


def test_plain_only_while_fx_traces():
    """The one guard of the fast paths says "plain ops" inside torch.fx's symbolic trace, and not outside it."""
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(plain_only())
            return x + 1

    torch.fx.symbolic_trace(Probe())
    Probe()(torch.zeros(1))
    assert seen == [True, False]
