"""Ensembles: several trained networks in one model file, their class probabilities averaged.

    braintriage ensemble A.onnx B.onnx --data ../shared/data/.../Training --output model.onnx

Members are exported (.onnx) four-class models trained on the same data with the same validation split (the same
seed and fraction), so the ensemble can be validated, and its threshold set, on images none of them trained on.
Each member reads the scan with its own preprocessing: a member trained on head crops gets head crops. The graph
has one input per member, `image` for the first and `memberK/image` for member K, and returns:

  logits                log of the mean of the members' softmax probabilities, so the runtime's softmax gives
                        back that mean exactly;
  features, penultimate_features
                        the first member's, for the heat map and the out-of-distribution guard (whose
                        parameters the first member brings along, fitted on its own features).

The first member is the primary one: its input settings are the file's `input`, its training record the file's
`training`; `ensemble.members` lists every member's input, preprocessing, training and validation. Members after
the first store their weights as int8 with one scale per output channel (dequantised inside the graph), so two
half-width ResNet-18s fit the 10 MB budget; their probabilities move by about 1e-3 (measured by the tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from braintriage.atomic_files import written_atomically
from braintriage.modelfile import METADATA_KEY, ModelFileError, member_prefix, read_metadata

COMBINE = "mean of the members' softmax probabilities"


def _rename(graph, old: str, new: str) -> None:
    """Rename one value (a node output and every use of it) inside a graph."""
    for node in graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
        node.input[:] = [new if n == old else n for n in node.input]
    for out in graph.output:
        if out.name == old:
            out.name = new


def _weights_to_int8(graph) -> None:
    """Replace each float16 weight of two or more dimensions (convolutions, the linear head), read through a
    Cast to float32, by int8 values with a symmetric scale per output channel, read through a DequantizeLinear."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        init = inits.get(node.input[0]) if node.op_type == "Cast" else None
        if init is None or init.data_type != onnx.TensorProto.FLOAT16 or len(init.dims) < 2:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))).clip(-127, 127).astype(np.int8)
        init.CopyFrom(numpy_helper.from_array(q, init.name))
        graph.initializer.extend([numpy_helper.from_array(scale, init.name + "__scale"),
                                  numpy_helper.from_array(np.zeros(len(w), np.int8), init.name + "__zero_point")])
        nodes.append(helper.make_node("DequantizeLinear", [init.name, init.name + "__scale",
                                                           init.name + "__zero_point"], list(node.output), axis=0))
    del graph.node[:]
    graph.node.extend(nodes)


def _check_members(paths: list[Path]) -> list[dict]:
    metas = [read_metadata(p) for p in paths]
    if len(paths) < 2:
        raise ModelFileError("an ensemble needs at least two members")
    for p, m in zip(paths, metas):
        if p.suffix != ".onnx":
            raise ModelFileError(f"{p}: ensemble members are exported models (.onnx); run `braintriage export` first")
        if "ensemble" in m:
            raise ModelFileError(f"{p}: is an ensemble already; list its members instead")
        if m["output"] != "softmax" or m["class_names"] != metas[0]["class_names"]:
            raise ModelFileError(f"{p}: members must be tumor-type models with the same classes")
        if m.get("test_time_augmentation"):
            raise ModelFileError(f"{p}: a member with test-time augmentation is not supported in an ensemble")
    first = metas[0]["training"]
    for p, m in zip(paths[1:], metas[1:]):
        t = m["training"]
        same = (t["data_fingerprint"] == first["data_fingerprint"]
                and t["config"]["seed"] == first["config"]["seed"]
                and t["config"]["val_fraction"] == first["config"]["val_fraction"])
        if not same:
            raise ModelFileError(f"{p}: trained on other data or with another validation split than {paths[0]}; "
                                 "an ensemble is validated on images none of its members trained on, so they must "
                                 "share the data, the seed and the validation fraction")
    return metas


