"""Whether a GGUF model's tokenizer adds BOS and EOS: the file says, not transformers.

A GGUF file declares its tokenizer's convention (``tokenizer.ggml.add_bos_token``
and ``tokenizer.ggml.add_eos_token``, written by llama.cpp's converter from the
original tokenizer's config).  transformers builds a tokenizer from the file
and does not always honour it: 4.56 builds SmolLM2's as a Llama tokenizer that
prepends ``<|im_start|>`` (its BOS) to every prompt, which the original
tokenizer and transformers 5.x do not, and every probability shifts.  So the
declaration is read once at conversion, kept in the converted copy's marker,
and applied to the tokenizer at every load, whichever transformers built it.
"""

from ...exceptions import ModelError

# The tokenizer attribute and the GGUF metadata key of each declaration.
DECLARATIONS = {
    "add_bos_token": "tokenizer.ggml.add_bos_token",
    "add_eos_token": "tokenizer.ggml.add_eos_token",
}
# The probe text: any short text whose tokens are no special token.
_PROBE = "a"


def read_declared_special_tokens(reader):
    """The special-token declaration of a GGUF file.

    Parameters
    ----------
    reader : gguf.GGUFReader
        The file, opened.

    Returns
    -------
    dict
        ``{'add_bos_token': bool or None, 'add_eos_token': bool or None}``,
        None where the file does not say (the tokenizer is then left as
        transformers builds it).
    """
    fields = reader.fields
    declared = {}
    for attribute, key in DECLARATIONS.items():
        field = fields.get(key)
        declared[attribute] = None if field is None else bool(field.parts[field.data[0]][0])
    return declared


def added_special_tokens(tokenizer):
    """``(adds_bos, adds_eos)``: what ``tokenizer(text)`` puts around a text.

    Measured, not read from attributes, because tokenizer classes keep the
    rule in different places (an attribute, a post-processor, Python code).
    """
    plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(_PROBE)["input_ids"])
    start = next((i for i in range(len(full) - len(plain) + 1)
                  if full[i:i + len(plain)] == plain), 0)
    before, after = full[:start], full[start + len(plain):]
    return (before == [tokenizer.bos_token_id] and tokenizer.bos_token_id is not None,
            after == [tokenizer.eos_token_id] and tokenizer.eos_token_id is not None)


def follow_special_tokens(tokenizer, declared):
    """Make ``tokenizer(text)`` add BOS and EOS as the GGUF file declares.

    The tokenizer's own switches (``add_bos_token``, ``add_eos_token``) are
    tried first; a tokenizer without them gets a post-processor that adds
    exactly the declared tokens.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Changed in place.
    declared : dict
        From :func:`read_declared_special_tokens`.

    Raises
    ------
    ModelError
        If the tokenizer cannot be made to follow the declaration.
    """
    wanted = (declared.get("add_bos_token"), declared.get("add_eos_token"))
    if wanted == (None, None):
        return
    current = added_special_tokens(tokenizer)
    wanted = tuple(c if w is None else w for w, c in zip(wanted, current))
    if current == wanted:
        return
    for attribute, value in zip(DECLARATIONS, wanted):
        try:
            setattr(tokenizer, attribute, value)
        except (AttributeError, TypeError):
            pass  # a class without the switch: the post-processor below
    if added_special_tokens(tokenizer) != wanted:
        _set_post_processor(tokenizer, *wanted)
    if added_special_tokens(tokenizer) != wanted:
        raise ModelError(
            f"The {type(tokenizer).__name__} built from the GGUF file cannot be "
            f"made to add BOS={wanted[0]} and EOS={wanted[1]} as the file declares"
        )


def _set_post_processor(tokenizer, add_bos, add_eos):
    """Give a fast tokenizer a post-processor adding just the wanted BOS / EOS."""
    from tokenizers.processors import TemplateProcessing

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    ends = [(token, token_id) for token, token_id, wanted in (
        (tokenizer.bos_token, tokenizer.bos_token_id, add_bos),
        (tokenizer.eos_token, tokenizer.eos_token_id, add_eos),
    ) if wanted]
    single = " ".join([*(["$A"] if not add_bos else [tokenizer.bos_token, "$A"]),
                       *([tokenizer.eos_token] if add_eos else [])])
    backend.post_processor = TemplateProcessing(
        single=single, pair=single.replace("$A", "$A $B:1"), special_tokens=ends)
