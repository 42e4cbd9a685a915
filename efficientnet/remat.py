"""Per-block rematerialisation: keep only block inputs for the backward pass.

Keras' ``RematScope`` wraps layers one at a time, which saves little in a
convolutional network: every layer's input is the previous layer's output and
stays alive anyway. The memory goes on the tensors *inside* a block (an MBConv
block expands its input six-fold and keeps four such tensors for the backward
pass). :class:`RematModel` is a functional model that, in training, runs each
block (``block2a_…``, ``entry_flow_block1_unit1_…``) under ``keras.remat``, so
only the tensors that enter a block are kept and the block is recomputed in the
backward pass — the same trade as ``torch.utils.checkpoint`` per block in timm.

The layers, their names and their weights are those of the plain model, so
weights, ``.keras`` files and features carry over. A block runs inside a
``keras.StatelessScope`` with every variable passed in explicitly, so that

- the recomputation sees the dropout seeds of the forward pass (the same
  drop-connect masks, hence exact gradients),
- BatchNormalization's moving statistics are updated once per step, not again
  when the block is recomputed,

on TensorFlow (``tf.recompute_grad``), JAX (``jax.checkpoint``) and PyTorch
(``torch.utils.checkpoint``) alike. Inference (``training`` false) runs the
plain graph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
from keras import tree

__all__ = ["BLOCK_PATTERN", "RematModel", "block_of", "rematerialised"]

# The layers of one block share a prefix: ``block2a_`` (V1, Lite, V2) or
# ``middle_flow_block1_unit3_`` (aligned Xception).
BLOCK_PATTERN = re.compile(r"^(block\d+[a-z]+|(?:entry|middle|exit)_flow_block\d+_unit\d+)_")


def block_of(layer_name: str) -> str | None:
    """The block a layer belongs to (``"block2a"``), or ``None`` for the stem, head and the rest."""
    match = BLOCK_PATTERN.match(layer_name)
    return match.group(1) if match else None


class _Stage:
    """A run of consecutive graph nodes: a sub-model over the same layers, and whether to remat it.

    Not a Layer and not a list, so that Keras does not track the sub-models as
    extra layers of the model (they own no weights of their own).
    """

    def __init__(self, model: keras.Model, inputs: Sequence, outputs: Sequence, remat: bool):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.model = model
        self.remat = remat
        self.variables = list(model.trainable_variables) + list(model.non_trainable_variables)


def _ordered_nodes(model: keras.Model) -> list:
    """The graph's operation nodes in execution order (as ``Functional`` runs them)."""
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        nodes += [n for n in model._nodes_by_depth[depth] if n.operation is not None and not n.is_input]
    return nodes


def _stages(model: keras.Model) -> list[_Stage]:
    groups: list[tuple[str | None, list]] = []
    for node in _ordered_nodes(model):
        key = block_of(node.operation.name)
        if groups and groups[-1][0] == key:
            groups[-1][1].append(node)
        else:
            groups.append((key, [node]))
    seen = [key for key, _ in groups if key is not None]
    if len(seen) != len(set(seen)):
        raise ValueError(
            f"{model.name}: the layers of a block are not consecutive in the graph, so blocks cannot be "
            "rematerialised one at a time; build the model with remat=False."
        )
    consumers: dict[int, set[int]] = {}
    for index, (_, nodes) in enumerate(groups):
        for node in nodes:
            for tensor in node.input_tensors:
                consumers.setdefault(id(tensor), set()).add(index)
    model_outputs = {id(t) for t in model.outputs}
    stages = []
    for index, (key, nodes) in enumerate(groups):
        produced = {id(t) for node in nodes for t in node.outputs}
        inputs, outputs, seen_ids = [], [], set()
        for node in nodes:
            for tensor in node.input_tensors:
                if id(tensor) not in produced and id(tensor) not in seen_ids:
                    seen_ids.add(id(tensor))
                    inputs.append(tensor)
            for tensor in node.outputs:
                if id(tensor) in model_outputs or consumers.get(id(tensor), set()) - {index}:
                    outputs.append(tensor)
        sub = keras.Model(inputs, outputs, name=f"{model.name}_{key or 'stage'}_{index}")
        stages.append(_Stage(sub, inputs, outputs, remat=key is not None))
    return stages


def _run(stage: _Stage, training, args: Sequence, values: Sequence):
    """Runs a stage on ``args`` with its variables bound to ``values``; returns outputs and new variable values."""
    with keras.StatelessScope(state_mapping=list(zip(stage.variables, values))) as scope:
        outputs = stage.model(list(args) if len(args) > 1 else args[0], training=training)
    outputs = tree.flatten(outputs)
    new_values = [scope.get_current_value(v) for v in stage.variables]
    return outputs, new_values


@keras.saving.register_keras_serializable(package="efficientnet")
class RematModel(keras.Model):
    """A functional model that recomputes each block in the backward pass (see the module docstring).

    Built like ``keras.Model(inputs, outputs)``; the EfficientNet and Xception
    constructors return one with ``remat=True``.
    """

    def __init__(self, inputs, outputs, name: str | None = None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._remat_plan = _Plan(_stages(self))

    def call(self, inputs, training=None, mask=None):
        if not training:
            return super().call(inputs, training=training, mask=mask)
        values = {id(t): v for t, v in zip(self.inputs, tree.flatten(inputs))}
        for stage in self._remat_plan.stages:
            args = [values[id(t)] for t in stage.inputs]
            if stage.remat:
                outputs = self._remat_stage(stage, training, args)
            else:
                outputs = tree.flatten(stage.model(args if len(args) > 1 else args[0], training=training))
            values.update({id(t): v for t, v in zip(stage.outputs, outputs)})
        return tree.pack_sequence_as(self._outputs_struct, [values[id(t)] for t in self.outputs])

    @staticmethod
    def _remat_stage(stage: _Stage, training, args: list):
        count = len(args)
        # Non-trainable values are copied: the forward pass's saved inputs must not change when the
        # statistics are assigned below (PyTorch checks, and assigns in place).
        values = [
            keras.ops.convert_to_tensor(v.value) if v.trainable else keras.ops.copy(v.value) for v in stage.variables
        ]

        def block(*flat):
            outputs, new_values = _run(stage, training, flat[:count], flat[count:])
            return (*outputs, *new_values)

        flat = keras.remat(block)(*args, *values)
        outputs = list(flat[: len(stage.outputs)])
        for variable, new in zip(stage.variables, flat[len(stage.outputs) :]):
            if not variable.trainable:  # BN statistics and dropout seeds advance once per step
                variable.assign(new)
        return outputs


def rematerialised(model: keras.Model) -> RematModel:
    """``model`` (functional) as a :class:`RematModel` over the same layers; ``feature_info`` is kept."""
    remat = RematModel(model.inputs, model.outputs, name=model.name)
    if hasattr(model, "feature_info"):
        remat.feature_info = model.feature_info
    return remat


class _Plan:
    """Holds the stages out of Keras' attribute tracking."""

    def __init__(self, stages: list[_Stage]):
        self.stages = stages
