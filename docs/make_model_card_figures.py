"""Build a model card's figures: the training curves of the run (or runs) behind a shipped model,
and its confusion matrix on PrivateTest with the card's TTA.

    python docs/make_model_card_figures.py fer2013 --curves vgg=docs/model-card-vgg-curves.csv
    python docs/make_model_card_figures.py ferplus --votes ../shared/data/ferplus/fer2013new.csv \
        --curves vgg=docs/model-card-ferplus-vgg-curves.csv

The confusion matrix reads PrivateTest, so run this only once the model is chosen and its card's
figures are measured (`fer evaluate --data ... --split PrivateTest`): it repeats that reading.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from ferkit.data.labelled import read_labelled
from ferkit.evaluation.figures import plot_confusion, plot_curves
from ferkit.inference.models import PRETRAINED_DIR, load_classifier

DOCS = Path(__file__).resolve().parent
SHARED = DOCS.parents[1] / "shared" / "data"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", help="a shipped model's name (its card's figures are written)")
parser.add_argument("--data", type=Path, default=SHARED / "fer2013" / "fer2013.csv.gz")
parser.add_argument("--votes", type=Path, help="the FER+ votes file, for a FER+ model")
parser.add_argument("--curves", nargs="+", required=True, metavar="NAME=CSV",
                    help="each training run's train_curves.csv, named for the legend")
args = parser.parse_args()

prefix = "model-card" if args.model == "fer2013" else f"model-card-{args.model}"
curves = {name: pd.read_csv(path) for name, path in (item.split("=", 1) for item in args.curves)}
plot_curves(curves, DOCS / f"{prefix}-curves.png")

tta = json.loads((PRETRAINED_DIR / f"{args.model}.json").read_text())["tta"]
classifier = load_classifier(args.model)
images, labels = read_labelled(args.data, classifier.classes, "PrivateTest", args.votes)
predicted = classifier.predict_proba(images, tta=tta).argmax(axis=1)
plot_confusion(labels, predicted, classifier.classes, f"{args.model} on PrivateTest ({tta} TTA)",
               DOCS / f"{prefix}-confusion.png")
print(f"wrote {prefix}-curves.png and {prefix}-confusion.png in {DOCS}")
