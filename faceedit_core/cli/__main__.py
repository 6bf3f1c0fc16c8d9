"""`python -m faceedit_core.cli`: the `faceedit` command without its console script (make demo uses it)."""

from faceedit_core.cli import main

if __name__ == "__main__":
    main()
