"""Trained weights that ship with the package; `ferkit.choices.SHIPPED_MODELS` names them and
docs/MODEL_CARD.md describes them."""
