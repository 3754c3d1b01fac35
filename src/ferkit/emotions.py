"""The label sets and the image geometry, shared by every stage.

A label set is data: its class names travel with the arrays (classes.json), the checkpoints, the
ONNX metadata and every output, so a FER-2013 and a FER+ model live side by side.
"""

# The label sets, by the name that `data.labels` and `--labels` use. FER+ keeps FER-2013's seven
# classes at the same indices and adds contempt, so the two sets agree wherever they overlap.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "fer2013": ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
    "ferplus": ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral", "Contempt"),
}
# The Kaggle CSV's emotion codes 0-6 and its image folders' names are FER-2013's.
FER2013_CLASSES = LABEL_SETS["fer2013"]
# Folder names a labelled image folder may use for each class, lower case.
CLASS_SPELLINGS: dict[str, tuple[str, ...]] = {
    "Angry": ("angry", "anger"), "Disgust": ("disgust", "disgusted"), "Fear": ("fear", "fearful", "afraid"),
    "Happy": ("happy", "happiness"), "Sad": ("sad", "sadness"), "Surprise": ("surprise", "surprised"),
    "Neutral": ("neutral",), "Contempt": ("contempt", "contemptuous")}
IMAGE_SIZE = 48
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE

# Kaggle CSV `Usage` value -> our split name.
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
SPLIT_TO_USAGE: dict[str, str] = {split: usage for usage, split in USAGE_TO_SPLIT.items()}
SPLITS: tuple[str, ...] = ("train", "valid", "test")
