"""Which prompts to send raw and which as chat: the rule, measured.

Run (alone on the machine)::

    HF_HUB_OFFLINE=1 python benchmarks/prompt_modes.py [-n 200] [--json out.json]

The 22 prompts below were written before any measurement, 11 without and 11 with
trailing whitespace (the same wording, as a user would type it either way).
Each is scored on ``n`` two-class tweets from the corpus' *dev* half in three
ways: raw as typed (skorch's scoring: a trailing space goes with the label),
raw with the label after a space (the template's trailing whitespace dropped),
and as a chat message.  The script prints each prompt's accuracies and mean
label masses, then the mean and worst accuracy of each mode-choosing rule:
always raw, always chat, the old rule (raw iff the prompt ends with a space),
the cue rule (raw, label after a space, iff the prompt ends with a completion
cue), and choosing per prompt by the label mass on the first 16 texts.
"""

import argparse
import json

import numpy as np

PROMPTS = [
    "Labels: {labels}\n\nText: {text}\nLabel:",
    "Categories: {labels}\n\nText: {text}\nSentiment:",
    "Tweet: {text}\nSentiment ({labels}):",
    "Classify the sentiment of the tweet as one of {labels}.\n\nTweet: {text}",
    "What is the sentiment of this tweet? Choose one of {labels}.\n\nTweet: {text}",
    "{text}\n\nIs the sentiment of the text above {labels}?",
    "Review the tweet and answer with one word from {labels}.\nTweet: {text}\nAnswer:",
    "Tweet: {text}\nThe sentiment of this tweet ({labels}) is",
    "Input: {text}\nOptions: {labels}\nOutput =",
    "Decide whether the following tweet is {labels}: {text}",
    "Text: \"{text}\"\nQuestion: is it {labels}?\nAnswer ->",
    "Labels: {labels}\n\nText: {text}\nLabel: ",
    "Categories: {labels}\n\nText: {text}\nSentiment: ",
    "Tweet: {text}\nSentiment ({labels}): ",
    "Classify the sentiment of the tweet as one of {labels}.\n\nTweet: {text} ",
    "What is the sentiment of this tweet? Choose one of {labels}.\n\nTweet: {text}\n",
    "{text}\n\nIs the sentiment of the text above {labels}? ",
    "Review the tweet and answer with one word from {labels}.\nTweet: {text}\nAnswer: ",
    "Tweet: {text}\nThe sentiment of this tweet ({labels}) is ",
    "Input: {text}\nOptions: {labels}\nOutput = ",
    "Decide whether the following tweet is {labels}: {text}\n",
    "Text: \"{text}\"\nQuestion: is it {labels}?\nAnswer -> ",
]
# Endings after which a label reads as the continuation of the prompt's text.
COMPLETION_CUES = ("->", "=>", "\u2192", ":", "=", "-", '"', "'", "(", "[", "\u201c")
COMPLETION_WORDS = ("is", "are", "was", "were", "as")


def completion_cue(template):
    """The completion cue the template ends with, whitespace aside ('' if none).

    ``"...Sentiment:"``, ``"Output ="``, ``"...this tweet is"`` end with a cue:
    the label continues the text.  A question or an instruction
    (``"...? "``, ``"Tweet: {text}"``) does not.
    """
    end = template.rstrip()
    for cue in COMPLETION_CUES:
        if end.endswith(cue):
            return cue
    words = end.split()
    if words and words[-1].lower() in COMPLETION_WORDS:
        return words[-1]
    return ""


LABELS = ["negative", "positive"]
MASS_TEXTS = 16


def score(prompt, use_chat, texts, y):
    """Accuracy and mean label mass (first MASS_TEXTS texts) of one way of sending."""
    from nbllm import ZeroShotClassifier

    clf = ZeroShotClassifier(prompt=prompt, use_chat_template=use_chat, dtype="float32",
                             progress=False).fit(None, LABELS)
    logprobs = clf.label_logprobs(texts)
    accuracy = float((clf.classes_[logprobs.argmax(1)] == np.asarray(y)).mean())
    return accuracy, float(clf.label_mass(logprobs[:MASS_TEXTS]).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()

    from nbllm.tools.tweets import load_tweets

    data = load_tweets(args.n, labels=tuple(LABELS), split="dev", random_state=11)
    texts, y = data["text"].tolist(), data["label"].tolist()
    rows = []
    for prompt in PROMPTS:
        spaced = prompt.rstrip() + " "  # raw, the label after a space
        raw_as_typed = score(prompt, False, texts, y)
        raw_spaced = score(spaced, False, texts, y)
        chat = score(prompt, True, texts, y)
        rows.append({"prompt": prompt, "raw": raw_as_typed, "raw_spaced": raw_spaced,
                     "chat": chat, "cue": completion_cue(prompt)})
        print(f"{prompt!r}: raw {raw_as_typed[0]:.3f}, raw+space {raw_spaced[0]:.3f}, "
              f"chat {chat[0]:.3f}; masses {raw_as_typed[1]:.3g} {raw_spaced[1]:.3g} "
              f"{chat[1]:.3g}; cue {completion_cue(prompt)!r}", flush=True)

    rules = {
        "always raw (as typed)": lambda r: r["raw"],
        "always raw, label after a space": lambda r: r["raw_spaced"],
        "always chat": lambda r: r["chat"],
        "old rule (raw iff a trailing space)": lambda r: r["raw"]
        if r["prompt"].endswith(" ") else r["chat"],
        "cue rule (raw + space iff a completion cue)": lambda r: r["raw_spaced"]
        if r["cue"] else r["chat"],
        "by label mass (raw + space or chat)": lambda r: max(
            (r["raw_spaced"], r["chat"]), key=lambda s: s[1]),
    }
    print("\n| rule | mean accuracy | worst | mean loss to the best mode of each prompt |")
    print("|---|---|---|---|")
    for name, pick in rules.items():
        acc = np.array([pick(r)[0] for r in rows])
        best = np.array([max(r["raw"][0], r["raw_spaced"][0], r["chat"][0]) for r in rows])
        print(f"| {name} | {acc.mean():.3f} | {acc.min():.3f} | {(best - acc).mean():.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
