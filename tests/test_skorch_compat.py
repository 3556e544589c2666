"""nbllm as a drop-in for skorch.llm: few-shot prompts, get_examples and repr.

skorch is the oracle: its own ``get_examples``, ``get_prompt``, probabilities
and repr, on the same tiny model objects (fast) and on the real embedded
model (slow, in tests/test_integration.py style).
"""

import re

import numpy as np
import pandas as pd
import pytest

import nbllm
from nbllm import FewShotClassifier, ZeroShotClassifier
from tiny import get_plain_tokenizer, get_tiny_model, get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

skorch_llm = pytest.importorskip("skorch.llm")
SKORCH_FEW_SHOT = skorch_llm.prompts.DEFAULT_PROMPT_FEW_SHOT

X = ["great film", "awful film", "so so", "loved it", "hated it", "fine I guess",
     "superb", "dreadful", "okay", "brilliant", "terrible", "meh"]
Y = ["pos", "neg", "neu", "pos", "neg", "neu", "pos", "neg", "neu", "pos", "neg", "neu"]
TEXTS = ["a wonderful surprise", "the train was late"]


def tiny_objects():
    # A longer context than the default, for skorch's long few-shot prompt.
    return dict(model=get_tiny_model(1024), tokenizer=get_plain_tokenizer())


def skorch_few(**kwargs):
    return skorch_llm.FewShotClassifier(**tiny_objects(), **kwargs)


def ours_as_skorch(**kwargs):
    """nbllm with the settings that reproduce skorch's few-shot prompt."""
    kwargs.setdefault("prompt", SKORCH_FEW_SHOT)
    return FewShotClassifier(**tiny_objects(), example_template=nbllm.SKORCH_EXAMPLE_TEMPLATE,
                             example_selection="stratified", use_chat_template=False,
                             progress=False, **kwargs)


# ------------------------------------------------------------- get_examples


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
@pytest.mark.parametrize("n_samples", [1, 2, 3, 5, 12, 20])
def test_get_examples_matches_skorch(seed, n_samples):
    theirs = skorch_few(random_state=seed).fit(X, Y)
    ours = ours_as_skorch(random_state=seed).fit(X, Y)
    expected = theirs.get_examples(X, Y, n_samples)
    got = ours.get_examples(X, Y, n_samples)
    assert [(str(a), str(b)) for a, b in got] == [(str(a), str(b)) for a, b in expected]


@pytest.mark.filterwarnings("ignore:Only one label")
@pytest.mark.parametrize("seed", [0, 1, 5, 42])
@pytest.mark.parametrize("n_rows", range(1, 9))
@pytest.mark.parametrize("max_samples", [2, 5])
def test_fit_draws_skorchs_examples_in_skorchs_order_for_any_number_of_rows(
        seed, n_rows, max_samples):
    # skorch's fit asks for min(max_samples, rows): with few rows its rule
    # stops early and keeps the drawn order (issue 28, point 9).
    X_n, Y_n = X[:n_rows], Y[:n_rows]
    theirs = skorch_few(random_state=seed, max_samples=max_samples).fit(X_n, Y_n)
    ours = ours_as_skorch(random_state=seed, max_samples=max_samples).fit(X_n, Y_n)
    assert [(str(a), str(b)) for a, b in ours.examples_] == \
        [(str(a), str(b)) for a, b in theirs.examples_]
    assert ours.get_prompt("a text") == theirs.get_prompt("a text")


def test_skorchs_own_get_prompt_case_two_examples_seed_0():
    # skorch's TestFewShotClassifier.test_get_prompt, on the tiny model.
    clf = ours_as_skorch(prompt="Foo {labels} bar {text} baz {examples}",
                         random_state=0, use_caching=False)
    clf.fit(["example-1", "example-2"], ["label-a", "label-b"])
    assert clf.get_prompt("My input") == (
        "Foo ['label-a', 'label-b'] bar My input baz "
        "```\nexample-2\n```\n\nYour response:\nlabel-b\n\n"
        "```\nexample-1\n```\n\nYour response:\nlabel-a\n")


