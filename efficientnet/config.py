"""Block tables and variant tables: the data every EfficientNet is built from.

Blocks are written as the block strings of the official TensorFlow releases
(``r{repeats}_k{kernel}_s{stride}_e{expand}_i{in}_o{out}[_se{ratio}][_c1][_noskip]``,
``c1`` marking a Fused-MBConv stage) and decoded once into immutable
:class:`BlockArgs`. A :class:`Variant` holds the scaling coefficients and the
few per-family switches; :func:`efficientnet.builder.build_efficientnet` turns
one into a Keras model. Nothing here is mutable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "BlockArgs",
    "Variant",
    "decode_block_string",
    "encode_block_string",
    "DEFAULT_BLOCKS_ARGS",
    "LITE_BLOCKS_ARGS",
    "V2_BLOCKS_ARGS",
    "VARIANTS",
    "get_variant",
    "round_filters",
    "round_repeats",
    "scaled_blocks",
    "residual_connection",
    "XceptionBlock",
    "XCEPTION_BLOCKS",
    "FAMILIES",
    "model_family",
    "normalise_name",
]


class BlockArgs(NamedTuple):
    """One stage of blocks, before width/depth scaling.

    Field names follow ``keras.applications.efficientnet.DEFAULT_BLOCKS_ARGS``.
    """

    kernel_size: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int
    se_ratio: float = 0.0
    id_skip: bool = True
    fused: bool = False

    @property
    def has_residual(self) -> bool:
        """Whether the block adds its input to its output (see :func:`residual_connection`)."""
        return residual_connection(self.id_skip, self.strides, self.filters_in, self.filters_out)


def residual_connection(id_skip: bool, strides: int, filters_in: int, filters_out: int) -> bool:
    """The one residual rule of MBConv and Fused-MBConv: an identity skip when shapes allow it."""
    return bool(id_skip) and strides == 1 and filters_in == filters_out


_BLOCK_RE = re.compile(r"^(?P<key>[a-z]+)(?P<value>[0-9.]*)$")


def decode_block_string(block_string: str) -> BlockArgs:
    """Decodes an official block string such as ``'r1_k3_s11_e1_i32_o16_se0.25'``."""
    fields: dict[str, str] = {}
    for part in block_string.split("_"):
        match = _BLOCK_RE.match(part)
        if not match:
            raise ValueError(f"Cannot parse block string {block_string!r} at {part!r}.")
        fields[match["key"]] = match["value"]
    try:
        strides = fields["s"]
        return BlockArgs(
            kernel_size=int(fields["k"]),
            repeats=int(fields["r"]),
            filters_in=int(fields["i"]),
            filters_out=int(fields["o"]),
            expand_ratio=int(fields["e"]),
            # TF strings write 2-D strides as "s22"/"s11"; V2's as "s2"/"s1".
            strides=int(strides[0]),
            se_ratio=float(fields.get("se", 0) or 0),
            id_skip="noskip" not in fields,
            fused=fields.get("c", "0") == "1",
        )
    except KeyError as exc:
        raise ValueError(f"Block string {block_string!r} lacks field {exc.args[0]!r}.") from None


def encode_block_string(block: BlockArgs) -> str:
    """The inverse of :func:`decode_block_string`."""
    text = (
        f"r{block.repeats}_k{block.kernel_size}_s{block.strides}_e{block.expand_ratio}"
        f"_i{block.filters_in}_o{block.filters_out}"
    )
    if block.se_ratio:
        text += f"_se{block.se_ratio:g}"
    if block.fused:
        text += "_c1"
    if not block.id_skip:
        text += "_noskip"
    return text


def _decode(strings: Sequence[str]) -> tuple[BlockArgs, ...]:
    return tuple(decode_block_string(s) for s in strings)


# EfficientNet V1 (tensorflow/tpu efficientnet_builder.py, keras.applications).
DEFAULT_BLOCKS_ARGS: tuple[BlockArgs, ...] = _decode(
    (
        "r1_k3_s1_e1_i32_o16_se0.25",
        "r2_k3_s2_e6_i16_o24_se0.25",
        "r2_k5_s2_e6_i24_o40_se0.25",
        "r3_k3_s2_e6_i40_o80_se0.25",
        "r3_k5_s1_e6_i80_o112_se0.25",
        "r4_k5_s2_e6_i112_o192_se0.25",
        "r1_k3_s1_e6_i192_o320_se0.25",
    )
)

# EfficientNet-Lite: the V1 table without squeeze-and-excitation.
LITE_BLOCKS_ARGS: tuple[BlockArgs, ...] = tuple(b._replace(se_ratio=0.0) for b in DEFAULT_BLOCKS_ARGS)

_V2_BASE = (
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
)

# EfficientNetV2 as released in google/automl effnetv2_configs.py.
V2_BLOCKS_ARGS: Mapping[str, tuple[BlockArgs, ...]] = MappingProxyType(
    {
        "base": _decode(_V2_BASE),
        "s": _decode(
            (
                "r2_k3_s1_e1_i24_o24_c1",
                "r4_k3_s2_e4_i24_o48_c1",
                "r4_k3_s2_e4_i48_o64_c1",
                "r6_k3_s2_e4_i64_o128_se0.25",
                "r9_k3_s1_e6_i128_o160_se0.25",
                "r15_k3_s2_e6_i160_o256_se0.25",
            )
        ),
        "m": _decode(
            (
                "r3_k3_s1_e1_i24_o24_c1",
                "r5_k3_s2_e4_i24_o48_c1",
                "r5_k3_s2_e4_i48_o80_c1",
                "r7_k3_s2_e4_i80_o160_se0.25",
                "r14_k3_s1_e6_i160_o176_se0.25",
                "r18_k3_s2_e6_i176_o304_se0.25",
                "r5_k3_s1_e6_i304_o512_se0.25",
            )
        ),
        "l": _decode(
            (
                "r4_k3_s1_e1_i32_o32_c1",
                "r7_k3_s2_e4_i32_o64_c1",
                "r7_k3_s2_e4_i64_o96_c1",
                "r10_k3_s2_e4_i96_o192_se0.25",
                "r19_k3_s1_e6_i192_o224_se0.25",
                "r25_k3_s2_e6_i224_o384_se0.25",
                "r7_k3_s1_e6_i384_o640_se0.25",
            )
        ),
        "xl": _decode(
            (
                "r4_k3_s1_e1_i32_o32_c1",
                "r8_k3_s2_e4_i32_o64_c1",
                "r8_k3_s2_e4_i64_o96_c1",
                "r16_k3_s2_e4_i96_o192_se0.25",
                "r24_k3_s1_e6_i192_o256_se0.25",
                "r32_k3_s2_e6_i256_o512_se0.25",
                "r8_k3_s1_e6_i512_o640_se0.25",
            )
        ),
    }
)


@dataclass(frozen=True)
class Variant:
    """Everything that distinguishes one EfficientNet from another.

    Attributes:
        name: the model name, as keras.applications spells it (``efficientnetb0``).
        family: ``"v1"``, ``"lite"`` or ``"v2"``.
        width, depth: the compound-scaling coefficients.
        default_size: the input size the weights were evaluated at (keras.applications'
            ``default_size``; ``resolution`` is an alias).
        dropout: dropout before the classifier.
        blocks: the unscaled block table.
        activation: the activation of every conv (``swish`` or ``relu6``).
        stem_filters, head_filters: before scaling.
        fix_stem_head: Lite keeps the stem (32) and head (1280) unscaled.
        fix_first_last_repeats: Lite keeps the first and last stage's repeats.
        ten_percent_rule: V1's ``round_filters`` adds a divisor when rounding loses >10%.
        bn_momentum, bn_epsilon: Keras BatchNormalization arguments.
        preprocessing: the in-model normalisation the variant's own weights expect
            (a key of :data:`efficientnet.preprocessing.MODES`).
        official_name: the TensorFlow release's name (``efficientnet-b0``).
    """

    name: str
    family: str
    width: float
    depth: float
    default_size: int
    dropout: float
    blocks: tuple[BlockArgs, ...]
    activation: str = "swish"
    stem_filters: int = 32
    head_filters: int = 1280
    fix_stem_head: bool = False
    fix_first_last_repeats: bool = False
    ten_percent_rule: bool = True
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    drop_connect_rate: float = 0.2
    preprocessing: str = "torch"
    official_name: str = field(default="")

    def round_filters(self, filters: int, *, fixed: bool = False) -> int:
        """``filters`` scaled by this variant's width (unless ``fixed``)."""
        if fixed:
            return filters
        return round_filters(filters, self.width, ten_percent_rule=self.ten_percent_rule)

    def round_repeats(self, repeats: int, stage: int) -> int:
        """``repeats`` of stage number ``stage`` scaled by this variant's depth."""
        last = len(self.blocks) - 1
        if self.fix_first_last_repeats and stage in (0, last):
            return repeats
        return round_repeats(repeats, self.depth)

    @property
    def resolution(self) -> int:
        """The former name of :attr:`default_size`."""
        return self.default_size

    @property
    def num_blocks(self) -> int:
        """Blocks after depth scaling: the denominator of the drop-connect schedule."""
        return sum(self.round_repeats(b.repeats, i) for i, b in enumerate(self.blocks))


