"""`faceedit`: the command line of FaceEdit.

Subcommands live in their own modules (`head`, `render`, `edit`, `train`, `demo`, `batch`,
`invert`, `eval`) and are imported only when used, so `faceedit --help` does not import torch;
what they share is in `common`, `editor_options` (the head, device and identity) and `progress`
(progress bars on stderr, Ctrl-C).
"""

from __future__ import annotations

import importlib

import click

# command name -> (module, attribute, one-line help shown by `faceedit --help`)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "head": ("faceedit_core.cli.head", "head", "Inspect and export the default head (the ICT Face Model)."),
    "render": ("faceedit_core.cli.render", "render", "Render multi-view images of a FLAME head."),
    "edit": ("faceedit_core.cli.edit", "edit", "Edit the expression of FLAME parameters from a prompt."),
    "train": ("faceedit_core.cli.train", "train", "Train (and cache) the mapper for a prompt ahead of time."),
    "demo": ("faceedit_core.cli.demo", "demo", "Run the embedded default end to end into a folder."),
    "models": ("faceedit_core.cli.demo", "models", "List the user model files found in a folder."),
    "batch": ("faceedit_core.cli.batch", "batch", "Batch edits, meshes and turntables from a spec, locally or on Ray."),
    "invert": ("faceedit_core.cli.invert", "invert", "Invert a real photo into a Next3D latent and camera."),
    "eval": ("faceedit_core.cli.eval", "eval_command", "Run the paper's evaluation of the trained mapper sets."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attribute, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="faceedit")
def main() -> None:
    """FaceEdit: text-guided fine-grained 3D facial expression editing of FLAME heads."""


if __name__ == "__main__":
    main()
