"""The paper tier's Editor: the user's FLAME and Next3D, mapper sets trained by `faceedit train`.

`build_editor(models=DIR)` builds it. Edits are optimisation-free (paper Sec. IX): the
mapper sets for the prompt (or the ids given) map (w, psi) -> (w', psi'), an intensity scales
the residuals and several sets compose. The Blender side sends FLAME parameters only, so the
appearance latent w is the editor's identity: a seed (`latent_seed`, through the mapping network
with the frontal camera, truncated as Next3D does), a latent file (`latent=`: a name in
DIR/latents/ or a path, e.g. a photo's from `faceedit invert`), or per call `ws=` (which
`identity_latent` resolves from a seed or a file). The w' of recent edits is remembered, so
rendering the params an edit returned shows the edited texture too. Mapper sets live in DIR/mappers/ (`<id>.json` +
its weights, see storage/mapper_store.py); `train` writes new ones there.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from faceedit_core.au.critic import AUS
from faceedit_core.editor import Editor, EditResult
from faceedit_core.errors import Cancelled, InputError, PromptNotUnderstood
from faceedit_core.paper import latents
from faceedit_core.paper.mapper_sets import MapperSet, edit_latent, find_mapper_sets, load_mapper_set, params_sha256
from faceedit_core.paper.models import EDIT_SLOTS, PaperModels, require
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit
from faceedit_core.storage.mapper_store import check_id
from faceedit_core.storage.models_dir import ModelsDir

EDITED_LATENTS_KEPT = 64


def normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.lower().replace(".", " ").split())


class PaperEditor(Editor):
    """Editor over PaperModels; mapper sets from `mappers_dir`."""

    tier = "paper"

    def __init__(
        self,
        models: PaperModels,
        mappers_dir: str | os.PathLike,
        device: str = "cpu",
        latent_seed: int = 0,
        truncation_psi: float = latents.TRUNCATION_PSI,
        train_config=None,
        models_dir: Path | None = None,
        latent: str | os.PathLike | None = None,
        truncation_cutoff: int | None = latents.TRUNCATION_CUTOFF,
    ):
        head_hash = models.hashes.get("flame", "in-memory")
        super().__init__(models.flame, head_hash, device)
        self.models, self.mappers_dir, self.models_dir = models, Path(mappers_dir), models_dir
        self.paper_train_config = train_config
        self.generator = models.generator.to(device).eval()
        self.c_front = orbit([0.0], [0.0]).eg3d_c().to(device)
        self.truncation = (truncation_psi, truncation_cutoff)
        self.latents_dir = models_dir / "latents" if models_dir is not None else None
        self.ws_base = self.identity_latent(seed=latent_seed if latent is None else None, latent=latent)
        self._sets: dict[str, MapperSet] = {}
        self._edited_ws: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def from_models_dir(
        cls, path: str | os.PathLike, device: str = "cpu", sr_precision: str = "auto", **kwargs
    ) -> "PaperEditor":
        """FLAME + landmarks + Next3D from DIR (MissingModelError naming each missing file)."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise InputError(
                f"model folder {path} does not exist (it holds flame/, next3d/, clip/, arcface/, mappers/)"
            )
        require(ModelsDir(path), EDIT_SLOTS)
        models = PaperModels.from_models_dir(path, device, sr_precision=sr_precision)
        return cls(models, path / "mappers", device, models_dir=path, **kwargs)

    # ------------------------------------------------------------------ identities
    def identity_latent(
        self, seed: int | None = None, latent: str | os.PathLike | None = None, names_only: bool = False
    ) -> torch.Tensor:
        """The ws [1,28,512] of an identity: a seed, or a latent file (a name in DIR/latents/, or a
        path unless `names_only`, which the server sets: clients name files, never paths)."""
        if (seed is None) == (latent is None):
            raise InputError("an identity is a seed or a latent file: give exactly one")
        if seed is not None:
            psi, cutoff = self.truncation
            return latents.seed_latent(self.generator, seed, psi, cutoff, self.device)
        return latents.load_latent(self._latent_path(latent, names_only)).ws[:1].to(self.device)

    def _latent_path(self, latent: str | os.PathLike, names_only: bool) -> Path:
        known = latents.find_latents(self.latents_dir) if self.latents_dir is not None else {}
        if isinstance(latent, str) and latent in known:
            return known[latent]
        if names_only:
            name = latents.latent_stem(self.latents_dir or ".", str(latent)).name  # checks it is a name
            raise InputError(
                f"no latent file named '{name}' in the models folder's latents/ "
                f"(known: {', '.join(sorted(known)) or 'none'}; `faceedit invert` writes them)"
            )
        return Path(latent).expanduser()

    def references_folder(self, name: str) -> Path:
        """DIR/refs/<name>: a folder of EMOCA/DECA outputs for training, by name (never a path)."""
        if self.models_dir is None:
            raise InputError("reference folders live in a models folder's refs/: this editor has none")
        stem = latents.latent_stem(self.models_dir / "refs", name)  # the same name rule as latents
        if not stem.is_dir():
            raise InputError(f"no reference folder named '{stem.name}' in the models folder's refs/")
        return stem

    def latent_names(self) -> list[str]:
        """Names of the latent files in DIR/latents/."""
        return sorted(latents.find_latents(self.latents_dir)) if self.latents_dir is not None else []

    # ------------------------------------------------------------------ mapper sets
    def mapper_sets(self) -> dict[str, Path]:
        return find_mapper_sets(self.mappers_dir)

    def mapper(self, mapper_id: str):
        return self.mapper_set(mapper_id).mapper

    def mapper_set(self, mapper_id: str) -> MapperSet:
        check_id(mapper_id)
        with self._lock:
            if mapper_id not in self._sets:
                stem = self.mapper_sets().get(mapper_id)
                if stem is None:
                    raise InputError(
                        f"unknown mapper id '{mapper_id}': no mapper set of that name in the models folder's mappers/"
                    )
                ms = load_mapper_set(stem)
                if ms.mapper.config.n_exp > self.layer.n_exp:
                    raise InputError(
                        f"mapper set '{mapper_id}' edits {ms.mapper.config.n_exp} expression coefficients, "
                        f"this FLAME model has {self.layer.n_exp}"
                    )
                ms.mapper.to(self.device)
                self._sets[mapper_id] = ms
            return self._sets[mapper_id]

    def _prompts(self) -> dict[str, str]:
        """{normalised prompt: mapper id} of the trained sets."""
        out = {}
        for mid in self.mapper_sets():
            out.setdefault(normalise_prompt(self.mapper_set(mid).prompt), mid)
        return out

    def mapper_for_prompt(self, prompt: str) -> str:
        prompts = self._prompts()
        mid = prompts.get(normalise_prompt(prompt))
        if mid is None:
            known = [self.mapper_set(m).prompt for m in prompts.values()]
            raise PromptNotUnderstood(
                f"no mapper set trained for prompt {prompt!r} in the models folder's mappers/ (train one with "
                f'`faceedit train --prompt "{prompt}" --models {self.models_dir or "DIR"}`)',
                known,
            )
        return mid

    def known_expressions(self) -> list[str]:
        return [self.mapper_set(m).prompt for m in self.mapper_sets()]

    # ------------------------------------------------------------------ editing
    def _edit(self, params, prompt, ids, intensity, progress, cancel, ws: torch.Tensor | None = None) -> EditResult:
        """Editor.edit: params [B] -> edited params, vertices [B,V,3], landmarks [B,68,3], geometric AUs.

        ws [B,28,512] or [1,28,512]: the heads' appearance latents (e.g. from GAN inversion of a
        photo); default the seeded base latent. The edited w' is kept for `render` (`latent_for`)."""
        if prompt is not None:
            ids.insert(0, self.mapper_for_prompt(prompt))
        params = self.checked_params(params)
        sets = [self.mapper_set(m) for m in ids]
        target: dict[str, float] = {}
        for s in sets:
            target.update(s.manifest.get("au_target") or {})
        with self._lock, torch.no_grad():
            p = params.to(self.device)
            ws = (self.ws_base if ws is None else self._check_ws(ws)).expand(p.batch_size, -1, -1)
            ws_edit, edited = edit_latent([(s.mapper, float(intensity)) for s in sets], ws, p)
            out = self.layer(edited)
            au = self.objective.intensities(edited)
            edited_cpu = edited.to("cpu")
            for b in range(edited_cpu.batch_size):
                self._remember(params_sha256(edited_cpu.index(b)), ws_edit[b : b + 1])
        return EditResult(
            edited_cpu, out.vertices.cpu(), out.landmarks.cpu(), {a: au[a].cpu().tolist() for a in AUS}, target, ids
        )

    def _check_ws(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.dim() != 3 or tuple(ws.shape[1:]) != tuple(self.ws_base.shape[1:]) or not torch.isfinite(ws).all():
            raise InputError(
                f"ws must be finite with shape [B,{self.ws_base.shape[1]},{self.ws_base.shape[2]}], "
                f"got {list(ws.shape)}"
            )
        return ws.to(self.device, torch.float32)

    def _remember(self, key: str, ws: torch.Tensor) -> None:
        self._edited_ws[key] = ws
        self._edited_ws.move_to_end(key)
        while len(self._edited_ws) > EDITED_LATENTS_KEPT:
            self._edited_ws.popitem(last=False)

    def latent_for(self, params: FlameParams, default: torch.Tensor | None = None) -> torch.Tensor:
        """ws [1,28,512] for one params item: its edit's w' when it came from an edit here, else
        `default` (else the editor's identity)."""
        return self._edited_ws.get(params_sha256(params), self.ws_base if default is None else default)

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        params: FlameParams,
        cameras,
        size: int = 512,
        progress: Callable | None = None,
        cancel: Callable | None = None,
        ws: torch.Tensor | None = None,
    ) -> np.ndarray:
        """params [B] -> uint8 RGBA [B,N,H,W,4] Next3D renders (tri-planes once per item, then each view).

        Each item's latent is its edit's w' when it came from an edit here, else `ws` ([1,28,512] or
        [B,28,512], e.g. an identity_latent) or the editor's identity."""
        from faceedit_core.next3d.generator import flame_inputs
        from faceedit_core.render.images import to_uint8

        params = self.checked_params(params)
        base = None if ws is None else self._check_ws(ws)
        if base is not None and base.shape[0] not in (1, params.batch_size):
            raise InputError(f"ws must have batch 1 or {params.batch_size}, got {base.shape[0]}")
        cams = cameras.eg3d_c().to(self.device)
        out, total, done = [], params.batch_size * len(cams), 0
        with self._lock, torch.no_grad():
            for b in range(params.batch_size):
                item = params.index(b)
                own = None if base is None else base[min(b, base.shape[0] - 1)][None]
                ws = self.latent_for(item, own)
                planes = self.generator.planes(ws, flame_inputs(self.layer, item.to(self.device)))
                views = []
                for v in range(len(cams)):
                    if cancel is not None and cancel():
                        raise Cancelled(f"render cancelled after {done} of {total} views")
                    rgb = self.generator.render_view(planes, ws, cams[v : v + 1])["image"]
                    rgb = torch.nn.functional.interpolate(
                        rgb, size=(size, size), mode="bilinear", align_corners=False, antialias=rgb.shape[-1] > size
                    )
                    rgba = torch.cat(
                        [(rgb[0].permute(1, 2, 0) + 1) / 2, torch.ones(size, size, 1, device=rgb.device)], -1
                    )
                    views.append(to_uint8(rgba.clamp(0, 1).cpu().numpy()))
                    done += 1
                    if progress is not None:
                        progress({"stage": "render", "step": done, "total": total})
                out.append(np.stack(views))
        return np.stack(out)

    # ------------------------------------------------------------------ real photos (paper Sec. VI)
    def invert(
        self,
        photo,
        params: FlameParams,
        name: str | None = None,
        config=None,
        progress: Callable | None = None,
        cancel: Callable | None = None,
        perceptual=None,
        path: str | os.PathLike | None = None,
    ) -> dict:
        """A photo (PNG/JPEG bytes or a path, aligned as Next3D's data) and its FLAME params [1] ->
        its latent and camera by optimisation (paper/invert.py), saved as DIR/latents/<name> (a name:
        the server) or at `path` (a latent file stem: the CLI); `identity_latent(latent=...)` then
        edits it. ArcFace (DIR/arcface/) and LPIPS (`perceptual`, else DIR/perceptual/) join the
        loss when their files are there.

        -> {"latent": the manifest written or None, "ws" [1,28,512], "c" [1,25], "losses",
        "image" [1,3,S,S] (the reconstruction)}."""
        from faceedit_core.paper import invert as inv

        if name is not None and path is not None:
            raise InputError("save an inversion by name or at a path, not both")
        if name is not None and self.latents_dir is None:
            raise InputError("saving a latent by name needs a models folder (its latents/)")
        stem = latents.latent_stem(self.latents_dir, name) if name is not None else path
        cfg = (config or inv.InvertConfig()).validate()
        image = inv.load_photo(photo, self.generator.config.output_resolution)
        params = self.checked_params(params)
        with self._lock:
            used = self._inversion_networks(cfg, perceptual)
            net = used.pop("perceptual")
            result = inv.invert_photo(self.models, image, params, cfg, net, progress, cancel)
        info = {
            "photo_sha256": inv.photo_sha256(photo),
            "config": cfg.to_dict(),
            "model_hashes": {**dict(self.models.hashes), **used},
        }
        manifest = inv.save_inversion(stem, result, info) if stem is not None else None
        return {"latent": manifest, "ws": result.ws, "c": result.c, "losses": result.losses, "image": result.image}

    def _inversion_networks(self, cfg, perceptual=None) -> dict:
        """ArcFace (loaded when the identity weight is > 0 and its file is there) and the LPIPS net
        (`perceptual`, else DIR/perceptual/'s files) -> {"perceptual": net or None, sha256 of files used}."""
        from faceedit_core.paper.invert import perceptual_files
        from faceedit_core.paper.perceptual import load_perceptual
        from faceedit_core.storage.home import sha256_file

        used: dict = {"perceptual": perceptual if cfg.perceptual > 0 else None}
        if self.models_dir is None:
            return used
        md = ModelsDir(self.models_dir)
        if cfg.identity > 0 and self.models.arcface is None and md.find("arcface") is not None:
            from faceedit_core.paper.arcface import load_arcface

            self.models.arcface = load_arcface(md.find("arcface"), device=self.device)
            self.models.hashes["arcface"] = sha256_file(md.find("arcface"))
        vgg, lpips = perceptual_files(self.models_dir)
        if perceptual is None and vgg is not None and cfg.perceptual > 0:
            used["perceptual"] = load_perceptual(vgg, lpips, self.device)
            used["perceptual_vgg"] = sha256_file(vgg)
            if lpips is not None:
                used["perceptual_lpips"] = sha256_file(lpips)
        return used

    # ------------------------------------------------------------------ training
    def train(
        self,
        prompt: str,
        progress: Callable | None = None,
        cancel: Callable | None = None,
        refs: FlameParams | str | os.PathLike | None = None,
        neutral: bool | None = None,
        basis: str | None = None,
        basis_prompts: list[str] | tuple[str, ...] | None = None,
    ) -> str:
        """Train a mapper set for prompt into the mappers folder (CLIP and ArcFace from the model folder).

        refs: reference FLAME parameters (FlameParams [R], or a folder of EMOCA/DECA outputs): the
        starting expressions, as the paper trains; without them the neutral face ("w/o ref").
        neutral: force the neutral start (the references then give shapes only). basis /
        basis_prompts: the PAE basis and its prompts (default the training config's)."""
        from faceedit_core.paper.train import PaperTrainConfig, load_refs, train_mappers

        if self.models.clip is None:
            if self.models_dir is None:
                raise InputError("training needs CLIP and ArcFace: load them into the PaperModels first")
            self.models.load_guidance(ModelsDir(self.models_dir), self.device)
        if refs is not None and not isinstance(refs, FlameParams):
            refs = load_refs(refs, self.layer.n_shape, self.layer.n_exp)
        base = self.paper_train_config or PaperTrainConfig()
        changes = {"prompt": prompt, "neutral": refs is None if neutral is None else bool(neutral)}
        if basis is not None:
            changes["basis"] = basis
        if basis_prompts is not None:
            changes["basis_prompts"] = tuple(basis_prompts)
        result = train_mappers(
            self.models, replace(base, **changes), self.mappers_dir, refs, progress=progress, cancel=cancel
        )
        with self._lock:
            self._sets.pop(result.mapper_path.stem, None)
        return result.mapper_path.stem
