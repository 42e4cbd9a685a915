"""Block tables, scaling rules and variant lookup."""

import pytest

import efficientnet
from efficientnet import config
from efficientnet.config import BlockArgs, decode_block_string, encode_block_string, get_variant, round_filters


def test_block_strings_round_trip():
    for table in [config.DEFAULT_BLOCKS_ARGS, *config.V2_BLOCKS_ARGS.values()]:
        for block in table:
            assert decode_block_string(encode_block_string(block)) == block


def test_decodes_official_tf_strings():
    block = decode_block_string("r1_k3_s11_e1_i32_o16_se0.25")
    assert block == BlockArgs(3, 1, 32, 16, 1, 1, 0.25, True, False)
    assert decode_block_string("r2_k3_s2_e4_i24_o48_c1").fused


@pytest.mark.parametrize("bad", ["r1_k3", "x1_k3_s1_e1_i3_o3", "r1_k3_s1_e1_i3_o3_??"])
def test_bad_block_string(bad):
    with pytest.raises(ValueError, match="(?i)block string"):
        decode_block_string(bad)


def test_round_filters_ten_percent_rule():
    # 1.1 * 16 = 17.6 -> 16 keeps 91%; 1.4 * 16 = 22.4 -> 24; and the +8 case:
    assert round_filters(16, 1.1) == 16
    assert round_filters(32, 1.4) == 48
    assert round_filters(32, 4.3) == 136
    # 0.6 * 16 = 9.6 rounds to 8 (83%): V1 adds a divisor, V2 keeps 8.
    assert round_filters(16, 0.6, ten_percent_rule=True) == 16
    assert round_filters(16, 0.6, ten_percent_rule=False) == 8


def test_variant_lookup_spellings():
    assert get_variant("B3").name == "efficientnetb3"
    assert get_variant("efficientnet-b3") is get_variant("efficientnetb3")
    assert get_variant("efficientnetv2-s").family == "v2"
    assert get_variant("efficientnet-lite0").activation == "relu6"
    with pytest.raises(ValueError, match="Unknown EfficientNet variant"):
        get_variant("b9")


def test_tables_are_immutable():
    with pytest.raises(TypeError):
        config.VARIANTS["x"] = None
    with pytest.raises(AttributeError):
        config.VARIANTS["efficientnetb0"].width = 2.0


def test_scaling_table_values():
    expected = {
        "efficientnetb8": (2.2, 3.6, 672, 0.5),
        "efficientnetl2": (4.3, 5.3, 800, 0.5),
        "efficientnetlite0": (1.0, 1.0, 224, 0.2),
        "efficientnetlite4": (1.4, 1.8, 300, 0.3),
    }
    for name, values in expected.items():
        v = config.VARIANTS[name]
        assert (v.width, v.depth, v.resolution, v.dropout) == values


def test_lite_keeps_first_and_last_repeats():
    lite4 = get_variant("lite4")
    blocks = config.scaled_blocks(lite4)
    stages = [prefix[5] for prefix, _ in blocks]
    assert stages.count("1") == 1 and stages.count("7") == 1
    assert stages.count("2") == 4  # ceil(2 * 1.8)


def test_default_size_is_the_one_name_and_resolution_its_alias():
    variant = config.get_variant("b3")
    assert variant.default_size == variant.resolution == 300
    model = efficientnet.EfficientNet("b0", weights=None, default_size=96)
    assert model.input_shape == (None, 96, 96, 3)
