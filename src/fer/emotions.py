"""The FER-2013 label set and image geometry, shared by every stage."""

EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(EMOTIONS)
# Folder names a labelled image folder may use for each emotion, lower case, in EMOTIONS order.
EMOTION_SPELLINGS: tuple[tuple[str, ...], ...] = (
    ("angry", "anger"), ("disgust", "disgusted"), ("fear", "fearful", "afraid"), ("happy", "happiness"),
    ("sad", "sadness"), ("surprise", "surprised"), ("neutral",))
IMAGE_SIZE = 48
PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE

# Kaggle CSV `Usage` value -> our split name.
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
SPLITS: tuple[str, ...] = ("train", "valid", "test")
