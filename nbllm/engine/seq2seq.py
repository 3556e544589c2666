"""Encoder-decoder models (T5, flan-t5, BART): labels scored as decoder sequences.

For a prompt ``p`` and a label with tokens ``t_1..t_k``::

    log P(label | p) = sum_i log softmax(decoder logits after start, t_1..t_{i-1})[t_i]

The encoder runs once per batch of prompts.  Each prompt's encoder output is
then shared by one decoder row per trie leaf (a label that is a prefix of
another is read off the longer one's row), right-padded: decoder attention is
causal, so padding after a row's tokens never changes its logits.  The
decoder starts from the model's ``decoder_start_token_id``, as ``generate``
does; the label is not followed by an end-of-sequence token (the same rule as
for decoder-only models).
"""

from .exact import RowBackend, leaf_logprobs, padded


def decoder_start_id(model):
    """The token the decoder starts from.

    Raises
    ------
    ValueError
        If neither the config nor the generation config names one.
    """
    for source in (model.config, getattr(model, "generation_config", None)):
        value = getattr(source, "decoder_start_token_id", None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"{type(model).__name__} has no decoder_start_token_id in its config, so "
        "nbllm cannot tell how its decoder starts; set model.config."
        "decoder_start_token_id"
    )


class Seq2SeqBackend(RowBackend):
    """Encoder once per prompt, labels as decoder rows, batched.

    Parameters
    ----------
    loaded : nbllm.models.LoadedModel
    pad_free : bool
        One prompt per pass and decoder rows of equal length only.
    """

    name = "encoder-decoder"

    def __init__(self, loaded, pad_free=False):
        super().__init__(loaded, pad_free)
        self.start = decoder_start_id(self.model)
        self.pad_id = getattr(self.model.config, "pad_token_id", None) or 0

    def _width(self, prompt, depth):
        return max(len(prompt), depth)

    def _score_group(self, prompts, trie):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        enc_ids, enc_mask = padded(prompts, self.device, self.pad_id)
        encoder_kwargs = {} if self.pad_free else {"attention_mask": enc_mask}
        hidden = self.model.get_encoder()(input_ids=enc_ids, **encoder_kwargs)[0]
        self.forward_passes += 1
        pairs, leaves = self._rows(len(prompts), trie)
        rows = [[self.start] + leaves[j][:-1] for _, j in pairs]
        depth = trie.max_depth
        tokens = torch.tensor([leaves[j] + [0] * (depth - len(leaves[j])) for _, j in pairs],
                              device=self.device)
        owner = torch.tensor([p for p, _ in pairs], device=self.device)

        def run(indices):
            dec_ids, dec_mask = padded([rows[i] for i in indices], self.device, self.pad_id)
            index = torch.tensor(indices, device=self.device)
            mine = owner[index]
            extra = {}
            if not self.pad_free:
                extra = {"attention_mask": enc_mask[mine], "decoder_attention_mask": dec_mask}
            logits = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden[mine]),
                decoder_input_ids=dec_ids, use_cache=False, **extra,
            ).logits
            self.forward_passes += 1
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            starts = torch.zeros(len(indices), dtype=torch.long, device=self.device)
            return leaf_logprobs(logprobs, starts, tokens[index])

        cums = self._in_passes(rows, run)
        return self._labels_from_rows(cums, len(prompts), trie)
