"""CLIP-PAE target (paper Eq. 7-9): project the image embedding onto an expression subspace,
move the projection towards the prompt, keep the residual.

With x = raw CLIP image embedding e_I [D], t = unit text embedding e_T [D], basis rows b_k, alpha:
  c_k      = alpha * |x . b_k|                      (image coefficients made non-negative)
  target   = x - sum_k c_k b_k + (sum_k c_k / s_T) t
  s_T      = sum_k t . b_k  (signed) for the Gram-Schmidt and PCA bases, 1 for the plain basis.
Bases (rows unit-norm):
  plain         the prompts' text embeddings, each normalised (not orthogonal)
  gram_schmidt  classical Gram-Schmidt of those (u_0 = v_0 as given; later u_k from the original
                v_k, then normalised), so every u_k keeps a positive component along v_k
  pca           StandardScaler (population std) + the top principal directions of a corpus of raw
                text embeddings, applied to raw (unstandardised) vectors; component signs: the
                corpus row with the largest |score| scores positive (sklearn 1.1, the reference's).
This matches the CLIP-PAE reference code (../shared/golden/flame/pae_cases.npz, tests/test_clip_pae.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from faceedit_core.errors import InputError

# Default basis: one expression description per paper expression, phrased like the paper's example
# ("A person who is raising brow."). Ours; the paper names only that one.
EXPRESSION_PROMPTS = (
    "A person who is smiling.",
    "A person who is angry.",
    "A person who is sad.",
    "A person who is closing eyes.",
    "A person who is raising brow.",
    "A person who is frowning brow.",
)
# Corpus for the PCA basis: single words for emotions and facial expressions (our own list).
EMOTION_CORPUS = tuple(
    """
happy sad angry afraid surprised disgusted contempt joyful cheerful delighted amused content pleased
elated ecstatic gleeful grinning smiling laughing beaming smirking giggling jolly merry playful proud
hopeful relieved calm serene relaxed peaceful tranquil bored tired sleepy drowsy weary exhausted
sorrowful gloomy miserable depressed melancholy heartbroken grieving crying tearful weeping sobbing
lonely hurt disappointed regretful ashamed embarrassed guilty shy bashful nervous anxious worried
tense uneasy scared frightened terrified horrified panicked alarmed startled shocked astonished
amazed stunned awed curious interested puzzled confused perplexed doubtful skeptical suspicious
thoughtful pensive focused determined serious stern grim frowning scowling glaring furious enraged
irritated annoyed frustrated grumpy sulky resentful bitter hostile aggressive fierce defiant
jealous envious repulsed revolted nauseated sneering disdainful arrogant smug mocking sarcastic
indifferent neutral blank expressionless wincing grimacing pained squinting yawning pouting
blushing flirtatious loving tender affectionate compassionate grateful admiring excited eager
enthusiastic energetic thrilled triumphant confident brave dazed dreamy wistful nostalgic
""".split()
)

METHODS = ("plain", "gram_schmidt", "pca")


@dataclass
class PAEBasis:
    """Basis rows `vectors [K,D]` (unit-norm) of the expression subspace, and how they were made."""

    vectors: torch.Tensor
    method: str
    prompts: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        clip,
        prompts: list[str] | tuple[str, ...] | None = None,
        method: str = "gram_schmidt",
        n_components: int = 10,
        pca_sign: str = "sample",
    ) -> "PAEBasis":
        """Encode `prompts` with `clip` (a ClipGuidance; raw text embeddings) and make the basis.

        prompts None: EXPRESSION_PROMPTS, or EMOTION_CORPUS for method "pca".
        """
        if prompts is None:
            prompts = EMOTION_CORPUS if method == "pca" else EXPRESSION_PROMPTS
        with torch.no_grad():
            raw = clip.encode_text(list(prompts), normalize=False)
        return cls.from_embeddings(raw, method, tuple(prompts), n_components, pca_sign)

    @classmethod
    def from_embeddings(
        cls,
        raw: torch.Tensor,
        method: str,
        prompts: tuple[str, ...] = (),
        n_components: int = 10,
        pca_sign: str = "sample",
    ) -> "PAEBasis":
        """raw text embeddings [N,D] -> basis; pca_sign "sample" (sklearn 1.1) or "feature" (newer sklearn)."""
        if method not in METHODS:
            raise InputError(f"basis method must be one of {METHODS}, got {method!r}")
        if raw.ndim != 2 or raw.shape[0] < 1:
            raise InputError(f"basis embeddings must be [N,D] with N >= 1, got {tuple(raw.shape)}")
        if method == "plain":
            vectors = F.normalize(raw, dim=-1)
        elif method == "gram_schmidt":
            vectors = gram_schmidt(F.normalize(raw, dim=-1))
        else:
            vectors = pca_basis(raw, n_components, pca_sign)
        return cls(vectors, method, tuple(prompts))

    def s_T(self, e_text: torch.Tensor) -> torch.Tensor:
        """The text term's normaliser for unit e_text [..., D] -> [...]: 1 (plain) or sum_k t . b_k."""
        if self.method == "plain":
            return torch.ones(e_text.shape[:-1], dtype=e_text.dtype, device=e_text.device)
        return (e_text @ self.vectors.T.to(e_text)).sum(-1)

    def to(self, device=None, dtype=None) -> "PAEBasis":
        return PAEBasis(self.vectors.to(device=device, dtype=dtype), self.method, self.prompts)

    def to_dict(self) -> dict:
        """{"vectors": [K,D] tensor, "method": str, "prompts": list[str]} (for checkpoints)."""
        return {"vectors": self.vectors.detach().cpu(), "method": self.method, "prompts": list(self.prompts)}

    @classmethod
    def from_dict(cls, d: dict) -> "PAEBasis":
        return cls(torch.as_tensor(d["vectors"]), d["method"], tuple(d.get("prompts", ())))