def assemble(paths: list[str | Path], output: str | Path) -> dict:
    """Write the ensemble of these exported members to `output` (threshold and validation still the first
    member's: `build` sets them); returns its metadata."""
    import onnx
    from onnx import compose, helper, numpy_helper

    paths = [Path(p) for p in paths]
    metas = _check_members(paths)
    graphs, inputs = [], []
    for k, path in enumerate(paths):
        model = onnx.load(str(path))
        if k == 0:
            opset = model.opset_import
        else:
            model = compose.add_prefix(model, member_prefix(k))
            _weights_to_int8(model.graph)
        logits = next(o.name for o in model.graph.output if o.name.endswith("logits"))
        _rename(model.graph, logits, f"{member_prefix(k)}logits_out")
        graphs.append(model.graph)
        inputs.append(model.graph.input[0].name)
    first = graphs[0]
    combine = [numpy_helper.from_array(np.array(1.0 / len(paths), np.float32), "ensemble/weight")]
    nodes, probs = [], []
    for k, m in enumerate(metas):
        scaled = f"{member_prefix(k)}logits_out"
        temperature = float(m.get("temperature", 1.0))
        if temperature != 1.0:
            combine.append(numpy_helper.from_array(np.array(temperature, np.float32), f"ensemble/t{k}"))
            nodes.append(helper.make_node("Div", [scaled, f"ensemble/t{k}"], [f"ensemble/scaled{k}"]))
            scaled = f"ensemble/scaled{k}"
        nodes.append(helper.make_node("Softmax", [scaled], [f"ensemble/p{k}"], axis=1))
        probs.append(f"ensemble/p{k}")
    nodes += [helper.make_node("Sum", probs, ["ensemble/sum"]),
              helper.make_node("Mul", ["ensemble/sum", "ensemble/weight"], ["ensemble/mean"]),
              helper.make_node("Log", ["ensemble/mean"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", len(metas[0]["class_names"])]),
               *[o for o in first.output if not o.name.endswith("logits_out")]]
    graph = helper.make_graph(
        [n for g in graphs for n in g.node] + nodes, "braintriage-ensemble",
        [i for g in graphs for i in g.input], outputs,
        initializer=[i for g in graphs for i in g.initializer] + combine)
    model = helper.make_model(graph, opset_imports=opset)
    members = [{"file": path.name, "input": name, "architecture": m["architecture"],
                "weights": "float16" if k == 0 else "int8, one scale per output channel",
                "preprocess": m["input"]["preprocess"], "normalization": m["input"]["normalization"],
                "training": m["training"], "validation_metrics": m.get("validation_metrics")}
               for k, (path, name, m) in enumerate(zip(paths, inputs, metas))]
    meta = {**metas[0], "temperature": 1.0, "weights_dtype": "float16 and int8 (see ensemble.members)",
            "ensemble": {"combine": COMBINE, "members": members}}
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.checker.check_model(model)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(output) as tmp:
        onnx.save(model, str(tmp))
    return meta


def build(paths: list[str | Path], data: list[str | Path], output: str | Path, log=print) -> dict:
    """Assemble the ensemble, then score it on the members' shared validation split and set its threshold by the
    first member's rule (the highest threshold with validation sensitivity >= its target, capped at 0.5).
    `data`: the training images (a folder, decoded once per member preprocessing) or one decoded cache per
    member, in member order. Returns the metadata written."""
    from braintriage.cache import DecodedSet, cached_decode
    from braintriage.datasets import load_dataset
    from braintriage.inference import Predictor
    from braintriage.metrics import binary_metrics, threshold_for_sensitivity, type_log_loss
    from braintriage.splits import model_validation_split

    meta = assemble(paths, output)
    predictor = Predictor(output)
    if len(data) == 1 and not str(data[0]).endswith(".npz"):
        dataset = load_dataset(data[0], split="training")
        decoded = [cached_decode(dataset, config, log=log) for config in predictor.input_preprocess]
    elif len(data) == len(paths):
        decoded = [DecodedSet.load(d) for d in data]
        for d, config in zip(decoded, predictor.input_preprocess):
            if d.preprocess != config:
                raise ValueError(f"a cache was preprocessed as {d.preprocess}, its member needs {config}")
    else:
        raise ValueError(f"give the training folder, or one decoded cache per member ({len(paths)})")
    val_idx = model_validation_split(meta, decoded[0])
    p, types, _ = predictor.predict_arrays([d.images[val_idx] for d in decoded])
    y, target = decoded[0].tumor[val_idx], decoded[0].tumor_type[val_idx]
    target_sensitivity = meta["training"]["config"].get("target_sensitivity", 0.95)
    threshold = threshold_for_sensitivity(y, p, target_sensitivity)
    metrics = binary_metrics(y, p, threshold)
    metrics["log_loss"] = type_log_loss(types, target)
    metrics["type_accuracy"] = float((types.argmax(1) == target).mean())
    from braintriage.modelfile import update_metadata

    meta = update_metadata(output, output, {
        "threshold": threshold,
        "threshold_rule": f"highest threshold with validation sensitivity >= {target_sensitivity}, capped at 0.5 "
                          f"(the ensemble's own probabilities)",
        "validation_metrics": metrics})
    log(f"saved {output}: {len(paths)} members; validation ({len(y)} images) log loss {metrics['log_loss']:.4f}, "
        f"threshold {threshold:.3f}, sensitivity {metrics['sensitivity']:.3f}, specificity "
        f"{metrics['specificity']:.3f}, type accuracy {metrics['type_accuracy']:.3f}")
    return meta

