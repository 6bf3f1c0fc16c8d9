"""A FLAME-like PCA expression space over the ICT expression shapes.

Plausible expressions are sampled as sparse non-negative mixes of the semantic shapes (a few
actions at a time, mostly on both sides, opposed gaze / sideways pairs never together); the
basis is the SVD of those samples about the neutral face (zero coefficients = neutral, as in
FLAME). Every basis vector is a mix of the semantic shapes, so the asset stores only the mixing
matrix mix [S,K]: basis = shapes [3V,S] @ mix. Columns are orthogonal and scaled by the samples'
coefficients' 99.7th percentile / 3, so [-3, 3] covers 99.7 % of plausible expressions along
each component (as +-3 standard deviations do for FLAME's). Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

N_SAMPLES = 20000
SEED = 20240515
MAX_ACTIONS = 5  # actions mixed in one sample: 1..MAX_ACTIONS
COVER_PERCENTILE = 99.7  # of |coefficient|, mapped to 3 (FLAME's +-3 sigma)
P_BOTH_SIDES = 0.7  # a paired action (X_L, X_R) is symmetric with this chance, else one-sided
# actions that never appear together in one sample (they pull the same parts opposite ways)
EXCLUSIVE = (
    ("eyeLookLeft", "eyeLookRight"),
    ("eyeLookUp", "eyeLookDown"),
    ("mouthLeft", "mouthRight"),
    ("jawLeft", "jawRight"),
    ("mouthSmile", "mouthFrown"),
)


def actions(names: list[str]) -> dict[str, list[int]]:
    """Group semantic columns into actions: 'browDown' -> [col_L, col_R] for L/R pairs, single
    shapes alone, and conjugate gaze ('eyeLookLeft' -> [eyeLookOut_L, eyeLookIn_R])."""
    idx = {n: i for i, n in enumerate(names)}
    out: dict[str, list[int]] = {}
    used = set()
    gaze = {
        "eyeLookLeft": ("eyeLookOut_L", "eyeLookIn_R"),
        "eyeLookRight": ("eyeLookIn_L", "eyeLookOut_R"),
        "eyeLookUp": ("eyeLookUp_L", "eyeLookUp_R"),
        "eyeLookDown": ("eyeLookDown_L", "eyeLookDown_R"),
    }
    for act, pair in gaze.items():
        if all(p in idx for p in pair):
            out[act] = [idx[p] for p in pair]
            used.update(pair)
    for n in names:
        if n in used:
            continue
        if n.endswith("_L") and n[:-2] + "_R" in idx:
            out[n[:-2]] = [idx[n], idx[n[:-2] + "_R"]]
            used.update((n, n[:-2] + "_R"))
        elif not n.endswith("_R"):
            out[n] = [idx[n]]
            used.add(n)
    return out


def sample_weights(names: list[str], n: int = N_SAMPLES, seed: int = SEED) -> np.ndarray:
    """Sparse non-negative semantic weights [n,S] of plausible expressions."""
    rng = np.random.default_rng(seed)
    acts = actions(names)
    keys = list(acts)
    W = np.zeros((n, len(names)))
    for i in range(n):
        k = int(rng.integers(1, MAX_ACTIONS + 1))
        chosen: list[str] = []
        for a in rng.permutation(len(keys)):
            key = keys[a]
            if any((key, c) in EXCLUSIVE or (c, key) in EXCLUSIVE for c in chosen):
                continue
            chosen.append(key)
            if len(chosen) == k:
                break
        for key in chosen:
            amount = float(rng.uniform(0.2, 1.0))
            cols = acts[key]
            if len(cols) == 2:
                if key.startswith("eyeLook") or rng.random() < P_BOTH_SIDES:
                    for c in cols:
                        W[i, c] = min(1.0, amount * float(rng.uniform(0.85, 1.15)))
                else:
                    W[i, cols[int(rng.integers(2))]] = amount
            else:
                W[i, cols[0]] = amount
    return W


def fit_mix(
    shapes: np.ndarray, names: list[str], n_samples: int = N_SAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """shapes [3V,S] (float64, as the loader will rebuild them) -> (mix [S,S] so that basis =
    shapes @ mix has orthogonal columns in decreasing variance, each scaled so that [-3, 3]
    holds 99.7 % of the samples' coefficients; explained [S] cumulative share of the energy).

    SVD of the samples X = W shapes^T without forming X: shapes = Q R, X = (W R^T) Q^T, so the
    right singular vectors of X are Q Vt^T of the small matrix W R^T. Signs: each column's
    largest-magnitude mix entry is positive.
    """
    W = sample_weights(names, n_samples, seed)
    Q, R = np.linalg.qr(shapes)
    U, S, Vt = np.linalg.svd(W @ R.T, full_matrices=False)
    proj = np.abs(U * S[None, :])  # samples' coordinates along each unit direction
    scale = np.percentile(proj, COVER_PERCENTILE, axis=0) / 3.0
    mix = np.linalg.solve(R, Vt.T) * scale[None, :]  # basis_k = Q Vt_k * scale_k = shapes @ mix_k
    flip = np.sign(mix[np.argmax(np.abs(mix), axis=0), np.arange(mix.shape[1])])
    mix *= flip[None, :]
    explained = np.cumsum(S**2) / np.sum(S**2)
    return mix, explained


def semantic_to_pca_matrix(shapes: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Least-squares PCA coefficients of semantic weights: P [K,S] with c = P w minimising
    |shapes w - basis c| (basis = shapes @ mix [3V,K], orthogonal columns). shapes [3V,S]."""
    G = shapes.T @ shapes  # [S,S]
    BtB = mix.T @ G @ mix  # [K,K], diagonal up to rounding
    return np.linalg.solve(BtB, mix.T @ G)