@pytest.mark.parametrize("n_samples", [3, 4, 6])
def test_get_examples_covers_every_label_when_it_can(n_samples):
    pairs = ours_as_skorch(random_state=3).fit(X, Y).get_examples(X, Y, n_samples)
    assert len(pairs) == n_samples
    assert {label for _, label in pairs} == {"pos", "neg", "neu"}
    # The one-per-label examples come last, nearest the text (as in skorch).
    assert len({label for _, label in pairs[-3:]}) == 3


def test_get_examples_gives_fewer_pairs_for_small_data_and_is_deterministic():
    clf = ours_as_skorch(random_state=5).fit(X, Y)
    pairs = clf.get_examples(X[:4], Y[:4], 10)
    assert sorted(pairs) == sorted(zip(X[:4], Y[:4]))
    assert clf.get_examples(X, Y, 4) == clf.get_examples(X, Y, 4)
    assert ours_as_skorch(random_state=6).fit(X, Y).get_examples(X, Y, 4) != \
        clf.get_examples(X, Y, 4)


def test_get_examples_takes_non_strings_and_series():
    clf = ours_as_skorch(random_state=0).fit(X, Y)
    numbers = [10, 20, 30, 40]
    pairs = clf.get_examples(numbers, ["a", "b", "a", "b"], 2)
    assert {type(text) for text, _ in pairs} == {int}
    series = pd.Series(X, index=range(100, 112))
    assert clf.get_examples(series, Y, 3) == clf.get_examples(X, Y, 3)


def test_get_examples_checks_lengths():
    clf = ours_as_skorch(random_state=0).fit(X, Y)
    msg = ("X and y don't have the same number of samples, found 12 and 2 samples, "
           "respectively")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.get_examples(X, Y[:2], 3)


def test_overriding_get_examples_changes_the_examples():
    class FirstTwo(FewShotClassifier):
        def get_examples(self, X, y, n_samples):
            return list(zip(X, y))[:2]

    clf = FirstTwo(**tiny_objects(), example_selection="stratified").fit(X, Y)
    assert clf.examples_ == [("great film", "pos"), ("awful film", "neg")]
    assert "awful film" in clf.get_prompt("x") and "so so" not in clf.get_prompt("x")


# ---------------------------------------------------- prompts and probabilities


@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("max_samples", [2, 5])
def test_skorch_prompt_character_for_character_and_probabilities(seed, max_samples):
    theirs = skorch_few(random_state=seed, max_samples=max_samples).fit(X, Y)
    ours = ours_as_skorch(random_state=seed, max_samples=max_samples).fit(X, Y)
    assert [(str(a), str(b)) for a, b in ours.examples_] == \
        [(str(a), str(b)) for a, b in theirs.examples_]
    for text in TEXTS + ["text with {labels} and ``` fences"]:
        assert ours.get_prompt(text) == theirs.get_prompt(text)
    np.testing.assert_allclose(ours.predict_proba(TEXTS), theirs.predict_proba(TEXTS),
                               atol=1e-4, rtol=0)


def test_example_template_formats_and_joins_examples():
    clf = FewShotClassifier(**tiny_objects(), prompt="{labels}|{examples}|{text}",
                            example_selection="stratified", random_state=0,
                            example_template="{label} <- {text}", max_samples=2,
                            use_chat_template=False).fit(X, Y)
    (t1, y1), (t2, y2) = clf.examples_
    assert clf.get_prompt("q") == f"['neg', 'neu', 'pos']|{y1} <- {t1}\n\n{y2} <- {t2}|q"
    clf.set_params(example_template="[{text}]={label}\n").fit(X, Y)
    assert clf.get_prompt("q") == f"['neg', 'neu', 'pos']|[{t1}]={y1}\n\n[{t2}]={y2}\n|q"