def round_filters(filters: float, width: float, divisor: int = 8, *, ten_percent_rule: bool = True) -> int:
    """Scales a channel count by ``width`` and rounds to a multiple of ``divisor``.

    With ``ten_percent_rule`` (V1, Lite), a divisor is added back when rounding
    loses more than 10% of the scaled count; V2 has no such rule.
    """
    scaled = filters * width
    new_filters = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if ten_percent_rule and new_filters < 0.9 * scaled:
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats: int, depth: float) -> int:
    """Scales a stage's repeats by ``depth``, rounding up."""
    return int(math.ceil(depth * repeats))


def scaled_blocks(variant: Variant) -> list[tuple[str, BlockArgs]]:
    """Every block of ``variant`` after scaling, with its keras.applications name prefix.

    The first block of a stage carries the stage's stride and input width; the
    others have stride 1 and equal input and output widths.
    """
    result = []
    for i, stage in enumerate(variant.blocks):
        filters_in = variant.round_filters(stage.filters_in)
        filters_out = variant.round_filters(stage.filters_out)
        for j in range(variant.round_repeats(stage.repeats, i)):
            block = stage._replace(
                repeats=1,
                filters_in=filters_in if j == 0 else filters_out,
                filters_out=filters_out,
                strides=stage.strides if j == 0 else 1,
            )
            result.append((f"block{i + 1}{_block_letter(j)}_", block))
    return result


