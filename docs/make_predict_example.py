"""Build docs/predict-example.png: synthetic faces (ferkit.synth) pasted into a scene, then `fer predict --annotate`."""
import sys
from pathlib import Path

import cv2
import numpy as np

from ferkit.cli import main
from ferkit.data.synth import generate
from ferkit.emotions import EMOTIONS
from ferkit.inference.detectors import haar_detector

model, out = sys.argv[1], Path(sys.argv[2])
faces, labels = generate(8, seed=7)
detect = haar_detector()
wanted = ["Happy", "Surprise", "Angry", "Sad", "Neutral"]
spots = [(40, 60, 150), (240, 170, 170), (460, 50, 150), (650, 200, 160), (40, 260, 160)]
rows, cols = np.mgrid[0:480, 0:840]
scene = np.stack([150 + 60 * cols / 840, 120 + 50 * rows / 480, 90 + 40 * (1 - cols / 840)], axis=-1)
scene = np.clip(scene, 0, 255).astype(np.uint8)  # smooth: keeps the PNG small
spot = iter(spots)
for name in wanted:
    for face, label in zip(faces, labels):
        if EMOTIONS[label] != name:
            continue
        big = cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC)
        patch = np.full((230, 230), 128, np.uint8)
        patch[40:190, 40:190] = big
        if len(detect(patch)) == 1:
            x, y, side = next(spot)
            resized = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
            scene[y:y + side, x:x + side] = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
            print(name, "at", (x, y, side))
            break
cv2.imwrite(str(out / "scene.png"), scene)
sys.exit(main(["predict", str(out / "scene.png"), "--model", model, "--annotate", str(out / "annotated")]))