@pytest.mark.parametrize("template,problem", [
    ("{text}", "missing {label}"),
    ("{label}: {txt}", "missing {text} and unknown {txt}"),
    ("{text} {label} {extra}", "unknown {extra}"),
])
def test_example_template_must_hold_text_and_label(template, problem):
    msg = ("example_template must contain {text} and {label} and no other "
           f"placeholders; {problem} in {template!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        FewShotClassifier(**tiny_objects(), example_template=template).fit(X, Y)


def test_example_template_must_be_a_string():
    msg = "example_template must be a string with {text} and {label}; got int"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        FewShotClassifier(**tiny_objects(), example_template=3).fit(X, Y)


def test_turns_placement_ignores_the_example_template():
    objects = dict(model=get_tiny_model(), tokenizer=get_tiny_tokenizer())
    a = FewShotClassifier(**objects, example_placement="turns", random_state=0,
                          use_chat_template=True).fit(X, Y)
    b = FewShotClassifier(**objects, example_placement="turns", random_state=0,
                          use_chat_template=True,
                          example_template=nbllm.SKORCH_EXAMPLE_TEMPLATE).fit(X, Y)
    assert a.get_prompt("q") == b.get_prompt("q")


# --------------------------------------------------------------------- repr


def test_repr_quotes_model_objects_like_skorch():
    objects = tiny_objects()
    ours = repr(ZeroShotClassifier(**objects))
    theirs = repr(skorch_llm.ZeroShotClassifier(**objects))
    tokenizer = type(objects["tokenizer"]).__name__
    assert ours == theirs == (
        f"ZeroShotClassifier(model='LlamaForCausalLM', tokenizer={tokenizer!r})"
    )


# ------------------------------------------------------ the notebook layer

FMT = "{label} <- {text}"


def reference(folder, template):
    # The magic's and the accessor's default selection.
    return FewShotClassifier(folder, device="cpu", max_samples=3, random_state=0,
                             example_selection="grouped", example_template=template,
                             progress=False).fit(X, Y)


def test_fewshot_magic_takes_an_example_template(ip, tiny_folder):
    ip.user_ns["examples"] = list(zip(X, Y))
    ip.user_ns["fmt"] = FMT
    expected = reference(tiny_folder, FMT).predict_proba(TEXTS)
    for option in ("fmt", repr(FMT)):
        result = ip.run_cell_magic(
            "fewshot", f"--examples examples -k 3 --example-template {option} "
            f"--model {tiny_folder} --device cpu", "\n".join(TEXTS))
        np.testing.assert_allclose(result.frame[["proba_neg", "proba_neu", "proba_pos"]]
                                   .to_numpy(), expected, atol=1e-9)
    quoted = ip.run_cell_magic(
        "fewshot", f"--examples examples -k 3 --example-template '{{label}}: {{text}}\\n' "
        f"--model {tiny_folder} --device cpu", TEXTS[0])
    np.testing.assert_allclose(
        quoted.frame[["proba_neg", "proba_neu", "proba_pos"]].to_numpy(),
        reference(tiny_folder, "{label}: {text}\n").predict_proba(TEXTS[:1]), atol=1e-9)


def test_fewshot_magic_example_template_variable_must_be_a_string(ip):
    from IPython.core.error import UsageError

    ip.user_ns["examples"] = list(zip(X, Y))
    ip.user_ns["fmt"] = 5
    msg = "--example-template: variable 'fmt' must hold a str; got int"
    with pytest.raises(UsageError, match=f"^{re.escape(msg)}$"):
        ip.run_cell_magic("fewshot", "--examples examples --example-template fmt", "t")


def test_accessor_takes_an_example_template(tiny_folder):
    df = pd.DataFrame({"text": TEXTS})
    out = df.llm.classify("text", model=tiny_folder, device="cpu", examples=list(zip(X, Y)),
                          max_samples=3, example_template=FMT)
    np.testing.assert_allclose(out[["proba_neg", "proba_neu", "proba_pos"]].to_numpy(),
                               reference(tiny_folder, FMT).predict_proba(TEXTS), atol=1e-9)
    msg = "example_template is for few-shot; it needs examples"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        df.llm.classify("text", labels=["a", "b"], model=tiny_folder,
                        example_template=FMT)