def _block_letter(j: int) -> str:
    """``a``..``z``, then ``aa``... for the very deep stages of L2 and XL."""
    letters = ""
    j += 1
    while j:
        j, rem = divmod(j - 1, 26)
        letters = chr(97 + rem) + letters
    return letters


def _v1(name: str, width: float, depth: float, resolution: int, dropout: float) -> Variant:
    return Variant(
        name=f"efficientnet{name}",
        family="v1",
        width=width,
        depth=depth,
        default_size=resolution,
        dropout=dropout,
        blocks=DEFAULT_BLOCKS_ARGS,
        official_name=f"efficientnet-{name}",
    )


def _lite(n: int, width: float, depth: float, resolution: int, dropout: float) -> Variant:
    return Variant(
        name=f"efficientnetlite{n}",
        family="lite",
        width=width,
        depth=depth,
        default_size=resolution,
        dropout=dropout,
        blocks=LITE_BLOCKS_ARGS,
        activation="relu6",
        fix_stem_head=True,
        fix_first_last_repeats=True,
        preprocessing="lite",
        official_name=f"efficientnet-lite{n}",
    )


def _v2(name: str, table: str, width: float, depth: float, resolution: int, dropout: float) -> Variant:
    return Variant(
        name=f"efficientnetv2-{name}",
        family="v2",
        width=width,
        depth=depth,
        default_size=resolution,
        dropout=dropout,
        blocks=V2_BLOCKS_ARGS[table],
        stem_filters=V2_BLOCKS_ARGS[table][0].filters_in,
        ten_percent_rule=False,
        bn_momentum=0.9,
        preprocessing="torch" if name.startswith("b") else "v2",
        official_name=f"efficientnetv2-{name}",
    )


