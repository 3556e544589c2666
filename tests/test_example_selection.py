"""Few-shot example selection: similar, grouped, stratified, random; placement as turns.
"""

import re

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from nbllm import DEFAULT_PROMPT_FEW_SHOT, FewShotClassifier
from nbllm.engine.scoring.prompts import format_examples
from nbllm.estimators.example_selection import GroupedExamples

from quality_helpers import (
    FEW_X,
    FEW_Y,
    POOL_X,
    POOL_Y,
    QUERIES,
    few_shot,
    oracle_row,
    spaced_ids,
)
from tiny import get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")




@pytest.mark.parametrize("seed", range(4))
def test_stratified_covers_each_label(seed):
    X = FEW_X + ["so so", "terrific", "horrible", "meh"]
    y = FEW_Y + ["neu", "pos", "neg", "neu"]
    clf = few_shot(example_selection="stratified", max_samples=4,
                   random_state=seed).fit(X, y)
    labels = [label for _, label in clf.examples_]
    assert len(clf.examples_) == 4
    assert set(labels) == {"neg", "neu", "pos"}
    assert set(clf.examples_) <= set(zip(X, y))
    assert len(set(clf.examples_)) == 4


def test_random_selection_is_deterministic_and_drawn_from_the_data():
    X = FEW_X + ["so so", "terrific"]
    y = FEW_Y + ["neu", "pos"]
    a = few_shot(example_selection="random", max_samples=3, random_state=5).fit(X, y)
    b = few_shot(example_selection="random", max_samples=3, random_state=5).fit(X, y)
    assert a.examples_ == b.examples_
    chosen = np.random.RandomState(5).choice(len(X), size=3, replace=False)
    assert a.examples_ == [(X[i], y[i]) for i in chosen]
    assert a.examples_for(["x", "y"]) == [a.examples_, a.examples_]
    everything = few_shot(example_selection="random", max_samples=50).fit(X, y)
    assert sorted(everything.examples_) == sorted(zip(X, y))


def test_similar_selection_picks_nearest_texts_per_query():
    clf = few_shot(example_selection="similar", max_samples=2).fit(POOL_X, POOL_Y)
    assert clf.examples_ is None
    assert clf.examples_for(QUERIES) == [
        # One per class; the near-copy of the query sits last.
        [("the bank raised interest rates", "finance"),
         ("a dog barks at the mailman", "animal")],
        [("the cat sleeps on the sofa", "animal"),
         ("the market rallied on friday", "finance")],
    ]


def test_similar_selection_takes_classes_in_turn_and_ends_with_the_nearest():
    clf = few_shot(example_selection="similar", max_samples=4).fit(POOL_X, POOL_Y)
    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(POOL_X)
    pool = vectorizer.transform(POOL_X)
    for query, examples in zip(QUERIES, clf.examples_for(QUERIES)):
        sims = (vectorizer.transform([query]) @ pool.T).toarray()[0]
        index = [POOL_X.index(t) for t, _ in examples]
        assert [lab for _, lab in examples] == [POOL_Y[i] for i in index]
        assert sorted(lab for _, lab in examples) == ["animal"] * 2 + ["finance"] * 2
        for label in ("animal", "finance"):
            members = [i for i in range(6) if POOL_Y[i] == label]
            best_two = sorted(members, key=lambda i: -sims[i])[:2]
            assert sorted(i for i in index if POOL_Y[i] == label) == sorted(best_two)
        assert list(sims[index]) == sorted(sims[index])  # most similar last
        assert index[-1] == int(np.argmax(sims))
    assert clf.examples_for(QUERIES)[0] == [
        ("the market rallied on friday", "finance"),
        ("the cat sleeps on the sofa", "animal"),
        ("the bank raised interest rates", "finance"),
        ("a dog barks at the mailman", "animal"),
    ]


def test_similar_selection_prompts_and_probabilities_per_text():
    clf = few_shot(example_selection="similar", max_samples=2,
                   use_caching=False).fit(POOL_X, POOL_Y)
    raw = few_shot(example_selection="similar", max_samples=2, use_caching=False,
                   probas_sum_to_1=False).fit(POOL_X, POOL_Y)
    texts = QUERIES + ["birds and stocks"]
    per_text = clf.examples_for(texts)
    assert per_text[0] != per_text[1]
    # The default prompt is sent raw, its final space scored with the labels.
    assert clf.use_chat_template_ is False
    label_ids = [spaced_ids("animal"), spaced_ids("finance")]
    assert clf.label_ids_ == label_ids
    expected = []
    for text, examples in zip(texts, per_text):
        message = DEFAULT_PROMPT_FEW_SHOT.format(
            labels="['animal', 'finance']", examples=format_examples(examples), text=text)
        assert message.endswith("Label: ")
        assert clf.get_prompt(text) == message[:-1]
        expected.append(np.exp(oracle_row(message[:-1], label_ids, True)))
    expected = np.array(expected)
    np.testing.assert_allclose(raw.predict_proba(texts), expected, rtol=1e-5, atol=0)
    np.testing.assert_allclose(clf.predict_proba(texts),
                               expected / expected.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=0)
    one_by_one = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(clf.predict_proba(texts), one_by_one, rtol=1e-5, atol=0)


