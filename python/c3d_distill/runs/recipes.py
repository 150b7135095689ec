"""Optimisation defaults per situation: a run from random initialisation, a fine-tune from given weights, a distillation.

``train`` and ``distill`` leave every optimisation flag unset (``None``) and fill the ones not given from
the recipe of what the run is (:func:`recipe_for`); an explicit flag (or ``--config`` key) always wins.
The recipe's name and the values it filled are recorded in ``config.json`` (``recipe`` and the fields
themselves). Python callers that build a :class:`~c3d_distill.runs.config.RunConfig` directly keep its
dataclass defaults; :func:`apply_recipe` is theirs to call.

Why these numbers (``benches/bench_recipes.py``, ``benches/results/recipes.json``: 5-class temporal
synthetic set, width 1/8, 112x112, batch 8, chosen on a validation set held out from training and test):

- ``fresh``: the normalisation-free C3D sits at the constant solution (loss ln C) for many epochs with
  SGD 0.01 and dropout 0.5, and without clipping an early large step can throw it there for good. AdamW
  with one warm-up epoch, no dropout and the gradient norm clipped to 5 leaves it and learns.
- ``finetune``: the published C3D fine-tune on UCF101 (mmaction2's c3d_sports1m_16x1x1_45e_ucf101):
  SGD 1e-3, momentum 0.9, weight decay 5e-4, dropout 0.5, 45 epochs with the rate ×0.1 at 20 and 40,
  gradient norm clipped to 40.
- ``distill``: the student starts near the teacher (weight transfer). Without clipping an early step can
  diverge (loss NaN); with half a warm-up epoch and the norm clipped to 5, SGD 0.01 had the best validation
  accuracy for mc4 and sp with the feature loss (over SGD 3e-3, slower, and AdamW 3e-4), and with
  ``feature+kd`` (the default loss when the teacher has a classifier for the classes) it ties AdamW 1e-3
  for sp and is ahead of it for mc4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The RunConfig fields a recipe sets (the optimisation flags of train/distill).
FIELDS = (
    "epochs",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "step_epochs",
    "gamma",
    "clip_grad",
    "dropout",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    when: str  # what the run is, in words (for --help)
    values: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "fresh",
            "train without --init",
            dict(epochs=30, optimizer="adamw", lr=1e-3, momentum=0.9, weight_decay=1e-4, schedule="cosine",
                 warmup_epochs=1.0, step_epochs=4, gamma=0.1, clip_grad=5.0, dropout=0.0),
        ),
        Recipe(
            "finetune",
            "train --init FILE|RUN",
            dict(epochs=45, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4, schedule="step",
                 warmup_epochs=0.0, step_epochs=20, gamma=0.1, clip_grad=40.0, dropout=0.5),
        ),
        Recipe(
            "distill",
            "distill",
            dict(epochs=10, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 warmup_epochs=0.5, step_epochs=4, gamma=0.1, clip_grad=5.0, dropout=0.0),
        ),
    )
}


def recipe_for(mode: str, init: str | None) -> Recipe:
    """The recipe of a run: ``distill`` in distillation; in training ``finetune`` when it starts from given
    weights (``init`` a file or run folder), else ``fresh``."""
    if mode == "distill":
        return RECIPES["distill"]
    if mode == "train" and init not in (None, "", "transfer", "random"):
        return RECIPES["finetune"]
    return RECIPES["fresh"]


def apply_recipe(cfg, given: dict[str, Any]) -> None:
    """Set ``cfg``'s recipe fields: the ``given`` value where it is not ``None``, else the recipe's;
    ``cfg.recipe`` names the recipe. ``clip_grad`` 0 given means no clipping."""
    recipe = recipe_for(cfg.mode, cfg.init)
    cfg.recipe = recipe.name
    for k in FIELDS:
        v = given.get(k)
        setattr(cfg, k, recipe.values[k] if v is None else v)
    if cfg.clip_grad is not None and cfg.clip_grad == 0:
        cfg.clip_grad = None


def defaults_help(field: str) -> str:
    """``default: fresh X, finetune Y, distill Z`` for a flag's help (``%`` escaped for argparse)."""
    def show(v: Any) -> str:
        return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    parts = [f"{name} {show(r.values[field])}" for name, r in RECIPES.items()]
    return ("default by recipe: " + ", ".join(parts)).replace("%", "%%")
