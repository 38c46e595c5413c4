"""Crafted artifacts for the validation and sandbox tests: what an attacker would upload.

Each helper takes a trained ``TrainingResult`` (or a loaded artifact's parts) and returns skops
bytes made only of trusted types, so skops's own type check passes them; only the structural
validation (``training.artifact_validation``) and the sandbox stand between them and a crash.
"""

from __future__ import annotations

import copy
import struct
import zlib
from typing import Any

import numpy as np

from training.artifacts import dump_artifact

OUT_OF_RANGE = 0xFFFFFFF0


def boosted(pipeline: Any) -> Any:
    """The HistGradientBoostingClassifier at the end of a pipeline."""
    return pipeline.steps[-1][1]


def crafted(result: Any, change: Any) -> bytes:
    """skops bytes of a deep copy of ``result``'s pipeline after ``change(pipeline)``."""
    pipeline = copy.deepcopy(result.pipeline)
    change(pipeline)
    return dump_artifact(pipeline, numeric_features=result.numeric_features, classes=result.classes)


def out_of_range_root(pipeline: Any) -> None:
    """The issue's first file: the first tree's root sends every row to node 0xFFFFFFF0 on feature 10**12."""
    tree = boosted(pipeline)._predictors[0][0]
    nodes = tree.nodes.copy()
    nodes[0]["is_leaf"] = 0
    nodes[0]["left"] = OUT_OF_RANGE
    nodes[0]["right"] = OUT_OF_RANGE
    nodes[0]["feature_idx"] = 10**12
    tree.nodes = nodes


def hidden_branch(feature: int, threshold: float = 1e4) -> Any:
    """The issue's second file: a new root that sends ``X[:, feature] > threshold`` to an
    out-of-range node, and everything else to the original tree (shifted by one), so the model
    scores as before on ordinary rows."""

    def change(pipeline: Any) -> None:
        tree = boosted(pipeline)._predictors[0][0]
        old = tree.nodes
        nodes = np.zeros(len(old) + 1, dtype=old.dtype)
        nodes[1:] = old
        split = nodes["is_leaf"][1:] == 0
        nodes["left"][1:][split] += 1
        nodes["right"][1:][split] += 1
        nodes["depth"][1:] += 1
        root = nodes[0]
        root["is_leaf"] = 0
        root["feature_idx"] = feature
        root["num_threshold"] = threshold
        root["missing_go_to_left"] = 1
        root["left"] = 1
        root["right"] = OUT_OF_RANGE
        root["count"] = old[0]["count"]
        tree.nodes = nodes

    return change


def scaled_feature_threshold(pipeline: Any, feature: int, raw: float) -> float:
    """Where ``raw`` (before the scaler) lands after the pipeline's scaler, for a trigger on it."""
    scaler = pipeline.named_steps["scaler"]
    return float((raw - scaler.mean_[feature]) / scaler.scale_[feature])


def zip_bomb(inflated_bytes: int = 1024**3 + 4 * 1024 * 1024) -> bytes:
    """A valid zip whose schema.json inflates to ``inflated_bytes`` of spaces (about 1 MB on disk).

    The deflate stream is built from one compressed 4 MiB block repeated (each block ends with a
    full flush, so it does not depend on the one before), and the archive's headers are written
    by hand: compressing a whole gigabyte with zipfile would cost the test seconds of CPU.
    """
    chunk = b" " * (4 * 1024 * 1024)
    if inflated_bytes % len(chunk):
        raise ValueError("inflated_bytes must be a multiple of 4 MiB.")
    repeats = inflated_bytes // len(chunk)
    block_compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = block_compressor.compress(chunk) + block_compressor.flush(zlib.Z_FULL_FLUSH)
    ending = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    stream = block * repeats + ending
    crc = 0
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    name = b"schema.json"
    common = struct.pack("<HHHHIII", 0, 8, 0, 0x21, crc, len(stream), inflated_bytes)
    local = struct.pack("<IH", 0x04034B50, 20) + common + struct.pack("<HH", len(name), 0) + name
    central = (
        struct.pack("<IHH", 0x02014B50, 20, 20) + common + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, 0) + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    return local + stream + central + end
