"""The published figures of the peer implementations that tests pin, each in one place with its source.

Every figure here was read off a peer (timm, torchvision, MONAI), never computed by archc; a test that pins a
number imports it from here, so that a figure is corrected in one place.
"""

# timm 1.0.31: sum(p.numel() for p in timm.create_model(name).parameters()), 2D, 3 input channels, 1000 classes
# (timm's model cards give them rounded, "Params (M)"); for B0-B7 torchvision's
# EfficientNet_B*_Weights.IMAGENET1K_V1.meta["num_params"] and MONAI's EfficientNetBN agree exactly.
TIMM_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994, "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784, "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
    "efficientnet_b8": 87_413_142, "efficientnet_l2": 480_309_308,
    "efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096, "efficientnet_lite4": 13_006_568,
    "efficientnet_es": 5_438_392, "efficientnet_em": 6_899_496, "efficientnet_el": 10_589_712,
    "tf_efficientnetv2_s": 21_458_488, "tf_efficientnetv2_m": 54_139_356, "tf_efficientnetv2_l": 118_515_272,
    "tf_efficientnetv2_xl": 208_119_808, "efficientnetv2_rw_s": 23_941_296,
    "mobilenetv2_100": 3_504_872, "mobilenetv2_140": 6_108_776,
    "mobilenetv3_large_100": 5_483_032, "mobilenetv3_large_075": 3_993_528, "mobilenetv3_small_100": 2_542_856,
    "mobilenetv3_small_075": 2_041_872, "lcnet_100": 2_953_800, "mobilenetv1_100": 4_231_976,
    "mobilenetv4_conv_small": 3_774_024, "mobilenetv4_conv_medium": 9_715_512, "mobilenetv4_conv_large": 32_590_864,
    "mnasnet_100": 4_383_312, "semnasnet_100": 3_887_038, "fbnetc_100": 5_572_200, "spnasnet_100": 4_421_616,
    "mixnet_s": 4_134_606, "mixnet_m": 5_014_382, "mixnet_l": 7_329_252, "mixnet_xl": 11_896_768,
    "tinynet_a": 6_187_972, "tinynet_b": 3_730_562, "tinynet_c": 2_457_234, "tinynet_d": 2_338_446, "tinynet_e": 2_042_972,
}

# EfficientNet B0-B7 by archc's preset names: the parameters above (torchvision, timm and MONAI agree) and the
# resolution each was released at (the paper, Tan & Le 2019, and torchvision's weights' crop size; timm's own
# pretrained_cfg of efficientnet_b1..b7 differs, as its weights were trained at other sizes).
PRESETS = {f"b{i}": (TIMM_PARAMS[f"efficientnet_b{i}"], size) for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))}

# GMACs of B0-B7 at those resolutions: torchvision's EfficientNet_B*_Weights.IMAGENET1K_V1.meta["_ops"] (its
# "GFLOPS", which count multiply-accumulates) to two digits; B2, whose torchvision weights run at 288, at 260 as
# timm's efficientnet_b2 measures under torch.utils.flop_counter (the paper's "1.0B FLOPs").
GMACS = {"b0": 0.39, "b1": 0.69, "b2": 0.99, "b3": 1.83, "b4": 4.39, "b5": 10.27, "b6": 19.07, "b7": 37.75}

# B0 scaled by integer phi (width 1.1**phi, depth 1.2**phi): MONAI's EfficientNet(b0's block strings,
# width_coefficient=1.1**phi, depth_coefficient=1.2**phi) and timm's _gen_efficientnet(channel_multiplier=1.1**phi,
# depth_multiplier=1.2**phi) both count these (phi 1 is B2's count).
PHI_PARAMS = {1: 9_109_994, 2: 12_255_408, 3: 16_350_296, 4: 25_916_448}

# 3D EfficientNet-B0, 3 input channels, 1000 classes: MONAI's EfficientNetBN("efficientnet-b0", spatial_dims=3).
B0_3D_PARAMS = 5_971_108

# torchvision's weights' meta["num_params"] (the torchvision model docs' table) for networks archc ships under
# torchvision's names (timm's tf_efficientnetv2_s and mobilenetv2_100 agree).
TORCHVISION_PARAMS = {"efficientnet_v2_s": 21_458_488, "efficientnet_v2_m": 54_139_356, "mobilenet_v2": 3_504_872}

# The input size torchvision's weights are evaluated at (EfficientNet_V2_S_Weights.IMAGENET1K_V1.transforms().crop_size).
TORCHVISION_RESOLUTION = {"efficientnet_v2_s": 384}


# EfficientNet (Tan & Le 2019, arXiv:1905.11946v5) Table 3, "Scaling Up MobileNets and ResNet": the FLOPS column
# (multiply-adds, in billions: ResNet-50's 4.1B is torchvision's 4,089,184,256 MACs) of each baseline scaled by depth
# (d), width (w), resolution (r) or compound. The paper states the compound coefficients for MobileNetV1 only.
TABLE3_GMACS = {
    ("mobilenetv1_100", "baseline"): 0.6, ("mobilenetv1_100", "w=2"): 2.2, ("mobilenetv1_100", "r=2"): 2.2,
    ("mobilenetv1_100", "d=1.4 w=1.2 r=1.3"): 2.3,
    ("mobilenetv2_100", "baseline"): 0.3, ("mobilenetv2_100", "d=4"): 1.2, ("mobilenetv2_100", "w=2"): 1.1,
    ("mobilenetv2_100", "r=2"): 1.2,
    ("resnet50", "baseline"): 4.1, ("resnet50", "d=4"): 16.2, ("resnet50", "w=2"): 14.7, ("resnet50", "r=2"): 16.4,
}
