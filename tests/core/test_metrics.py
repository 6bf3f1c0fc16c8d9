"""Metrics (CLIP score, identity similarity, AU accuracy) and the Eq. 11 objective terms."""

from __future__ import annotations

import open_clip
import pytest
import torch

from faceedit_core.au.critic import AUS, PRESENCE_THRESHOLD
from faceedit_core.au.objective import au_loss
from faceedit_core.errors import InputError
from faceedit_core.metrics import au_accuracy, clip_score, identity_similarity
from faceedit_core.paper.arcface import identity_loss, load_arcface, tiny_arcface_file
from faceedit_core.paper.clip_model import load_clip, tiny_clip_file
from faceedit_core.paper.objective import ObjectiveWeights, au_term, clip_loss, clip_target, combine, l2_loss
from faceedit_core.paper.pae import PAEBasis, pae_target


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_clip(tiny_clip_file(tmp_path_factory.mktemp("clip"), seed=0))


@pytest.fixture(scope="module")
def arcface(tmp_path_factory):
    return load_arcface(tiny_arcface_file(tmp_path_factory.mktemp("arcface"), seed=0))


def _images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------ metrics
def test_clip_score_is_100_cosine_per_image(clip):
    images = _images(3, 0)
    prompts = ["a smiling face", "an angry face", "a sad face"]
    scores = clip_score(clip, images, prompts)
    e_i = torch.nn.functional.normalize(clip.model.encode_image(clip.preprocess(images)), dim=-1)
    e_t = torch.nn.functional.normalize(clip.model.encode_text(open_clip.tokenize(prompts)), dim=-1)
    torch.testing.assert_close(scores, 100 * (e_i * e_t).sum(-1), atol=1e-4, rtol=0)
    assert scores.shape == (3,) and (scores.abs() <= 100).all()
    one = clip_score(clip, images, "a smiling face")
    torch.testing.assert_close(one[0], scores[0])
    with pytest.raises(InputError, match="prompts"):
        clip_score(clip, images, ["a", "b"])


def test_identity_similarity_is_one_for_the_same_image_and_lower_otherwise(arcface):
    a, b = _images(2, 1, 256), _images(2, 2, 256)
    torch.testing.assert_close(identity_similarity(arcface, a, a), torch.ones(2), atol=1e-5, rtol=0)
    assert (identity_similarity(arcface, a, b) < 0.9999).all()
    with pytest.raises(InputError, match="one shape"):
        identity_similarity(arcface, a, b[:1])


def test_au_accuracy_uses_the_success_rule_of_the_preview_tier():
    t = PRESENCE_THRESHOLD["AU12"]
    au = {a: torch.zeros(4) for a in AUS}
    au["AU12"] = torch.tensor([t + 0.1, t + 0.1, t - 0.1, t + 0.3])
    au["AU6"] = torch.tensor([t + 0.1, t - 0.1, t + 0.1, t])
    assert au_accuracy(au, ["AU6", "AU12"]) == pytest.approx(0.5)  # rows 0 and 3 show both AUs
    assert au_accuracy(au, ["AU12"]) == pytest.approx(0.75)
    with pytest.raises(InputError, match="AU99"):
        au_accuracy(au, ["AU99"])


# ---------------------------------------------------------------------------------- objective
def test_weights_have_documented_defaults_and_are_validated():
    w = ObjectiveWeights()
    assert (w.clip, w.identity, w.l2, w.au) == (1.0, 0.15, 0.8, 0.0)
    assert ObjectiveWeights.from_dict(w.to_dict()) == w
    with pytest.raises(InputError, match="identity"):
        ObjectiveWeights(identity=-0.1)
    with pytest.raises(InputError, match="lambda_x|unknown"):
        ObjectiveWeights.from_dict({"lambda_x": 1.0})


def test_combine_is_the_weighted_sum_of_the_present_terms():
    terms = {"clip": torch.tensor(0.5), "identity": torch.tensor(0.2), "l2": torch.tensor(3.0), "au": torch.tensor(9.0)}
    total, report = combine(terms, ObjectiveWeights(clip=1.0, identity=0.2, l2=0.1, au=0.0))
    assert total.item() == pytest.approx(0.5 + 0.04 + 0.3)
    assert report["au"] == 9.0 and report["total"] == pytest.approx(0.84)
    total, _ = combine({"clip": torch.tensor(0.5)}, ObjectiveWeights())
    assert total.item() == pytest.approx(0.5)
    with pytest.raises(InputError, match="terms"):
        combine({"style": torch.tensor(1.0)}, ObjectiveWeights())


def test_l2_loss_forms_and_disabled_branches():
    dws, dpsi = torch.full((2, 14, 512), 0.1), torch.full((2, 100), 0.5)
    assert l2_loss(dws, dpsi).item() == pytest.approx(0.01 + 0.25)
    assert l2_loss(dws, dpsi, reduction="sum").item() == pytest.approx(14 * 512 * 0.01 + 100 * 0.25, rel=1e-5)
    assert l2_loss(None, dpsi).item() == pytest.approx(0.25)
    assert l2_loss(dws, None).item() == pytest.approx(0.01)
    with pytest.raises(InputError):
        l2_loss(None, None)


def test_clip_target_is_pae_of_the_raw_initial_embedding_or_the_text(clip):
    init = _images(2, 3)
    basis = PAEBasis.build(clip)
    target = clip_target(clip, basis, init, "A person who is smiling.", alpha=8.0)
    raw = clip.encode_images(init, normalize=False)
    text = clip.encode_text(["A person who is smiling."])[0]
    torch.testing.assert_close(target, pae_target(raw, text, basis, 8.0))
    plain = clip_target(clip, None, init, "A person who is smiling.")
    torch.testing.assert_close(plain, text.expand(2, -1))
    assert not target.requires_grad


def test_au_term_is_the_preview_tier_au_loss():
    g = torch.Generator().manual_seed(0)
    au = {a: torch.rand(3, generator=g) for a in AUS}
    start = {a: torch.rand(3, generator=g) * 0.2 for a in AUS}
    target = {"AU6": 1.0, "AU12": 1.0}
    torch.testing.assert_close(au_term(au, start, target), au_loss(au, start, target, 0.5).mean())


def test_eq11_objective_lowers_when_optimising_the_edited_image(clip, arcface):
    """A few Adam steps on the pixels of an edit lower CLIP + identity + L2 (the trainer's loop in miniature)."""
    init = _images(2, 4, 64)
    target = clip_target(clip, PAEBasis.build(clip), init, "A person who is smiling.")
    delta = torch.zeros_like(init, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.03)
    weights = ObjectiveWeights()
    history = []
    for _ in range(8):
        edit = (init + delta).clamp(-1, 1)
        terms = {
            "clip": clip_loss(clip, edit, target),
            "identity": identity_loss(arcface, edit, init),
            "l2": l2_loss(None, delta.flatten(1)),
        }
        total, report = combine(terms, weights)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(report)
    assert history[-1]["clip"] < history[0]["clip"] - 0.01, history
    assert history[-1]["total"] < history[0]["total"]
    assert history[0]["identity"] == pytest.approx(0.0, abs=1e-5)
