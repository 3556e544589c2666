"""Golden probabilities: the embedded model's numbers, pinned.

These are the probabilities a user of the embedded model sees, in float32, for
the README's example texts and a handful of real tweets (from the corpus's
eval split; the few-shot examples from its dev split), through the estimators,
a magic and the DataFrame accessor.  They were computed once with transformers
5.x and must hold, to 1e-3, on every dependency version nbllm admits: this
file is the core of the minimum-versions run (``make test-lowest``,
docs/dependencies.md), which caught transformers 4.56 building the GGUF
tokenizer with a BOS token that 5.x does not add (0.29 off on these texts).

A change that moves them on purpose (a new default prompt, say) updates the
numbers here and the README's example in the same commit.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nbllm import FewShotClassifier, ZeroShotClassifier

pytestmark = pytest.mark.slow

LABELS = ["negative", "positive"]
REAL = dict(model_name="smollm2-135m", device="cpu", dtype="float32", progress=False)
TOLERANCE = 1e-3
README = Path(__file__).resolve().parent.parent / "README.md"
GETTING_STARTED = README.parent / "docs" / "getting-started.md"

TEXTS = [
    'I love this airline',
    'lost my bag again',
    'my bag is lost again',
    '@JetBlue I just submitted feedback for you @gripeo. Not a good way 2 handle baggage or customers: http://t.co/F6COpX1Fvj',
    'äóì@nypostsports: The #Patriots are losing where it matters most -- the court of public opinion http://t.co/OwijKeuXBW #Deflategate',
    '@SouthwestAir DM sent! Thanks so much for responding! Your response was so timely, I missed it!',
    '@united severely under staffed at Iah.',
    "@united of course I would like hepl! Are you kidding me? That's the ONLY reason I've been on hold for the past 5 hours!",
    "@AmericanAir the flight I'm trying to change is in 4 hours and I've been trying to reach an agent for 72 now. THIS IS UNBELIEVABLE.",
    '@maura_lambert 4 days before #SuperBowl and funny how #DeflateGate is suddenly very quiet, just as the #NFL and #Patriots want it to be',
    '@AmericanAir thanks!',
]
TRAIN = [
    ('@JetBlue you guys operate a world class company and for that I thank you', 'positive'),
    ('Bill Nye The Science Guy Debunks DeflateGate Defense http://t.co/7kOUdW4mcd #science #deflategate #billnye', 'positive'),
    ("Patriots coach Bill Belichick opens up on 'Deflategate' http://t.co/sD3Ht0SIVq #NFL #Patriots #DeflateGate http://t.co/c5sKy0fmo7", 'negative'),
    ('@JetBlue Btw, thanks for responding quickly!!', 'positive'),
    ('@united thank you for listening to my compliant and doing the right thing. I appreciate you working with me', 'positive'),
    ('@JetBlue thank you very very much!! _\x99êÈ_\x99êÈ', 'positive'),
    ('@united Been on hold on the phone for well over half an hour, waiting to make a reservation change I *wanted* to make online. Help!', 'negative'),
    ("RT @asoorma: It's science. RT @attorneygsb: #belichick #nfl #ballghazi #deflategate http://t.co/OTTCsAoY5l", 'negative'),
    ('@VirginAmerica is the best airline I have flown on.Easy to change your reservation,helpful representatives &amp; a comfortable flying experience', 'positive'),
    ('@united UA5029 from RIC, UA507 from ORD, &amp; UA423 from DEN -ALL DELAYED for non-weather issues. Way to go, youre batting 1.000! But no hotels', 'negative'),
    ('@VirginAmerica You have the best flight attendant ever!!! http://t.co/PxdEL1nq3l', 'positive'),
    ("@USAirways but only for certain flights from CLT-NYC. The notion that you can't rebook customers for 48 hours is absurd.", 'negative'),
    ("@USAirways  you Cancelled Flighted &amp; rescheduled my flight &amp; still getting updates &amp; can't find my current flight on my account http://t.co/8Je1h3666w", 'negative'),
    ('@JetBlue Third flight in a row for my wife with her TV not working...', 'negative'),
    ("Watching Tom Brady int and he still looks like a lyin stack of sh** #DeflateGate   I hope he's stupid enough to throw towards @RSherman_25!!", 'positive'),
    ('@SouthwestAir thanks for losing my luggage', 'negative'),
]
# P(negative), P(positive) for each of TEXTS: zero-shot with the default prompt.
ZERO_SHOT = [
    [0.3769, 0.6231],
    [0.8716, 0.1284],
    [0.9223, 0.0777],
    [0.8798, 0.1202],
    [0.9071, 0.0929],
    [0.4321, 0.5679],
    [0.7540, 0.2460],
    [0.8103, 0.1897],
    [0.6722, 0.3278],
    [0.6009, 0.3991],
    [0.4071, 0.5929],
]
# The same with FewShotClassifier(max_samples=4, random_state=0) fitted on TRAIN:
# the default example_selection, 'grouped' since issue #35 (one neighbourhood for
# these 16 examples: a shared block of 3, then each text's nearest example).  The
# numbers moved on purpose with that default; FEW_SHOT_SIMILAR are the earlier
# default's, which a classifier that asks for 'similar' still gets.
FEW_SHOT = [
    [0.0933, 0.9067],
    [0.5565, 0.4435],
    [0.5304, 0.4696],
    [0.8466, 0.1534],
    [0.5905, 0.4095],
    [0.4654, 0.5346],
    [0.6052, 0.3948],
    [0.7905, 0.2095],
    [0.7475, 0.2525],
    [0.5538, 0.4462],
    [0.3549, 0.6451],
]
FEW_SHOT_SIMILAR = [
    [0.0544, 0.9456],
    [0.9525, 0.0475],
    [0.9533, 0.0467],
    [0.9158, 0.0842],
    [0.9310, 0.0690],
    [0.5758, 0.4242],
    [0.4198, 0.5802],
    [0.9755, 0.0245],
    [0.6572, 0.3428],
    [0.9081, 0.0919],
    [0.4666, 0.5334],
]


def full_forward_logprob(model, prompt_ids, label_ids):
    """log P(label | prompt) from one plain forward pass over prompt + label."""
    ids = torch.tensor([prompt_ids + label_ids])
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(-1)
    start = len(prompt_ids) - 1
    return sum(logprobs[start + i, t].item() for i, t in enumerate(label_ids))


def test_zero_shot_probabilities_are_the_golden_ones(real_model):
    clf = ZeroShotClassifier(**REAL).fit(None, LABELS)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), ZERO_SHOT, atol=TOLERANCE, rtol=0)


def test_few_shot_probabilities_are_the_golden_ones(real_model):
    clf = FewShotClassifier(**REAL, max_samples=4, random_state=0)
    clf.fit([t for t, _ in TRAIN], [y for _, y in TRAIN])
    assert clf.example_selection == "grouped"
    np.testing.assert_allclose(clf.predict_proba(TEXTS), FEW_SHOT, atol=TOLERANCE, rtol=0)


def test_few_shot_similar_keeps_its_golden_probabilities(real_model):
    clf = FewShotClassifier(**REAL, max_samples=4, random_state=0,
                            example_selection="similar")
    clf.fit([t for t, _ in TRAIN], [y for _, y in TRAIN])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), FEW_SHOT_SIMILAR, atol=TOLERANCE,
                               rtol=0)


def test_the_embedded_tokenizer_adds_no_bos(real_model):
    # The file declares add_bos_token=False, as the original SmolLM2 tokenizer.
    tokenizer = real_model.tokenizer
    assert tokenizer("a b")["input_ids"] == tokenizer("a b", add_special_tokens=False)["input_ids"]


def assert_equals_a_plain_forward_pass(clf, loaded, texts):
    """A fitted raw-probability estimator's log-probabilities for ``texts``
    equal one plain forward pass of ``loaded``'s model per text and label."""
    got = np.log(clf.predict_proba(texts))
    for row, text in zip(got, texts):
        prompt_ids = loaded.tokenizer(
            clf.get_prompt(text), add_special_tokens=not clf.use_chat_template_
        )["input_ids"]
        expected = [full_forward_logprob(loaded.model, prompt_ids, ids)
                    for ids in clf.label_ids_]
        np.testing.assert_allclose(row, expected, atol=1e-4)