def test_similar_selection_equals_fixed_examples_with_the_same_prompt():
    clf = few_shot(example_selection="similar", max_samples=2).fit(POOL_X, POOL_Y)
    for text, examples in zip(QUERIES, clf.examples_for(QUERIES)):
        fixed = few_shot(max_samples=2).fit(POOL_X, POOL_Y)
        fixed.examples_ = list(examples)  # the same examples, in the same order
        assert fixed.get_prompt(text) == clf.get_prompt(text)
        np.testing.assert_allclose(clf.predict_proba([text]), fixed.predict_proba([text]),
                                   rtol=1e-5, atol=0)


@pytest.mark.parametrize("selection", ["nearest", None, "Similar"])
def test_bad_example_selection(selection):
    msg = ("example_selection must be 'stratified', 'random', 'similar' or 'grouped'; "
           f"got {selection!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot(example_selection=selection).fit(FEW_X, FEW_Y)


# ------------------------------------------------------------------ 'grouped'
# Three topics, each with both labels: k-means with three groups finds them.
TOPIC_X = [
    "the cat sleeps on the warm sofa", "a dog barks at the cat all night",
    "the cat and the dog play together", "a sad dog waits in the rain",
    "stocks rallied and the market rose", "the bank raised interest rates again",
    "the market fell and stocks crashed", "bank profits rose with the market",
    "the team won the football match", "the football team lost the match",
    "a great goal won the football game", "the game ended in a bad loss for the team",
]
TOPIC_Y = ["pos", "neg", "pos", "neg", "pos", "neg", "neg", "pos", "pos", "neg", "pos",
           "neg"]
TOPIC_OF = [0] * 4 + [1] * 4 + [2] * 4
TOPIC_QUERIES = ["my cat and my dog", "stocks and the bank", "the team and the match",
                 "the dog sleeps", "the market crashed", "a football goal"]


def grouped(**kwargs):
    kwargs.setdefault("example_selection", "grouped")
    return few_shot(**kwargs)


def test_grouped_shares_one_block_per_neighbourhood_then_the_nearest():
    sel = GroupedExamples(TOPIC_X, TOPIC_Y, 3, groups=3)
    assert sel.groups == 3 and sel.per_text == 1
    # Each block: one example of each label, from one topic, least central first.
    for block, centre in zip(sel.blocks, sel.centre_sims):
        assert len(block) == 2
        assert sorted(TOPIC_Y[i] for i in block) == ["neg", "pos"]
        assert len({TOPIC_OF[i] for i in block}) == 1
        assert centre[block[0]] <= centre[block[1]]
    assert sorted(TOPIC_OF[b[0]] for b in sel.blocks) == [0, 1, 2]
    groups = sel.group_of(TOPIC_QUERIES)
    assert groups[:3] == groups[3:] and sorted(groups[:3]) == [0, 1, 2]
    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(TOPIC_X)
    pool = vectorizer.transform(TOPIC_X)
    for query, group, picked in zip(TOPIC_QUERIES, groups, sel.nearest(TOPIC_QUERIES)):
        block = sel.blocks[group]
        assert picked[:2] == block  # the same block, in the same order
        sims = (vectorizer.transform([query]) @ pool.T).toarray()[0]
        others = [i for i in range(len(TOPIC_X)) if i not in block]
        assert picked[2] == max(others, key=lambda i: (sims[i], -i))


def test_grouped_prompts_share_everything_up_to_the_own_example():
    clf = grouped(max_samples=3).fit(TOPIC_X, TOPIC_Y)
    clf.selector_ = GroupedExamples(TOPIC_X, TOPIC_Y, 3, groups=3)
    first, again = clf.get_prompt(TOPIC_QUERIES[0]), clf.get_prompt(TOPIC_QUERIES[3])
    block = format_examples(clf.examples_for(TOPIC_QUERIES[:1])[0][:2])
    shared = "Labels: ['neg', 'pos']\n\n" + block + "\n\nText: "
    assert first.startswith(shared) and again.startswith(shared)
    assert clf.examples_for(TOPIC_QUERIES[:1])[0][2] != clf.examples_for(
        TOPIC_QUERIES[3:4])[0][2]
    ids = clf.prompt_token_ids([TOPIC_QUERIES[0], TOPIC_QUERIES[3]])
    head = get_tiny_tokenizer()(shared.rstrip(" "))["input_ids"]  # with BOS, as sent
    assert ids[0][:len(head)] == ids[1][:len(head)] == head


@pytest.mark.parametrize("random_state", [None, 0, 5])
def test_grouped_is_deterministic_and_ignores_random_state(random_state):
    expected = grouped(max_samples=3).fit(TOPIC_X, TOPIC_Y).examples_for(TOPIC_QUERIES)
    clf = grouped(max_samples=3, random_state=random_state).fit(TOPIC_X, TOPIC_Y)
    assert clf.examples_ is None
    assert clf.examples_for(TOPIC_QUERIES) == expected
    a, b = (GroupedExamples(TOPIC_X, TOPIC_Y, 3, groups=3) for _ in range(2))
    assert a.blocks == b.blocks and a.nearest(TOPIC_QUERIES) == b.nearest(TOPIC_QUERIES)


def test_a_grouped_prompt_depends_only_on_its_text():
    clf = grouped(max_samples=3, use_caching=False).fit(TOPIC_X, TOPIC_Y)
    clf.selector_ = GroupedExamples(TOPIC_X, TOPIC_Y, 3, groups=3)
    together = clf.examples_for(TOPIC_QUERIES)
    ids = clf.prompt_token_ids(TOPIC_QUERIES)
    probas = clf.predict_proba(TOPIC_QUERIES)
    for i, text in enumerate(TOPIC_QUERIES):
        assert clf.examples_for([text]) == [together[i]]
        assert clf.prompt_token_ids([text]) == [ids[i]]
    subset = [TOPIC_QUERIES[4], TOPIC_QUERIES[1]]
    assert clf.prompt_token_ids(subset) == [ids[4], ids[1]]
    np.testing.assert_allclose(clf.predict_proba(subset), probas[[4, 1]], rtol=1e-5,
                               atol=0)


def test_grouped_get_prompt_and_examples_for_are_what_is_scored():
    clf = grouped(max_samples=3, use_caching=False, probas_sum_to_1=False).fit(
        TOPIC_X, TOPIC_Y)
    clf.selector_ = GroupedExamples(TOPIC_X, TOPIC_Y, 3, groups=3)
    label_ids = [spaced_ids("neg"), spaced_ids("pos")]
    assert clf.label_ids_ == label_ids
    expected = []
    for text, examples in zip(TOPIC_QUERIES, clf.examples_for(TOPIC_QUERIES)):
        message = DEFAULT_PROMPT_FEW_SHOT.format(
            labels="['neg', 'pos']", examples=format_examples(examples), text=text)
        assert clf.get_prompt(text) == message[:-1]
        expected.append(np.exp(oracle_row(message[:-1], label_ids, True)))
        fixed = few_shot(max_samples=3, use_caching=False,
                         probas_sum_to_1=False).fit(TOPIC_X, TOPIC_Y)
        fixed.examples_ = list(examples)
        np.testing.assert_allclose(clf.predict_proba([text]),
                                   fixed.predict_proba([text]), rtol=1e-5, atol=0)
    np.testing.assert_allclose(clf.predict_proba(TOPIC_QUERIES), np.array(expected),
                               rtol=1e-5, atol=0)


def test_grouped_with_a_pool_smaller_than_max_samples():
    clf = grouped(max_samples=10).fit(TOPIC_X[:3], TOPIC_Y[:3])
    for examples in clf.examples_for(TOPIC_QUERIES):
        assert sorted(examples) == sorted(zip(TOPIC_X[:3], TOPIC_Y[:3]))
    assert clf.predict_proba(TOPIC_QUERIES).shape == (6, 2)


def test_grouped_with_fewer_examples_than_classes():
    X, y = TOPIC_X[:6], ["a", "b", "c", "a", "b", "c"]
    sel = GroupedExamples(X, y, 2, groups=2)
    for picked in sel.nearest(TOPIC_QUERIES):
        assert len(picked) == 2 and len(set(picked)) == 2
    clf = grouped(max_samples=1).fit(X, y)
    # One example: a shared block of one, nothing per text.
    assert clf.selector_.per_text == 0
    assert {len(e) for e in clf.examples_for(TOPIC_QUERIES)} == {1}
    assert clf.predict_proba(TOPIC_QUERIES).shape == (6, 3)


def test_grouped_without_a_vocabulary():
    X, y = ["a", "b", "?", "!"], ["x", "y", "x", "y"]  # no word of two letters
    sel = GroupedExamples(X, y, 3, groups=4)
    assert sel.matrix is None and sel.groups == 1
    assert sel.nearest(["c", "!!", "z z"]) == [sel.nearest(["c"])[0]] * 3
    picked = sel.nearest(["c"])[0]
    assert len(picked) == 3 and sorted({y[i] for i in picked}) == ["x", "y"]
    clf = grouped(max_samples=3).fit(X, y)
    assert clf.predict_proba(["c", "q"]).shape == (2, 2)


def test_grouped_with_more_groups_than_pool_texts_and_duplicates():
    X = ["the cat sleeps", "the cat sleeps", "stocks fell", "stocks fell", "stocks fell"]
    y = ["pos", "neg", "neg", "neg", "pos"]
    sel = GroupedExamples(X, y, 3, groups=50)
    assert sel.groups <= 2  # two distinct texts
    for picked in sel.nearest(TOPIC_QUERIES + ["the cat sleeps"]):
        assert len({X[i] for i in picked}) == len(picked)  # no text twice
    clf = grouped(max_samples=4).fit(X, y)
    for examples in clf.examples_for(TOPIC_QUERIES):
        assert len({text for text, _ in examples}) == len(examples) == 2


def test_grouped_with_one_class():
    sel = GroupedExamples(TOPIC_X, ["pos"] * 12, 3, groups=3)
    assert all(len(p) == 3 for p in sel.nearest(TOPIC_QUERIES))
    clf = grouped(max_samples=3).fit(TOPIC_X, ["pos"] * 12, classes=["neg", "pos"])
    assert clf.predict_proba(TOPIC_QUERIES).shape == (6, 2)


def test_grouped_default_groups_follow_the_pool_size():
    assert GroupedExamples.default_groups(6, 5) == 1
    sizes = [GroupedExamples.default_groups(p, 5) for p in (10, 50, 200, 10_000)]
    assert sizes == sorted(sizes) and sizes[-1] == GroupedExamples.MAX_GROUPS


def test_grouped_survives_save_and_load_and_pickle(tiny_folder, tmp_path):
    import pickle

    clf = FewShotClassifier(tiny_folder, max_samples=3, example_selection="grouped",
                            progress=False).fit(TOPIC_X, TOPIC_Y)
    clf.save(tmp_path / "grouped.json")
    again = FewShotClassifier.load(tmp_path / "grouped.json")
    assert again.example_selection == "grouped"
    assert again.examples_for(TOPIC_QUERIES) == clf.examples_for(TOPIC_QUERIES)
    np.testing.assert_allclose(again.predict_proba(TOPIC_QUERIES),
                               clf.predict_proba(TOPIC_QUERIES), atol=1e-9)
    unpickled = pickle.loads(pickle.dumps(clf))
    assert unpickled.examples_for(TOPIC_QUERIES) == clf.examples_for(TOPIC_QUERIES)


def test_a_saved_classifier_keeps_the_selection_it_stored(tiny_folder, tmp_path):
    """save() writes every parameter, so a classifier saved with 'similar'
    (the default before 'grouped') loads with 'similar' and its prompts."""
    import json
    import pickle

    clf = FewShotClassifier(tiny_folder, max_samples=3, example_selection="similar",
                            progress=False).fit(TOPIC_X, TOPIC_Y)
    path = tmp_path / "similar.json"
    clf.save(path)
    assert json.loads(path.read_text())["params"]["example_selection"] == "similar"
    again = FewShotClassifier.load(path)
    assert again.example_selection == "similar"
    assert again.examples_for(TOPIC_QUERIES) == clf.examples_for(TOPIC_QUERIES)
    assert pickle.loads(pickle.dumps(clf)).example_selection == "similar"
    # A file without the parameter gets today's default.
    payload = json.loads(path.read_text())
    del payload["params"]["example_selection"]
    path.write_text(json.dumps(payload))
    assert (FewShotClassifier.load(path).example_selection
            == FewShotClassifier().example_selection)


def test_magic_fewshot_selection_grouped(ip, tiny_folder):
    ip.user_ns["pool"] = list(zip(TOPIC_X, TOPIC_Y))
    result = ip.run_cell_magic(
        "fewshot", f"--examples pool --model {tiny_folder} --selection grouped -k 3",
        "\n".join(TOPIC_QUERIES))
    clf = FewShotClassifier(tiny_folder, use_caching=False, progress=False, max_samples=3,
                            random_state=0, example_selection="grouped").fit(TOPIC_X,
                                                                             TOPIC_Y)
    assert result.estimator.example_selection == "grouped"
    assert result.estimator.examples_ is None
    assert result.estimator.examples_for(TOPIC_QUERIES) == clf.examples_for(TOPIC_QUERIES)
    np.testing.assert_allclose(result.probas, clf.predict_proba(TOPIC_QUERIES), rtol=0,
                               atol=1e-9)
