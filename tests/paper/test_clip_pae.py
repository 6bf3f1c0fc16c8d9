"""CLIP loading (tiny open_clip ViT through the same loader as the real file) and the PAE target."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError, MissingModelError, UnsafeFileError
from faceedit_core.paper.clip_model import CLIP_MEAN, infer_clip_config, load_clip, tiny_clip_file
from faceedit_core.paper.pae import EXPRESSION_PROMPTS, PAEBasis, gram_schmidt, pae_loss, pae_target


# ------------------------------------------------------------------------------- golden PAE
@pytest.fixture(scope="module")
def pae_golden(golden_flame_dir):
    data = np.load(golden_flame_dir / "pae_cases.npz")
    index = json.loads((golden_flame_dir / "pae_cases_index.json").read_text())
    return {k: torch.from_numpy(np.asarray(data[k])) for k in data.files}, index


@pytest.fixture(scope="module")
def golden_bases(pae_golden):
    """Our bases fitted once from the golden inputs, by the name of the reference entry they match."""
    g, _ = pae_golden
    return {
        "plain": PAEBasis.from_embeddings(g["prompts_raw"], "plain"),
        "gram_schmidt": PAEBasis.from_embeddings(g["prompts_raw"], "gram_schmidt"),
        "exact": (pca := PAEBasis.from_embeddings(g["corpus"], "pca", n_components=10)),
        "sklearn": pca,
        "exact_vsign": PAEBasis.from_embeddings(g["corpus"], "pca", pca_sign="feature"),
    }


def _pairs(g):
    """Text-major pairs: row i*N_I + j holds text i and image j."""
    n_t, n_i = g["e_T"].shape[0], g["e_I"].shape[0]
    return g["e_I"].repeat(n_t, 1), g["e_T"].repeat_interleave(n_i, 0)


def _close_rows(ours, ref):
    """The README's tolerance: max |diff| <= 1e-6 x the row norm of the reference target."""
    err = (ours - ref).abs().amax(1) / ref.norm(dim=1)
    assert err.max().item() <= 1e-6, err


def test_plain_and_gram_schmidt_bases_match_reference(pae_golden):
    g, _ = pae_golden
    plain = PAEBasis.from_embeddings(g["prompts_raw"], "plain")
    gs = PAEBasis.from_embeddings(g["prompts_raw"], "gram_schmidt")
    torch.testing.assert_close(plain.vectors, g["prompts_normalized"], atol=1e-7, rtol=0)
    torch.testing.assert_close(gs.vectors, g["gs_basis"], atol=1e-6, rtol=0)
    torch.testing.assert_close(gs.vectors @ gs.vectors.T, torch.eye(6), atol=1e-5, rtol=0)