VARIANTS: Mapping[str, Variant] = MappingProxyType(
    {
        v.name: v
        for v in (
            _v1("b0", 1.0, 1.0, 224, 0.2),
            _v1("b1", 1.0, 1.1, 240, 0.2),
            _v1("b2", 1.1, 1.2, 260, 0.3),
            _v1("b3", 1.2, 1.4, 300, 0.3),
            _v1("b4", 1.4, 1.8, 380, 0.4),
            _v1("b5", 1.6, 2.2, 456, 0.4),
            _v1("b6", 1.8, 2.6, 528, 0.5),
            _v1("b7", 2.0, 3.1, 600, 0.5),
            _v1("b8", 2.2, 3.6, 672, 0.5),
            _v1("l2", 4.3, 5.3, 800, 0.5),
            _lite(0, 1.0, 1.0, 224, 0.2),
            _lite(1, 1.0, 1.1, 240, 0.2),
            _lite(2, 1.1, 1.2, 260, 0.3),
            _lite(3, 1.2, 1.4, 280, 0.3),
            _lite(4, 1.4, 1.8, 300, 0.3),
            _v2("b0", "base", 1.0, 1.0, 224, 0.2),
            _v2("b1", "base", 1.0, 1.1, 240, 0.2),
            _v2("b2", "base", 1.1, 1.2, 260, 0.3),
            _v2("b3", "base", 1.2, 1.4, 300, 0.3),
            _v2("s", "s", 1.0, 1.0, 384, 0.2),
            _v2("m", "m", 1.0, 1.0, 480, 0.3),
            _v2("l", "l", 1.0, 1.0, 480, 0.4),
            _v2("xl", "xl", 1.0, 1.0, 512, 0.4),
        )
    }
)


def normalise_name(name: str) -> str:
    """``"EfficientNet-B3"`` → ``"efficientnetb3"``: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def get_variant(name: str) -> Variant:
    """Looks up a variant by any common spelling (``B3``, ``efficientnet-b3``, ``efficientnetv2_s``)."""
    key = normalise_name(name)
    for variant in VARIANTS.values():
        canonical = normalise_name(variant.name)
        if key in (canonical, canonical.replace("efficientnet", "")):
            return variant
    known = ", ".join(VARIANTS)
    raise ValueError(f"Unknown EfficientNet variant {name!r}. Known variants: {known}.")


# DeepLab's aligned Xception (tensorflow/models research/deeplab/core/xception.py).
class XceptionBlock(NamedTuple):
    """One DeepLab Xception block: ``units`` identical units of three separable convs."""

    flow: str  # entry_flow, middle_flow, exit_flow
    index: int  # block number inside the flow
    depths: tuple[int, int, int]
    skip: str  # "conv", "sum" or "none"
    stride: int
    units: int = 1
    activation_in_separable: bool = False  # exit flow block 2: BN+ReLU after every conv


def _entry(*specs: tuple[int, int]) -> list[XceptionBlock]:
    return [XceptionBlock("entry_flow", i + 1, (d, d, d), "conv", s) for i, (d, s) in enumerate(specs)]


def _table(entry: list[XceptionBlock], middle_units: int) -> tuple[XceptionBlock, ...]:
    return (
        *entry,
        XceptionBlock("middle_flow", 1, (728, 728, 728), "sum", 1, units=middle_units),
        XceptionBlock("exit_flow", 1, (728, 1024, 1024), "conv", 2),
        XceptionBlock("exit_flow", 2, (1536, 1536, 2048), "none", 1, activation_in_separable=True),
    )


XCEPTION_BLOCKS: Mapping[str, tuple[XceptionBlock, ...]] = MappingProxyType(
    {
        "xception41": _table(_entry((128, 2), (256, 2), (728, 2)), 8),
        "xception65": _table(_entry((128, 2), (256, 2), (728, 2)), 16),
        "xception71": _table(_entry((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)), 16),
    }
)


FAMILIES = ("v1", "lite", "v2", "xception")


def model_family(name: str) -> str:
    """The family of a model name (``"v1"``, ``"lite"``, ``"v2"`` or ``"xception"``), any common spelling.

    Raises a ValueError naming every known model for an unknown name.
    """
    key = normalise_name(name)
    if key in XCEPTION_BLOCKS:
        return "xception"
    try:
        return get_variant(name).family
    except ValueError:
        known = ", ".join([*VARIANTS, *XCEPTION_BLOCKS])
        raise ValueError(f"Unknown EfficientNet variant or model {name!r}. Known models: {known}.") from None
