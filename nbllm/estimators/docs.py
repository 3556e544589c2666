"""The classifiers' parameter documentation, one block per parameter.

Each classifier's docstring lists the blocks of the parameters it takes (by
:mod:`nbllm.options`' table), so a parameter is described once and a
classifier never documents an option it does not have.  Each block's first
line (type, choices, default) comes from the table; the prose below it is
here.
"""

from .. import options

BLOCKS = {
    "model_name": """    ``"smollm2-135m"`` (the embedded model), a path to a ``.gguf`` file, a
    Hugging Face model id (from the local cache) or a model folder.  None
    with no ``model`` means the embedded model.""",
    "model": """    An already loaded causal or encoder-decoder LM and its tokenizer, instead
    of ``model_name``.""",
    "prompt": """    A format string with {placeholders}; None uses {default}.""",
    "probas_sum_to_1": """    Normalise each row over the labels.  With False, each value is the
    model's exact probability of the label; the rest of the mass went to
    other continuations.""",
    "device": "",
    "dtype": """    'auto' is bfloat16 on CUDA where supported and on CPUs with native
    bfloat16 arithmetic (AVX512-BF16 or AMX on x86, BF16 on ARM), else
    float32.  Use 'float32' for probabilities that match skorch's to 1e-5;
    bfloat16 moves them by up to a few hundredths.  Model objects passed as
    ``model=`` keep their own dtype.""",
    "error_low_prob": """    What to do when a row's total label probability is below
    ``threshold_low_prob``.  A total of exactly zero always raises.""",
    "threshold_low_prob": "",
    "use_caching": """    Reuse results for prompts seen before (same model, prompt and labels).""",
    "use_chat_template": """    Send the prompt as a user chat message (True) or raw.  'auto' sends it
    raw with the label after a space, whatever whitespace ends the template
    ("...Label:" and "...Label: " score alike; measured best over 22
    phrasings); False sends it raw exactly as typed, as skorch does.""",
    "batch_size": """    Prompts per forward pass; 'auto' fills a per-device token budget.""",
    "progress": """    Show a tqdm progress bar with counts ('auto': once a call has run for a
    second, so quick calls stay quiet).""",
    "calibration": """    Correct the prompt's bias towards some labels (see
    :mod:`nbllm.estimators.calibration`): divide by the label probabilities for
    content-free texts, or by the mean over the samples of one predict
    call (predictions then depend on the call's other samples), or (zero-shot
    only) learn a scale and per-label bias from labelled texts passed to
    ``fit(X, y)``.  Needs ``probas_sum_to_1=True``.""",
    "label_map": """    Maps a class (as in ``y``) to the word the model scores and the prompt
    shows, e.g. ``{'pos': 'positive'}``; classes not in the map are used
    as they are.  ``classes_`` and predictions keep the codes.""",
    "truncation": """    A text too long for the model's context is cut at its end ('right'),
    its start ('left') or in its middle ('middle', marked with an
    ellipsis), keeping the template and labels whole, with a warning that
    counts the cut texts; 'error' raises instead.""",
    "trust_remote_code": """    Let transformers run Python code shipped with a Hub model.  Only set
    it for models whose code you trust.""",
    "cache_dir": """    Keep results in ``<cache_dir>/results.sqlite`` too, so reruns in new
    processes are instant and interrupted jobs resume.  None uses
    ``$NBLLM_CACHE_DIR`` when it is set, else memory only.""",
    "max_samples": """    Number of examples in the prompt.""",
    "example_selection": """    'similar' picks, for each text, the nearest fit texts by TF-IDF
    cosine (taking the classes in turn); 'grouped' splits the fit texts
    into a few neighbourhoods (k-means on TF-IDF, a fixed seed), shows a
    text its neighbourhood's shared block of ``max_samples - 1`` examples
    and then its own nearest example; 'stratified' draws one fixed set
    by :meth:`get_examples` (skorch's rule: every label once where
    ``max_samples`` allows, the rest at random); 'random' draws one fixed
    set at random.
    Small models copy the labels of a fixed set of examples, so per-text
    examples are more accurate; with 'similar' each text gets its own
    prompt, so only the template's head is shared and scoring costs more;
    with 'grouped' the texts of a neighbourhood share their prompt up to
    their own example.""",
    "example_placement": """    'prompt' writes the examples into ``{examples}``; 'turns' (chat
    models only) asks the template's question about each example in an
    earlier user turn, answered by an assistant turn with its label.""",
    "random_state": """    Makes the draw of examples deterministic.""",
    "example_template": """    How one example is written into ``{examples}``: a format string with
    ``{text}`` and ``{label}`` (``"Text: {text}\\nLabel: {label}"``).
    Examples are joined so that one blank line follows each: with a
    newline between them when the template ends with a newline, two
    otherwise.  ``nbllm.SKORCH_EXAMPLE_TEMPLATE`` writes skorch's block.
    Not used with ``example_placement='turns'``.""",
    "threshold": """    A label is predicted when its probability is at least this.""",
}



def _header(name):
    """A block's first line, from the table (``model`` documents ``tokenizer`` too)."""
    if name == "model":
        return (f"model, tokenizer : objects or None, "
                f"default={options.MODEL.default!r}")
    return options.BY_NAME[name].doc_header()


def parameters(classifier, placeholders, default):
    """A numpydoc Parameters section for ``classifier`` (a class name).

    Its parameters are the table's (:func:`nbllm.options.taken_by`);
    ``placeholders`` and ``default`` fill the ``prompt`` block.
    """
    lines = ["", "    Parameters", "    ----------"]
    for option in options.taken_by(classifier):
        if option is options.TOKENIZER:  # in the model block
            continue
        block = BLOCKS[option.name]
        if option.name == "prompt":
            block = block.replace("{placeholders}", placeholders).replace("{default}", default)
        lines += ["    " + line for line in [_header(option.name)] + block.splitlines()]
    return "\n".join(lines) + "\n"