def test_engine_equals_a_plain_forward_pass(real_model):
    clf = ZeroShotClassifier(**REAL, probas_sum_to_1=False, use_caching=False)
    clf.fit(None, ["negative", "positive", "very positive"])
    assert_equals_a_plain_forward_pass(clf, real_model, TEXTS[:5])


@pytest.mark.usefixtures("float32_auto")
def test_a_magic_gives_the_golden_probabilities(real_model):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbllm")
    result = shell.run_cell_magic("zeroshot", "--labels negative,positive --device cpu",
                                  "\n".join(TEXTS[:3]))
    assert result.classes == LABELS
    np.testing.assert_allclose(result.probas, ZERO_SHOT[:3], atol=TOLERANCE, rtol=0)


@pytest.mark.usefixtures("float32_auto")
def test_the_accessor_gives_the_golden_probabilities(real_model):
    import nbllm  # noqa: F401  (registers df.llm)

    df = pd.DataFrame({"text": TEXTS}, index=[f"row{i}" for i in range(len(TEXTS))])
    out = df.llm.classify("text", labels=LABELS, device="cpu", progress=False)
    assert out.index.equals(df.index)
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               ZERO_SHOT, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("page", [README, GETTING_STARTED], ids=lambda p: p.name)
def test_the_readme_example_shows_the_golden_probabilities(page):
    # The comment under predict_proba(["I love this airline", "lost my bag
    # again"]) in the README and the getting-started page, rounded to two
    # decimals.
    shown = re.search(r"# array\((\[\[.*?\]\])\)", page.read_text()).group(1)
    assert np.allclose(eval(shown), np.round(ZERO_SHOT[:2], 2))