def gram_schmidt(v: torch.Tensor) -> torch.Tensor:
    """Classical Gram-Schmidt of the rows v [K,D]; u_0 = v_0 is kept as given (see module docstring)."""
    out = [v[0]]
    for k in range(1, v.shape[0]):
        u = v[k] - sum((uj @ v[k]) / (uj @ uj) * uj for uj in out)
        out.append(u / u.norm())
    return torch.stack(out)


def pca_basis(raw: torch.Tensor, n_components: int, sign: str = "sample") -> torch.Tensor:
    """Top principal directions [n,D] of the standardised corpus raw [N,D] (float64 SVD)."""
    if not 1 <= n_components <= min(raw.shape):
        raise InputError(
            f"n_components must be in 1..{min(raw.shape)} for a corpus of {tuple(raw.shape)}, got {n_components}"
        )
    if sign not in ("sample", "feature"):
        raise InputError(f"pca_sign must be 'sample' or 'feature', got {sign!r}")
    x = raw.double()
    std = x.std(0, unbiased=False)
    z = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    u, _, vt = torch.linalg.svd(z, full_matrices=False)
    u, vt = u[:, :n_components], vt[:n_components]
    pick = u.abs().argmax(0) if sign == "sample" else vt.abs().argmax(1)
    ref = u[pick, torch.arange(n_components)] if sign == "sample" else vt[torch.arange(n_components), pick]
    return (vt * torch.sign(ref)[:, None]).to(raw.dtype)


def pae_target(e_image: torch.Tensor, e_text: torch.Tensor, basis: PAEBasis | None, alpha: float = 8.0) -> torch.Tensor:
    """Augmented target [B,D] from raw image embeddings e_image [B,D] and text e_text [D] or [B,D].

    basis None gives the non-projecting variant e_I + alpha e_T ("pae" in the reference).
    """
    if e_image.ndim != 2:
        raise InputError(f"e_image must be [B,D], got {tuple(e_image.shape)}")
    t = F.normalize(e_text, dim=-1).to(e_image).expand_as(e_image)
    if basis is None:
        return e_image + alpha * t
    b = basis.vectors.to(e_image)
    if b.shape[1] != e_image.shape[1]:
        raise InputError(f"basis dimension {b.shape[1]} does not match the embeddings' {e_image.shape[1]}")
    c = alpha * (e_image @ b.T).abs()  # [B,K]
    s_t = basis.s_T(t)  # [B]
    if bool((s_t.abs() < 1e-6).any()):
        raise InputError(
            f"s_T = sum_k <e_T, b_k> is {s_t.abs().min().item():.2e} (near 0) for this prompt and "
            f"{basis.method} basis: the target is undefined; use another basis or prompt set"
        )
    return e_image - c @ b + (c.sum(-1) / s_t)[:, None] * t


def pae_loss(e_edit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_clip = mean over the batch of 1 - cos(e_edit [B,D], target [B,D])."""
    return (1 - F.cosine_similarity(e_edit, target.to(e_edit), dim=-1)).mean()
