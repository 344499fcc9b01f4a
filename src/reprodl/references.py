"""The catalogue's reference numbers (docs/experiments.md), in one place.

They are what the course reports (or, for E9, the literature) gave on the full datasets; they
are what this pipeline is compared with, never results of it. The experiments print them beside
their own numbers in reports/<exp>.md, and the study page (reprodl.report) and its claims read
them from here. This module imports nothing, so the report stage can read it without torch.
"""

from __future__ import annotations

# E1: full MNIST, test accuracy; embedded_target: this repo's bar for the embedded profile.
E1 = {
    "logreg": {"full": 0.9273, "embedded_target": 0.89},
    "mlp": {"full": 0.9790, "embedded_target": 0.95},
    "convnet": {"full": 0.9925, "embedded_target": 0.985},
    "mlp_sigmoid_lr0p5": {"full": 0.9466},
    "mlp_sigmoid_lr0p3": {"full": 0.9370},
    "mlp_sigmoid_lr0p2": {"full": 0.9289},
}

# E2: full MNIST, 48,000 / 12,000 split; correlation of each hyper-parameter with val accuracy.
E2 = {
    "best": {"batch": 8, "epochs": 50, "lr": 0.1, "hidden": 100, "val_accuracy": 0.9811, "test_accuracy": 0.9806},
    "correlation": {"lr": 0.34, "batch": -0.35, "epochs": 0.24, "hidden": 0.13},
}

# E3: full MNIST, the best two- and three-layer nets by val accuracy, and the test accuracy.
E3 = {
    "two_layers": {"widths": "2048-128", "val_accuracy": 0.9752},
    "three_layers": {"widths": "1024-10-1024", "val_accuracy": 0.9799, "epochs": 50},
    "test_accuracy": 0.9806,
}

# E5: mean scaled test MSE per bottleneck, (MSE loss, BCE loss); the one-sided Wilcoxon p of
# "BCE reconstructs better" over the five sizes.
E5 = {400: (4.10, 3.81), 256: (4.55, 3.87), 100: (4.92, 4.52), 64: (4.67, 4.53), 16: (5.37, 5.26)}
E5_P = 0.03125

# E6: test accuracy (the conv net on 500 USPS training images).
E6 = {
    "regression": "w = -20, b = -10 (the generating line)",
    "blobs": None,  # the catalogue gives no number
    "xor_full_batch": 0.995,
    "xor_minibatch": 0.997,
    "mnist_mlp": 0.957,
    "usps_mlp": 0.845,
    "usps_conv": 0.900,
}

# E7: full VOC2007, ImageNet ResNet50, mAP in % (VOC07 11-point).
E7 = {
    "linear_pretrained": {"train": 92.30, "test": 83.40},
    "finetuned": {"train": 99.99, "test": 87.23},
}

# E8: full MNIST at 224 px, val accuracy per variant; test accuracy of the best; parameters.
E8_VAL = {"scratch": 0.9909, "pretrained_all": 0.9874, "pretrained_layer4": 0.9157}
E8_TEST = 0.9924
E8_N_PARAMS = 11_175_370

# E9: the literature on all 120 Stanford Dogs breeds, test accuracy (ViT-B/16 at 448 px,
# frozen ImageNet MobileNetV2 with a new head).
E9 = {"vit": 0.917, "baseline": 0.75}
E9_WHAT = {"vit": "ViT-B/16, ImageNet-21k, fine-tuned at 448 px", "baseline": "MobileNetV2, frozen ImageNet features"}

# Where each experiment's reference numbers come from, as the page states it.
SOURCES = {
    "e1": "the course report, full MNIST, test accuracy",
    "e2": "the course report, full MNIST (48,000 / 12,000)",
    "e3": "the course report, full MNIST",
    "e4": "the course report gives no number: neighboring_hit should rise from the input to the deep layers",
    "e5": "the course report, MNIST-sized images, scaled MSE (read as per pixel x 100)",
    "e6": "the course report, full MNIST and USPS",
    "e7": "the course report, VOC2007 with ImageNet ResNet50, 20 epochs, mAP %",
    "e8": "the course report, full MNIST at 224 px, Adam lr 0.01",
    "e9": "the literature, all 120 Stanford Dogs breeds",
}