def test_pca_basis_matches_exact_reference_with_both_sign_rules(pae_golden, golden_bases):
    g, _ = pae_golden
    sample, feature = golden_bases["exact"].vectors, golden_bases["exact_vsign"].vectors
    torch.testing.assert_close(sample, g["pca_basis_exact"].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(sample, g["pca_basis_sklearn"].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(feature, g["pca_basis_exact_vsign"].float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("alpha", [1, 8])
@pytest.mark.parametrize(
    "setting,basis_key",
    [
        ("pae+", "plain"),
        ("paeGS+", "gram_schmidt"),
        ("paePCA+", "exact"),
        ("paePCA+", "exact_vsign"),
        ("paePCA+", "sklearn"),
        ("pae", None),
    ],
)
def test_pae_targets_and_losses_match_reference(pae_golden, golden_bases, setting, basis_key, alpha):
    g, _ = pae_golden
    e_i, e_t = _pairs(g)
    basis = None if basis_key is None else golden_bases[basis_key]  # our PCA fit, with each entry's sign rule
    key = f"{setting}_a{alpha}" + (f"_{basis_key}" if setting == "paePCA+" else "")
    target = pae_target(e_i, e_t, basis, alpha=float(alpha))
    _close_rows(target, g[f"target__{key}"])
    loss = pae_loss(g["e_edit"], target)
    # the reference's loss is -cos; ours is 1 - cos
    torch.testing.assert_close(loss, 1 + g[f"loss_mean__{key}"].float(), atol=1e-6, rtol=0)


def test_text_only_target_loss_matches_reference(pae_golden):
    g, _ = pae_golden
    _, e_t = _pairs(g)
    torch.testing.assert_close(pae_loss(g["e_edit"], e_t), 1 + g["loss_mean__text"].float(), atol=1e-6, rtol=0)


def test_negative_s_t_is_kept_signed(pae_golden):
    g, _ = pae_golden
    basis = PAEBasis.from_embeddings(g["corpus"], "pca", pca_sign="feature")
    s_t = basis.s_T(g["e_T"])
    assert (s_t < 0).any(), s_t  # the README's -0.313 case: the text term must be reversed, not abs'd


def test_pae_removes_a_positive_component_exactly_at_alpha_1():
    basis = PAEBasis(torch.eye(4)[:2], "gram_schmidt")
    x = torch.tensor([[2.0, 3.0, 5.0, 1.0]])
    t = torch.tensor([0.0, 0.0, 0.0, 1.0])
    t2 = torch.tensor([0.6, 0.0, 0.0, 0.8])
    target = pae_target(x, t2, basis, alpha=1.0)
    # the projection (2, 3) is removed and its total 5 comes back along t2 / s_T (s_T = 0.6)
    torch.testing.assert_close(target, torch.tensor([[0 + 5 / 0.6 * 0.6, 0.0, 5.0, 1 + 5 / 0.6 * 0.8]]))
    with pytest.raises(InputError, match="s_T"):  # t has no support on the basis: s_T = 0
        pae_target(x, t, basis, alpha=1.0)


def test_gram_schmidt_keeps_each_vector_on_its_own_side():
    v = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(3)), dim=1)
    u = gram_schmidt(v)
    assert ((u * v).sum(1) > 0).all()
    torch.testing.assert_close(u @ u.T, torch.eye(5), atol=1e-5, rtol=0)


def test_bad_basis_inputs_are_named():
    with pytest.raises(InputError, match="method"):
        PAEBasis.from_embeddings(torch.randn(3, 8), "qr")
    with pytest.raises(InputError, match="n_components"):
        PAEBasis.from_embeddings(torch.randn(3, 8), "pca", n_components=5)


# --------------------------------------------------------------------------------- CLIP files
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip")


@pytest.fixture(scope="module")
def tiny_clip(clip_dir):
    return load_clip(tiny_clip_file(clip_dir, seed=0))


def test_tiny_clip_round_trips_in_every_file_format(clip_dir, tiny_clip):
    images = torch.rand(2, 3, 40, 56) * 2 - 1
    ref_i = tiny_clip.encode_images(images)
    ref_t = tiny_clip.encode_text(["a smiling face", "a sad face"])
    for fmt in ("safetensors", "torchscript"):
        other = load_clip(tiny_clip_file(clip_dir / fmt, seed=0, fmt=fmt))
        torch.testing.assert_close(other.encode_images(images), ref_i, atol=1e-6, rtol=0)
        torch.testing.assert_close(other.encode_text(["a smiling face", "a sad face"]), ref_t, atol=1e-6, rtol=0)
    different = load_clip(tiny_clip_file(clip_dir / "seed1", seed=1))
    assert (different.encode_images(images) - ref_i).abs().max() > 1e-3


def test_clip_embeddings_have_the_documented_shapes_and_norms(tiny_clip):
    e = tiny_clip.encode_images(torch.zeros(3, 3, 64, 64))
    raw = tiny_clip.encode_images(torch.zeros(3, 3, 64, 64), normalize=False)
    t = tiny_clip.encode_text(list(EXPRESSION_PROMPTS))
    assert e.shape == (3, tiny_clip.embed_dim) and t.shape == (6, tiny_clip.embed_dim)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), e)
    assert tiny_clip.config["quick_gelu"] is True


def test_preprocess_maps_minus_one_to_one_onto_clip_normalisation(tiny_clip):
    grey = torch.zeros(1, 3, 100, 60)  # 0 in [-1,1] is 0.5 in [0,1]
    x = tiny_clip.preprocess(grey)
    assert x.shape == (1, 3, tiny_clip.image_size, tiny_clip.image_size)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(x[0, :, 5, 5], expected, atol=1e-5, rtol=0)


def test_gradients_reach_the_input_images_not_the_frozen_weights(tiny_clip):
    images = (torch.rand(2, 3, 48, 48) * 2 - 1).requires_grad_(True)
    target = tiny_clip.encode_text(["a smiling face"]).expand(2, -1)
    pae_loss(tiny_clip.encode_images(images), target).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip.parameters())


