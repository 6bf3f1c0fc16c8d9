"""FLAME: model files, the LBS layer, landmarks, and the procedural demo head."""

from faceedit_core.flame.io import FlameModel, LandmarkEmbedding, load_flame_model, load_landmark_embedding
from faceedit_core.flame.layer import FlameLayer, FlameOutput

__all__ = [
    "FlameModel",
    "LandmarkEmbedding",
    "load_flame_model",
    "load_landmark_embedding",
    "FlameLayer",
    "FlameOutput",
]
