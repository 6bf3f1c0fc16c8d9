"""`build_editor`: the one place that chooses a tier from what the user gave (as open_clip's factory).

Nothing -> the preview tier on the embedded default head; a models folder (flame/, next3d/,
clip/, arcface/) -> the paper tier on those files. The server, the CLI, the benchmarks and
scripts call it; it sits above both tiers (editor.py, the interface, sits below them).
"""

from __future__ import annotations

from faceedit_core.editor import Editor


def preflight(models=None) -> dict:
    """Check what `build_editor(models)` needs without loading anything: {} for the embedded
    default, else what the models folder holds (MissingModelError naming every missing file)."""
    if models is None:
        return {}
    from faceedit_core.paper.mapper_sets import find_mapper_sets
    from faceedit_core.paper.models import EDIT_SLOTS, require
    from faceedit_core.storage.models_dir import ModelsDir

    md = ModelsDir(models)
    require(md, EDIT_SLOTS)
    return {**md.present(), "mappers": sorted(find_mapper_sets(md.path / "mappers"))}


def build_editor(models=None, device: str = "cpu", **options) -> Editor:
    """The editor for what the user gave: nothing -> the preview tier on the embedded default head;
    a models folder (flame/, next3d/, ...) -> the paper tier on those files. `options` go to the
    tier's editor (preview: train_config, text_to_au; paper: sr_precision, latent_seed, ...)."""
    if models is None:
        from faceedit_core.preview.editor import PreviewEditor

        return PreviewEditor.default(device=device, **options)
    from faceedit_core.paper.editor import PaperEditor

    return PaperEditor.from_models_dir(models, device, **options)
