"""`build_editor`: the one place that chooses a tier from what the user gave (as open_clip's factory).

- nothing -> the preview tier on the embedded default head;
- `flame=FILE` (FLAME 2020 generic_model.pkl, FLAME 2023 flame2023*.pkl, ...) -> the preview tier
  on that head, with DECA's landmark embedding from `landmarks=`, beside the file, or in the
  models folder's flame/;
- a models folder with flame/ and next3d/ -> the paper tier on those files;
- a models folder with flame/ but no Next3D -> the preview tier on its FLAME (instead of refusing).
The server, the CLI, the benchmarks and scripts call it; it sits above both tiers (editor.py, the
interface, sits below them).
"""

from __future__ import annotations

from pathlib import Path

from faceedit_core.editor import Editor


def _tier(models, flame) -> str:
    """'preview' or 'paper' for what the user gave (no file is read)."""
    if flame is not None or models is None:
        return "preview"
    from faceedit_core.storage.models_dir import ModelsDir

    md = ModelsDir(models)
    return "preview" if md.find("next3d") is None and md.find("flame") is not None else "paper"


def preflight(models=None, flame=None, landmarks=None) -> dict:
    """Check what `build_editor(models, flame=..., landmarks=...)` needs without loading any model:
    {} for the embedded default; else what it will use ({"tier", files..., "mappers"}).
    MissingModelError names every missing file and where to get it."""
    if models is None and flame is None:
        return {}
    if _tier(models, flame) == "preview":
        from faceedit_core.errors import MissingModelError
        from faceedit_core.preview.head import find_landmarks
        from faceedit_core.storage.models_dir import ModelsDir

        path = Path(flame).expanduser() if flame is not None else ModelsDir(models).find("flame")
        if not path.is_file():
            raise MissingModelError(
                f"FLAME model {path} not found: download FLAME 2020 (generic_model.pkl) or FLAME 2023 "
                "from the FLAME website (flame.is.tue.mpg.de, registration required)"
            )
        lm = find_landmarks(path, landmarks, models)
        return {"tier": "preview", "flame": str(path), "landmarks": [str(p) for p in lm], "mappers": []}
    from faceedit_core.paper.mapper_sets import find_mapper_sets
    from faceedit_core.paper.models import EDIT_SLOTS, require
    from faceedit_core.storage.models_dir import ModelsDir

    md = ModelsDir(models)
    require(md, EDIT_SLOTS)
    return {"tier": "paper", **md.present(), "mappers": sorted(find_mapper_sets(md.path / "mappers"))}


def build_editor(
    models=None, device: str = "cpu", flame=None, landmarks=None, n_exp: int | None = None, **options
) -> Editor:
    """The editor for what the user gave (see the module docstring). n_exp: the expression width the
    preview tier edits on a FLAME file (default 50, up to the file's 100). `options` go to the tier's
    editor (preview: train_config, text_to_au, fine_tune_steps; paper: sr_precision, latent_seed, ...)."""
    if _tier(models, flame) == "preview":
        from faceedit_core.preview.editor import PreviewEditor

        options.pop("sr_precision", None)  # a paper-tier option the server passes with --models
        if flame is None and models is None:
            if n_exp is not None:
                from faceedit_core.errors import InputError

                raise InputError("n_exp applies to a FLAME file (--flame or a models folder's flame/)")
            return PreviewEditor.default(device=device, **options)
        if flame is None:
            from faceedit_core.storage.models_dir import ModelsDir

            flame = ModelsDir(models).find("flame")
        return PreviewEditor.from_flame_file(flame, landmarks, models, n_exp, device=device, **options)
    from faceedit_core.paper.editor import PaperEditor

    return PaperEditor.from_models_dir(models, device, **options)
