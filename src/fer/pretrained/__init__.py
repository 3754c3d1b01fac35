"""Trained weights that ship with the package; `fer.choices.SHIPPED_MODELS` names them and
docs/MODEL_CARD.md describes them."""
