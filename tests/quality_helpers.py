"""Shared constructors and numpy references for the prediction-quality feature
tests (calibration, label maps, example selection, multi-label).
"""


import numpy as np

from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.estimators.multi_label import MultiLabelZeroShotClassifier
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_logprob

LABELS = ["positive", "negative", "neutral"]
CLASSES = ["negative", "neutral", "positive"]
TEXTS = ["I love it.", "The train was late again this morning.", "ok", "awful"]
FEW_X = ["good movie", "bad film", "okay show", "great", "awful", "fine"]
FEW_Y = ["pos", "neg", "neu", "pos", "neg", "neu"]

BATCH_WARNING = (
    "calibration='batch' corrects by the mean over the samples of one call; this "
    "call has only {n}, so the correction is noisy (with one sample every class "
    "gets the same probability)"
)


def zero_shot(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return ZeroShotClassifier(**kwargs)


def few_shot(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    kwargs.setdefault("random_state", 0)
    # These tests are about the mechanics of one fixed set of examples.
    kwargs.setdefault("example_selection", "stratified")
    return FewShotClassifier(**kwargs)


def multi_label(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return MultiLabelZeroShotClassifier(**kwargs)


def chat(message):
    """The tiny tokenizer's chat template around one user message."""
    return f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"


def ids_of(text, special=False):
    return get_tiny_tokenizer()(text, add_special_tokens=special)["input_ids"]


def spaced_ids(label):
    """Token ids of " " + label after other text: how the default prompts,
    which end with "Label: ", score a label."""
    return ids_of("x " + label)[len(ids_of("x")):]


def np_softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_log_softmax(a):
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def oracle_row(prompt, label_ids, special):
    """Exact log P(label | prompt) for each label, by plain forward passes."""
    p_ids = ids_of(prompt, special)
    return [oracle_logprob(get_tiny_model(), p_ids, ids) for ids in label_ids]


def messages(record):
    return [str(w.message) for w in record]


# Shared by the feature files and their notebook-layer tests.
ML_CLASSES = ["politics", "science", "sports"]
ML_TEXTS = ["Our team won the match in the final seconds.",
            "The election results were announced on Tuesday.",
            "Scientists discovered a new species of frog.",
            "ok"]
POOL_X = ["the cat sleeps on the sofa", "stocks fell on monday",
          "a dog barks at the mailman", "the bank raised interest rates",
          "birds sing in the morning", "the market rallied on friday"]
POOL_Y = ["animal", "finance", "animal", "finance", "animal", "finance"]
QUERIES = ["a dog barks at the bank", "the market rallied on friday again"]
