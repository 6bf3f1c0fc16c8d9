"""The paper's evaluation (Sec. IV-A, Tables I-V) as a harness over the trained mapper sets.

For every trained mapper set in DIR/mappers/ (one per prompt and training variant), N pairs
(default 1,000): identity i (seed `seed + i`, Next3D's truncation; or latent files cycled) starting
from the neutral face (or reference FLAME parameters cycled), rendered by Next3D before and after
the edit from the frontal camera, both renders with the same ray-sampling draws. Per set:

- AU accuracy, two ways side by side, by the paper's success rule (every AU of the target
  expression present): from an image-based AU detector's output (OpenFace's CSV files for the
  renders this harness wrote: `AUxx_c` = 1 is present) and from the geometric critic on the edited
  FLAME mesh (au/critic.py's presence thresholds). Target AUs: the standard EMFACS prototypes for
  the paper's six expressions (EXPRESSION_AUS; Close Eyes is AU45 for OpenFace, which has no AU43,
  and AU43 for the geometric critic), else the set's own AU target from its manifest;
- CLIP score: 100 x cos(CLIP(edited render), CLIP(prompt)) (metrics.clip_score);
- identity similarity: ArcFace cosine between the renders before and after (metrics.identity_similarity);
- FID and KID of the edited renders against a folder of real images (Inception-v3 pool features,
  inception.py, weights supplied by the user); the unedited renders get the same, as the baseline;
- background preservation (the paper is silent on its definition; ours): outside the FLAME head's
  silhouette in the camera (rasterised, dilated by 4 % of the image side to leave room for hair),
  the mean absolute difference between the renders before and after, in [0,1] units, and its PSNR.

Variants come from each set's training manifest: "full", "w/o reference" (neutral starts),
"w/o projection" (basis none), "w/o cross-attention", "w/o identity loss" (identity weight 0),
"w/o texture mapper", "w/o emotion mapper", joined by " + " when several apply. The table lists
each prompt under each variant; a variant without a trained set is listed as missing with the
`faceedit train` switch that trains it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from faceedit_core.errors import Cancelled, InputError
from faceedit_core.paper.mapper_sets import MapperSet, edit_latent
from faceedit_core.params import FlameParams
from faceedit_core.storage.records import bounded, check_bounds

# The paper's six expressions -> target AUs (EMFACS prototypes; ../shared/reference/method.md).
EXPRESSION_AUS = {
    "smiling": ("AU6", "AU12"),
    "angry": ("AU4", "AU5", "AU7", "AU23"),
    "sad": ("AU1", "AU4", "AU15"),
    "raising brow": ("AU1", "AU2"),
    "frowning": ("AU4",),
    "closing eyes": ("AU43",),
}
OPENFACE_AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17")
OPENFACE_AUS += ("AU20", "AU23", "AU25", "AU26", "AU28", "AU45")
OPENFACE_FOR = {"AU43": "AU45"}  # no AU43 in OpenFace: its blink/closure unit stands in
ABLATIONS = {
    "w/o reference": "--neutral",
    "w/o projection": "--basis none",
    "w/o cross-attention": "--no-cross-attention",
    "w/o identity loss": "--lambda-id 0",
}
BACKGROUND_MARGIN = 0.04
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class EvalConfig:
    """n_pairs: identities per mapper set (the paper: 1,000). seed: identity i is seed + i.
    batch: heads rendered at once. fid_size: Inception's input side (299; smaller only for tests).
    max_real: real images read for FID/KID. write_renders: PNGs of every pair (needed for OpenFace).
    yaw_deg: camera yaw of the renders (0: frontal, as the paper's figures)."""

    n_pairs: int = bounded(1000, 1, 1_000_000)
    seed: int = 0
    batch: int = bounded(8, 1, 256)
    fid_size: int = bounded(299, 75, 1024)
    max_real: int = bounded(5000, 2, 1_000_000)
    write_renders: bool = True
    yaw_deg: float = 0.0

    def validate(self) -> "EvalConfig":
        check_bounds(self, "evaluation field")
        return self


@dataclass
class SetResult:
    """One mapper set's row of the table."""

    set_id: str
    prompt: str
    variant: str
    n: int
    target_aus: list[str]
    au_accuracy_openface: float | None = None
    au_accuracy_geometric: float | None = None
    clip_score: float = float("nan")
    clip_score_before: float = float("nan")
    identity: float = float("nan")
    background_l1: float = float("nan")
    background_psnr: float = float("nan")
    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    openface_missing: int = 0
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- variants and targets
def variant_of(manifest: dict) -> str:
    """The training variant of a mapper set, from its manifest's config."""
    cfg = manifest.get("config", {})
    mapper = cfg.get("mapper", {})
    parts = []
    if cfg.get("neutral"):
        parts.append("w/o reference")
    if cfg.get("basis") == "none":
        parts.append("w/o projection")
    if mapper.get("cross_attention") is False:
        parts.append("w/o cross-attention")
    if cfg.get("weights", {}).get("identity", 1) == 0:
        parts.append("w/o identity loss")
    if mapper.get("texture_branch") is False:
        parts.append("w/o texture mapper")
    if mapper.get("emotion_branch") is False:
        parts.append("w/o emotion mapper")
    return " + ".join(parts) or "full"


def target_aus(prompt: str, manifest: dict) -> list[str]:
    """The target AUs of a prompt: the paper's expressions by their keyword, else the set's AU target."""
    text = " ".join(prompt.lower().replace(".", " ").split())
    for key, aus in EXPRESSION_AUS.items():
        if key in text:
            return list(aus)
    return sorted((manifest.get("au_target") or {}).keys())


# ----------------------------------------------------------------------------- OpenFace CSV
def read_openface(path: str | os.PathLike) -> dict[str, bool]:
    """One OpenFace CSV (FaceLandmarkImg / FeatureExtraction output for one image) -> {AU: present},
    from the `AUxx_c` columns of the most confident face (column names may start with spaces)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
    if not rows:
        raise InputError(f"OpenFace file {path.name} has no rows")
    if not any(k.endswith("_c") and k.startswith("AU") for k in rows[0]):
        raise InputError(f"OpenFace file {path.name} has no AUxx_c columns (run OpenFace with -aus)")
    best = max(rows, key=lambda r: _number(r.get("confidence", "1")))
    out = {}
    for key, value in best.items():
        if key.startswith("AU") and key.endswith("_c"):
            out[f"AU{int(key[2:-2])}"] = _number(value) >= 0.5
    return out


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def openface_success(present: dict[str, bool], aus: list[str]) -> bool:
    """The success rule on OpenFace's presence flags (AU43 read as AU45)."""
    wanted = [OPENFACE_FOR.get(a, a) for a in aus]
    unknown = [a for a in wanted if a not in OPENFACE_AUS]
    if unknown:
        raise InputError(f"OpenFace does not detect {unknown}")
    return all(present.get(a, False) for a in wanted)


# ----------------------------------------------------------------------------- images
def read_images(folder: str | os.PathLike, size: int, limit: int) -> torch.Tensor:
    """Up to `limit` PNG/JPEG images of a folder (sorted by name) -> [N,3,size,size] in [-1,1]."""
    from faceedit_core.paper.invert import load_photo

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"real images folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if len(files) < 2:
        raise InputError(f"real images folder {folder} has {len(files)} PNG/JPEG images; FID and KID need >= 2")
    return torch.cat([load_photo(p, size) for p in files])


def _save_png(path: Path, image: torch.Tensor) -> None:
    from faceedit_core.render.images import save_png

    rgb = ((image.detach().cpu().permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    save_png(path, np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1))


def head_masks(layer, params: FlameParams, c: torch.Tensor, size: int) -> torch.Tensor:
    """Pixels of the FLAME head seen by cameras c [B,25], dilated by BACKGROUND_MARGIN -> bool [B,size,size]."""
    from faceedit_core.render.cameras import Cameras, flame_to_world
    from faceedit_core.render.rasterize import rasterize

    neutral = params.replace(global_pose=torch.zeros_like(params.global_pose), transl=torch.zeros_like(params.transl))
    world = flame_to_world(layer(neutral).vertices)
    clip = Cameras.from_eg3d_c(c.float()).project(world)
    faces = torch.as_tensor(np.asarray(layer.model.f), dtype=torch.long)
    covered = rasterize(clip, faces, (size, size)).face_id >= 0
    r = max(1, round(BACKGROUND_MARGIN * size))
    return F.max_pool2d(covered[:, None].float(), 2 * r + 1, stride=1, padding=r)[:, 0] > 0


# ----------------------------------------------------------------------------- the harness
class _Accumulator:
    def __init__(self):
        self.values: dict[str, list[float]] = {}
        self.features: list[torch.Tensor] = []

    def add(self, name: str, values) -> None:
        self.values.setdefault(name, []).extend(float(v) for v in torch.as_tensor(values).flatten())

    def mean(self, name: str) -> float:
        v = self.values.get(name, [])
        return float(np.mean(v)) if v else float("nan")


def evaluate(
    models,
    sets: list[MapperSet],
    cfg: EvalConfig = EvalConfig(),
    out: str | os.PathLike | None = None,
    real_dir: str | os.PathLike | None = None,
    inception=None,
    openface_dir: str | os.PathLike | None = None,
    identities: list[torch.Tensor] | None = None,
    starts: FlameParams | None = None,
    progress: Callable[[dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Evaluate mapper sets -> {"config", "sets": [SetResult as dicts], "baseline", "missing"}.

    models: PaperModels with CLIP (and ArcFace for the identity column). out: folder for renders
    (`renders/<set id>/<i>_edit.png`, `renders/before/<i>.png`) and the tables. real_dir +
    inception: FID/KID. openface_dir: OpenFace CSVs of the edited renders
    (`<set id>/<i>_edit.csv`). identities: ws [1,28,512] each (default seeded); starts: FlameParams [R]
    (default neutral)."""
    from faceedit_core import metrics
    from faceedit_core.au.critic import success
    from faceedit_core.au.objective import AUObjective
    from faceedit_core.next3d.generator import flame_inputs
    from faceedit_core.paper.latents import seed_latent
    from faceedit_core.paper.train import draw_uniforms
    from faceedit_core.render.cameras import orbit

    cfg.validate()
    if not sets:
        raise InputError("no trained mapper sets to evaluate (train them with `faceedit train --models DIR`)")
    if models.clip is None:
        raise InputError("the evaluation needs CLIP (DIR/clip/) for the CLIP score")
    G, layer = models.generator, models.flame
    device = layer.v_template.device
    out = Path(out) if out is not None else None
    if cfg.write_renders and out is None:
        raise InputError("write_renders needs an output folder")
    au_net = AUObjective(layer)
    starts = starts if starts is not None else FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    starts = starts.padded(layer.n_shape, layer.n_exp)
    starts = starts.replace(global_pose=torch.zeros_like(starts.global_pose), transl=torch.zeros_like(starts.transl))
    acc = {s.id: _Accumulator() for s in sets}
    before = _Accumulator()
    openface_missing = {s.id: 0 for s in sets}
    total, done = cfg.n_pairs * len(sets), 0
    gen = torch.Generator().manual_seed(cfg.seed)
    for lo in range(0, cfg.n_pairs, cfg.batch):
        idx = list(range(lo, min(cfg.n_pairs, lo + cfg.batch)))
        B = len(idx)
        if identities:
            ws = torch.cat([identities[i % len(identities)].to(device) for i in idx])
        else:
            ws = torch.cat([seed_latent(G, cfg.seed + i, device=device) for i in idx])
        params = starts.index(torch.tensor([i % starts.batch_size for i in idx])).to(device)
        c = orbit([cfg.yaw_deg] * B, [0.0] * B).eg3d_c().to(device)
        with torch.no_grad():
            state = torch.get_rng_state()
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
            uniforms = draw_uniforms(G, B, device)
            torch.set_rng_state(state)
            image0 = G.synthesis(ws, c, flame_inputs(layer, params), uniforms=uniforms)["image"]
            masks = ~head_masks(layer, params.to("cpu"), c.cpu(), image0.shape[-1]).to(device)
            if inception is not None:
                before.features.append(inception(image0).cpu())
            if out is not None and cfg.write_renders:
                for b, i in enumerate(idx):
                    _save_png(out / "renders" / "before" / f"{i:05d}.png", image0[b])
            for s in sets:
                if cancel is not None and cancel():
                    raise Cancelled(f"evaluation cancelled after {done} of {total} pairs")
                a = acc[s.id]
                ws1, p1 = edit_latent([(s.mapper.to(device), 1.0)], ws, params)
                image1 = G.synthesis(ws1, c, flame_inputs(layer, p1), uniforms=uniforms)["image"]
                a.add("clip", metrics.clip_score(models.clip, image1, s.prompt))
                before.add(f"clip:{s.prompt}", metrics.clip_score(models.clip, image0, s.prompt))
                if models.arcface is not None:
                    a.add("identity", metrics.identity_similarity(models.arcface, image1, image0))
                diff = ((image1 - image0).abs() / 2).mean(1)  # [B,H,W] in [0,1] units
                for b in range(B):
                    bg = masks[b]
                    if bg.any():
                        l1 = float(diff[b][bg].mean())
                        mse = float((diff[b][bg] ** 2).mean())
                        a.add("bg_l1", [l1])
                        a.add("bg_psnr", [10 * math.log10(1 / max(mse, 1e-10))])
                aus = target_aus(s.prompt, s.manifest)
                if aus:
                    geo = au_net.intensities(p1)
                    a.add("au_geometric", success({k: v.cpu() for k, v in geo.items()}, aus).float())
                if inception is not None:
                    a.features.append(inception(image1).cpu())
                for b, i in enumerate(idx):
                    name = f"{i:05d}_edit"
                    if out is not None and cfg.write_renders:
                        _save_png(out / "renders" / s.id / f"{name}.png", image1[b])
                    if openface_dir is not None and aus:
                        csv_path = Path(openface_dir) / s.id / f"{name}.csv"
                        if csv_path.is_file():
                            a.add("au_openface", [float(openface_success(read_openface(csv_path), aus))])
                        else:
                            openface_missing[s.id] += 1
                done += B
                if progress is not None:
                    progress({"stage": "evaluate", "step": done, "total": total, "set": s.id})
    real = None
    if real_dir is not None and inception is not None:
        images = read_images(real_dir, G.config.output_resolution, cfg.max_real)
        real = torch.cat(
            [inception(images[k : k + cfg.batch].to(device)).cpu() for k in range(0, len(images), cfg.batch)]
        )
    results = []
    for s in sets:
        a = acc[s.id]
        r = SetResult(
            set_id=s.id,
            prompt=s.prompt,
            variant=variant_of(s.manifest),
            n=cfg.n_pairs,
            target_aus=target_aus(s.prompt, s.manifest),
            au_accuracy_geometric=a.mean("au_geometric") if "au_geometric" in a.values else None,
            au_accuracy_openface=a.mean("au_openface") if "au_openface" in a.values else None,
            clip_score=a.mean("clip"),
            clip_score_before=before.mean(f"clip:{s.prompt}"),
            identity=a.mean("identity"),
            background_l1=a.mean("bg_l1"),
            background_psnr=a.mean("bg_psnr"),
            openface_missing=openface_missing[s.id],
        )
        if real is not None:
            feats = torch.cat(a.features)
            r.fid = _fid(feats, real)
            r.kid, r.kid_std = _kid(feats, real, cfg.seed)
        results.append(r)
    baseline = {"n": cfg.n_pairs}
    if real is not None:
        feats = torch.cat(before.features)
        baseline.update(fid=_fid(feats, real), kid=_kid(feats, real, cfg.seed)[0], real_images=len(real))
    report = {
        "config": asdict(cfg),
        "sets": [asdict(r) for r in results],
        "baseline": baseline,
        "missing": missing_variants(sets),
    }
    if out is not None:
        from faceedit_core.storage.atomic import atomic_write_text

        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.json", json.dumps(report, indent=1, default=_json))
        atomic_write_text(out / "table.md", table(report))
    return report


def _fid(a: torch.Tensor, b: torch.Tensor) -> float | None:
    from faceedit_core.paper.inception import fid

    return fid(a, b) if len(a) >= 2 else None


def _kid(a: torch.Tensor, b: torch.Tensor, seed: int) -> tuple[float | None, float | None]:
    from faceedit_core.paper.inception import kid

    return kid(a, b, seed=seed) if len(a) >= 2 else (None, None)


def _json(value):
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def missing_variants(sets: list[MapperSet]) -> list[dict]:
    """For each prompt with a full set: the ablations not trained yet, with the switch that trains them."""
    have = {(s.prompt, variant_of(s.manifest)) for s in sets}
    prompts = sorted({p for p, v in have if v == "full"})
    return [
        {"prompt": p, "variant": v, "train": f'faceedit train --prompt "{p}" --models DIR {switch}'}
        for p in prompts
        for v, switch in ABLATIONS.items()
        if (p, v) not in have
    ]


def table(report: dict) -> str:
    """The paper's table as Markdown: one row per variant and prompt."""

    def f(v, digits=3):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"

    lines = [
        "| variant | prompt | N | AU acc. (OpenFace) | AU acc. (geometric) | CLIP score (before) | identity |"
        " FID | KID x 1e3 | background L1 / PSNR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = ["full", *ABLATIONS]
    rows = sorted(
        report["sets"], key=lambda r: (order.index(r["variant"]) if r["variant"] in order else 99, r["prompt"])
    )
    for r in rows:
        kid_text = "n/a" if r["kid"] is None else f"{1e3 * r['kid']:.2f} +- {1e3 * r['kid_std']:.2f}"
        lines.append(
            f"| {r['variant']} | {r['prompt']} | {r['n']} | {f(r['au_accuracy_openface'], 2)} | "
            f"{f(r['au_accuracy_geometric'], 2)} | {f(r['clip_score'], 2)} ({f(r['clip_score_before'], 2)}) | "
            f"{f(r['identity'])} | {f(r['fid'], 2)} | {kid_text} | {f(r['background_l1'], 4)} / "
            f"{f(r['background_psnr'], 1)} dB |"
        )
    base = report.get("baseline", {})
    if base.get("fid") is not None:
        lines.append(f"\nUnedited Next3D renders: FID {base['fid']:.2f}, KID x 1e3 {1e3 * base['kid']:.2f}.")
    for m in report.get("missing", []):
        lines.append(f"\nNot trained: {m['variant']} for '{m['prompt']}' (`{m['train']}`).")
    return "\n".join(lines) + "\n"
