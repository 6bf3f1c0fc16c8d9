"""The paper's evaluation harness: FID/KID against reference formulas, the Inception and OpenFace
readers, variants, and `faceedit eval` end to end on the tiny models (shapes and ranges)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.paper.evaluation import missing_variants, openface_success, read_openface, target_aus, variant_of
from faceedit_core.paper.inception import fid, kid, load_inception, random_inception_file
from faceedit_core.paper.mapper_sets import MapperSet
from tests.helpers import hostile_files as H
from tests.helpers.paper import write_models_dir

OPENFACE_HEADER = (
    "face, confidence, success, AU01_r, AU02_r, AU04_r, AU06_r, AU12_r, AU45_r, "
    "AU01_c, AU02_c, AU04_c, AU05_c, AU06_c, AU07_c, AU12_c, AU15_c, AU23_c, AU45_c"
)


def _openface_csv(path, present: set[str], confidence: float = 0.98, extra_face: bool = False):
    cols = [c.strip() for c in OPENFACE_HEADER.split(",")]
    row = {c: "0" for c in cols} | {"face": "0", "confidence": str(confidence), "success": "1"}
    row |= {f"AU{int(a[2:]):02d}_c": "1" for a in present}
    rows = [row]
    if extra_face:  # a less confident second detection that shows everything
        rows.append({c: "1" for c in cols} | {"face": "1", "confidence": "0.2"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OPENFACE_HEADER + "\n" + "\n".join(", ".join(r[c] for c in cols) for r in rows) + "\n")


def test_fid_matches_the_reference_formula_in_both_regimes():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for n, d in ((40, 8), (6, 16)):  # more samples than features, then fewer (rank-deficient covariances)
        a = rng.normal(size=(n, d))
        b = rng.normal(0.3, 1.4, size=(n + 3, d))
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        covmean = scipy_linalg.sqrtm(s1 @ s2).real
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert fid(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert fid(a, a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(InputError):
        fid(a[:1], b)


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
    k = lambda x, y: (x @ y.T / 5 + 1) ** 3  # noqa: E731
    m = 12
    ref = (
        (k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1))
        + (k(b, b).sum() - np.trace(k(b, b))) / (m * (m - 1))
        - 2 * k(a, b).mean()
    )
    mean, std = kid(a, b, num_subsets=3)  # every subset holds all rows: the same value each time
    assert mean == pytest.approx(ref, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    assert kid(a, b)[0] > kid(a, a + rng.normal(0, 1e-3, a.shape))[0]


def test_inception_weights_are_read_safely_and_give_pool_features(tmp_path):
    fid_net = load_inception(random_inception_file(tmp_path / "pt_inception.pth"), size=80)
    images = torch.rand(3, 3, 48, 48) * 2 - 1
    feats = fid_net(images)
    assert fid_net.fid_variant and feats.shape == (3, 2048) and torch.isfinite(feats).all()
    assert feats.dtype == torch.float64 and not any(p.requires_grad for p in fid_net.parameters())
    assert not torch.allclose(feats[0], feats[1])
    tv = load_inception(random_inception_file(tmp_path / "tv.pth", fid_variant=False), size=80)
    assert not tv.fid_variant and tv(images).shape == (3, 2048)
    H.assert_weights_loader_checks(
        load_inception, tmp_path / "tv.pth", "Mixed_6b.branch1x1.conv.weight", "Mixed_6b", tmp_path
    )


def test_openface_csv_presence_and_the_success_rule(tmp_path):
    _openface_csv(tmp_path / "a.csv", {"AU6", "AU12"}, extra_face=True)
    present = read_openface(tmp_path / "a.csv")
    assert present["AU6"] and present["AU12"] and not present["AU4"]  # the most confident face
    assert openface_success(present, ["AU6", "AU12"]) and not openface_success(present, ["AU1", "AU2"])
    _openface_csv(tmp_path / "eyes.csv", {"AU45"})
    assert openface_success(read_openface(tmp_path / "eyes.csv"), ["AU43"])  # closed eyes: OpenFace's AU45
    with pytest.raises(InputError, match="does not detect"):
        openface_success(present, ["AU18"])
    (tmp_path / "bad.csv").write_text("frame, timestamp\n1, 0.0\n")
    with pytest.raises(InputError, match="AUxx_c"):
        read_openface(tmp_path / "bad.csv")


def test_variants_targets_and_missing_ablations_come_from_the_manifests():
    def ms(prompt, **cfg):
        base = {"neutral": False, "basis": "gram_schmidt", "weights": {"identity": 0.15}, "mapper": {}}
        for k, v in cfg.items():
            base[k] = {**base[k], **v} if isinstance(v, dict) else v
        return MapperSet(prompt, prompt, None, {"config": base})

    smile = "A person who is smiling"
    sets = [ms(smile), ms(smile, neutral=True), ms(smile, basis="none", mapper={"cross_attention": False})]
    assert [variant_of(s.manifest) for s in sets] == ["full", "w/o reference", "w/o projection + w/o cross-attention"]
    assert variant_of(ms(smile, weights={"identity": 0}).manifest) == "w/o identity loss"
    assert target_aus(smile + ".", {}) == ["AU6", "AU12"] and target_aus("A person who is closing eyes", {}) == ["AU43"]
    assert target_aus("A person who is yawning", {"au_target": {"AU26": 1.0, "AU25": 1.0}}) == ["AU25", "AU26"]
    missing = missing_variants(sets)
    assert {m["variant"] for m in missing} == {"w/o projection", "w/o cross-attention", "w/o identity loss"}
    assert all("--models DIR" in m["train"] for m in missing)


# ------------------------------------------------------------------ end to end on the tiny models
VARIANTS = {
    "smile": {},
    "smile-noref": {"neutral": True},
    "smile-noproj": {"basis": "none"},
    "smile-noxattn": {"mapper": {"cross_attention": False}},
    "smile-noid": {"weights": {"identity": 0.0}},
}


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    from faceedit_core.mappers import DualMappers, MapperConfig
    from faceedit_core.paper.mapper_sets import save_mapper_set
    from faceedit_core.paper.train import PaperTrainConfig

    root = write_models_dir(tmp_path_factory.mktemp("models"), guidance=True)
    base = PaperTrainConfig(prompt="A person who is smiling").to_dict()
    for i, (sid, change) in enumerate(VARIANTS.items()):
        cfg = dict(base)
        for k, v in change.items():
            cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
        torch.manual_seed(i)
        mcfg = MapperConfig(
            n_exp=50,
            hidden=16,
            attn_dim=8,
            psi_tokens=2,
            layers=2,
            texture_levels=(14,),
            cross_attention=cfg["mapper"]["cross_attention"],
        )
        m = DualMappers(mcfg)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        save_mapper_set(root / "mappers" / sid, m.eval(), "A person who is smiling", {"config": cfg})
    real = root.parent / "real"
    real.mkdir()
    from PIL import Image

    for i in range(3):
        rgb = (np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(real / f"{i}.png")
    random_inception_file(root.parent / "inception.pth")
    return root


@pytest.mark.slow
def test_faceedit_eval_runs_end_to_end_and_imports_openface(eval_dir, tmp_path):
    from click.testing import CliRunner

    from faceedit_core.cli import main

    out = tmp_path / "eval"
    for i in range(2):  # OpenFace's output for the full set: the first pair smiles, the second does not
        _openface_csv(tmp_path / "openface" / "smile" / f"{i:05d}_edit.csv", {"AU6", "AU12"} if i == 0 else set())
    args = ["eval", "--models", str(eval_dir), "--out", str(out), "--pairs", "2", "--batch", "2"]
    args += ["--real", str(eval_dir.parent / "real"), "--inception", str(eval_dir.parent / "inception.pth")]
    args += ["--openface", str(tmp_path / "openface"), "--fid-size", "80"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "results.json").read_text())
    rows = {r["set_id"]: r for r in report["sets"]}
    assert {rows[s]["variant"] for s in VARIANTS} == {
        "full",
        "w/o reference",
        "w/o projection",
        "w/o cross-attention",
        "w/o identity loss",
    }
    assert report["missing"] == [] and "w/o projection" in done.output
    for r in rows.values():
        assert r["n"] == 2 and r["target_aus"] == ["AU6", "AU12"]
        assert 0 <= r["au_accuracy_geometric"] <= 1 and -100 <= r["clip_score"] <= 100
        assert -1 <= r["identity"] <= 1 and 0 <= r["background_l1"] <= 1 and r["background_psnr"] > 0
        assert r["fid"] >= 0 and np.isfinite(r["kid"]) and r["kid_std"] >= 0
    assert rows["smile"]["au_accuracy_openface"] == 0.5 and rows["smile"]["openface_missing"] == 0
    assert rows["smile-noref"]["au_accuracy_openface"] is None and rows["smile-noref"]["openface_missing"] == 2
    assert report["baseline"]["fid"] >= 0 and report["baseline"]["real_images"] == 3
    for sid in VARIANTS:
        assert sorted(p.name for p in (out / "renders" / sid).iterdir()) == ["00000_edit.png", "00001_edit.png"]
    assert len(list((out / "renders" / "before").iterdir())) == 2
    table = (out / "table.md").read_text()
    assert table.count("| A person who is smiling |") == 5 and "Unedited Next3D renders: FID" in table


def test_eval_refuses_what_it_cannot_compute(eval_dir, tmp_path):
    from click.testing import CliRunner

    from faceedit_core.cli import main

    root = tmp_path / "models"
    shutil.copytree(eval_dir, root, ignore=shutil.ignore_patterns("mappers"))
    runner = CliRunner()
    none = runner.invoke(main, ["eval", "--models", str(root), "--out", str(tmp_path / "e"), "--pairs", "1"])
    assert none.exit_code == 1 and "faceedit train" in none.output
    half = runner.invoke(main, ["eval", "--models", str(eval_dir), "--out", str(tmp_path / "e"), "--real", str(root)])
    assert half.exit_code == 2 and "--inception" in half.output
    unknown = runner.invoke(main, ["eval", "--models", str(eval_dir), "--out", str(tmp_path / "e"), "--set", "nope"])
    assert unknown.exit_code == 1 and "nope" in unknown.output
