"""`braintriage export --format onnx`: a model file as an ONNX graph for the PyTorch-free runtime.

The graph takes the normalised image batch (B, 1, H, W) and returns `logits` and, for a network with a
global-average-pool head, the last `features` maps, so the runtime can draw the class activation map with
the head weights it reads from the graph, and the stage before the last pooled over space
(`penultimate_features`) and over each quarter of it (`penultimate_quarters`), which the out-of-distribution
guards read (`ood.DESIGNS`; a guard fitted on other features keeps reading those). Weights are stored as float16 (the
file stays as small as the .safetensors one) and cast to float32 inside the graph; each keeps its PyTorch
state-dict name, so PyTorch can load the ONNX file back. The model's metadata travels in the ONNX
metadata_props.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from braintriage.atomic_files import written_atomically
from braintriage.modelfile import (EXPLAINABLE_OUTPUTS, FORMAT_NAME, FORMAT_VERSION, METADATA_KEY, ONNX_PREFIX,
                                   load_model)
from braintriage import __version__

OPSET = 17


class _Exported(torch.nn.Module):
    """The network as the runtime calls it: logits, plus the last feature maps when it has them."""

    def __init__(self, m: torch.nn.Module):
        super().__init__()
        self.m = m  # the prefix ONNX_PREFIX in initializer names

    def forward(self, x: torch.Tensor):
        if hasattr(self.m, "features_with_penultimate"):
            features, penultimate, quarters = self.m.features_with_penultimate(x)
            return self.m.head(features.mean(dim=(2, 3))), features, penultimate, quarters
        return self.m(x)


def _name_every_weight(model: onnx.ModelProto) -> None:
    """The exporter shares weights with equal values through Identity nodes; give each weight back its own
    initializer under its state-dict name, so every one can be found by name."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0].startswith(ONNX_PREFIX) and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _weights_to_float16(model: onnx.ModelProto) -> None:
    """Store float32 weights as float16, each read through a Cast back to float32."""
    graph = model.graph
    casts = []
    renamed = {}
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and init.name.startswith(ONNX_PREFIX):
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            init.CopyFrom(half)
            renamed[init.name] = init.name + "__float32"
            casts.append(helper.make_node("Cast", [init.name], [renamed[init.name]], to=onnx.TensorProto.FLOAT))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def export_onnx(model_path: str | Path, output: str | Path) -> dict:
    """Export a model file (.safetensors or .onnx) to ONNX; returns the metadata written."""
    model, meta = load_model(model_path)
    size = meta["input"]["preprocess"]["size"]
    wrapper = _Exported(model).eval()
    names = list(EXPLAINABLE_OUTPUTS) if hasattr(model, "features_with_penultimate") else ["logits"]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter keeps BatchNorm as its own node with state-dict-named inputs (the dynamo
    # exporter folds it into the convolutions), which is what lets PyTorch load the weights back.
    # TF-"SAME" padding (EfficientNet-Lite) reads the input size as a number: the graph is for the model's
    # one input size, which is what the runtime always feeds it, so the tracer's warning says nothing new.
    with warnings.catch_warnings(), written_atomically(output) as tmp:
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(wrapper, (torch.zeros(1, meta["input"]["channels"], size, size),), str(tmp),
                          input_names=["image"], output_names=names, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *names]})
        onnx_model = onnx.load(str(tmp))
        _name_every_weight(onnx_model)
        _weights_to_float16(onnx_model)
        meta = {**meta, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "weights_dtype": "float16",
                "exported_by": __version__}
        del onnx_model.metadata_props[:]
        onnx_model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
        onnx.checker.check_model(onnx_model)
        onnx.save(onnx_model, str(tmp))
    return meta
