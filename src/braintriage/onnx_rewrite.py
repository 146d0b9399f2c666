"""Rewrites of an ONNX graph that ONNX Runtime does not make itself, each giving the same numbers faster.

EfficientNet-Lite pads its strided convolutions TensorFlow's way, one pixel more at the bottom and right
(models.SamePad), and PyTorch exports that as a separate Pad before the Conv. ONNX Runtime (1.32) leaves those
Pads in as they are exported (why its own Pad fusion passes them by was not looked into), and each one also
forces its blocked-memory layout (NCHWc) out and back in around it:
on the 2-core CPU of benchmarks/inference.py the five Pads and their layout changes took a fifth of a
forward pass. A Conv takes its own padding, top-left and bottom-right apart, so a zero Pad folds into it.
"""

from __future__ import annotations

from pathlib import Path

CONVOLUTIONS = ("Conv", "FusedConv")  # FusedConv: ONNX Runtime's Conv + activation, with Conv's attributes


def _attribute(node, name: str):
    return next((a for a in node.attribute if a.name == name), None)


def _zero_padding(node, constants: dict) -> list[int] | None:
    """The [top, left, bottom, right] padding of a Pad node that pads the two spatial axes of an NCHW tensor
    with zeros, by constant amounts; None for any other Pad."""
    import numpy as np
    from onnx import numpy_helper

    mode = _attribute(node, "mode")
    if (mode is not None and mode.s != b"constant") or len(node.input) < 2 or node.input[1] not in constants:
        return None
    if len(node.input) > 3 and node.input[3]:  # explicit axes (opset 18): not the plain 4-D form
        return None
    if len(node.input) > 2 and node.input[2]:
        value = constants.get(node.input[2])
        if value is None or np.any(numpy_helper.to_array(value) != 0):
            return None
    pads = numpy_helper.to_array(constants[node.input[1]]).tolist()
    if len(pads) != 8 or any(pads[k] for k in (0, 1, 4, 5)) or min(pads) < 0:  # N and C untouched, no crop
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def fold_padding(model) -> int:
    """Fold every zero Pad whose only reader is a convolution into that convolution's `pads`, in place;
    returns how many were folded. Initializers left unread are dropped."""
    from onnx import helper

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    folded = []
    for node in graph.node:
        if node.op_type != "Pad" or node.output[0] in graph_outputs:
            continue
        padding = _zero_padding(node, constants)
        (conv, *others) = readers.get(node.output[0], [None])
        if padding is None or others or conv is None or conv.op_type not in CONVOLUTIONS:
            continue
        auto_pad = _attribute(conv, "auto_pad")
        if conv.input[0] != node.output[0] or (auto_pad is not None and auto_pad.s not in (b"", b"NOTSET")):
            continue
        own = _attribute(conv, "pads")
        own_pads = list(own.ints) if own is not None else [0, 0, 0, 0]
        if own is not None:
            conv.attribute.remove(own)
        conv.attribute.append(helper.make_attribute("pads", [a + b for a, b in zip(own_pads, padding)]))
        conv.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    kept = {name for node in graph.node for name in node.input} | graph_outputs | {i.name for i in graph.input}
    for init in [i for i in graph.initializer if i.name not in kept]:
        graph.initializer.remove(init)
    return len(folded)


def fold_padding_in_file(path: str | Path) -> int:
    """`fold_padding` on a model file, written back in place (only when something was folded)."""
    import onnx

    model = onnx.load(str(path))
    folded = fold_padding(model)
    if folded:
        onnx.save(model, str(path))
    return folded