def test_basis_from_a_clip_model(tiny_clip):
    basis = PAEBasis.build(tiny_clip)
    assert basis.vectors.shape == (6, tiny_clip.embed_dim) and basis.prompts == EXPRESSION_PROMPTS
    torch.testing.assert_close(basis.vectors @ basis.vectors.T, torch.eye(6), atol=1e-5, rtol=0)
    pca = PAEBasis.build(tiny_clip, method="pca", n_components=4)
    assert pca.vectors.shape == (4, tiny_clip.embed_dim)
    again = PAEBasis.from_dict(basis.to_dict())
    assert again.method == "gram_schmidt" and torch.equal(again.vectors, basis.vectors)


@pytest.mark.parametrize("name", ["ViT-B-32-quickgelu", "ViT-B-16", "ViT-L-14"])
def test_inferred_architecture_of_release_sized_state_dicts(name):
    """Shapes of OpenAI's / open_clip's ViTs give back their config, heads included (meta tensors: no memory)."""
    import copy

    import open_clip
    from open_clip.model import CLIP

    config = open_clip.get_model_config(name)
    with torch.device("meta"):
        release = CLIP(**copy.deepcopy(config))
        rebuilt = CLIP(**infer_clip_config(release.state_dict()))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in release.state_dict().items()
    }
    assert (
        rebuilt.visual.transformer.resblocks[0].attn.num_heads == release.visual.transformer.resblocks[0].attn.num_heads
    )
    assert rebuilt.transformer.resblocks[0].attn.num_heads == release.transformer.resblocks[0].attn.num_heads


def test_missing_clip_file_names_what_and_where(tmp_path):
    with pytest.raises(MissingModelError, match=r"clip/ViT-B-32\.pt"):
        load_clip(tmp_path)
    with pytest.raises(MissingModelError, match=str(tmp_path / "clip" / "ViT-B-32.pt")):
        load_clip(tmp_path / "clip" / "ViT-B-32.pt")


def test_models_dir_finds_the_clip_file(tmp_path):
    tiny_clip_file(tmp_path / "clip")
    assert load_clip(tmp_path).source.endswith("tiny_clip.pt")


def test_wrong_weights_are_refused_with_the_architecture(tmp_path, clip_dir):
    sd = torch.load(tiny_clip_file(clip_dir), weights_only=True)
    with pytest.raises(InputError, match="not a ViT CLIP"):
        infer_clip_config({"conv1.weight": torch.zeros(1)})
    torch.save(
        {k: v for k, v in sd.items() if "ln_final" not in k} | {"ln_final.weight": torch.zeros(64)}, tmp_path / "cut.pt"
    )
    with pytest.raises(InputError, match="missing"):
        load_clip(tmp_path / "cut.pt")
    with pytest.raises(InputError, match=r"do not fit the CLIP architecture \(embed 512"):
        load_clip(tiny_clip_file(clip_dir), arch="ViT-B-32")


def test_non_weight_tensors_of_openai_files_are_ignored(tmp_path, clip_dir, tiny_clip):
    """OpenAI's archive also holds each text block's attn_mask and size scalars as tensors."""
    sd = torch.load(tiny_clip_file(clip_dir), weights_only=True)
    extra = {
        "transformer.resblocks.0.attn_mask": torch.zeros(77, 77),
        "input_resolution": torch.tensor(32),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    torch.save(
        {f"module.{k}": v.half() if v.is_floating_point() else v for k, v in (sd | extra).items()},
        tmp_path / "openai_like.pt",
    )
    other = load_clip(tmp_path / "openai_like.pt")
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(other.encode_images(images), tiny_clip.encode_images(images), atol=2e-2, rtol=0)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(UnsafeFileError):
        load_clip(tmp_path / "evil.pt")


def test_torchscript_archive_code_is_never_run(tmp_path, clip_dir):
    """Replace the archive's code with something that would fail to compile: loading still works."""
    src = tiny_clip_file(clip_dir / "jit", fmt="torchscript")
    dst = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if "/code/" in item.filename and item.filename.endswith(".py"):
                data = b"raise SystemExit('archive code ran')\n"
            zout.writestr(item, data)
    model = load_clip(dst)
    assert model.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 64)
