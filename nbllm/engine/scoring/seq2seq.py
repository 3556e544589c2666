"""Encoder-decoder models (T5, flan-t5, BART): labels scored as decoder sequences.

For a prompt ``p`` and a label with tokens ``t_1..t_k``::

    log P(label | p) = sum_i log softmax(decoder logits after start, t_1..t_{i-1})[t_i]

The encoder runs once per batch of prompts.  Each prompt's encoder output is
then shared by one decoder row per label stem (labels that differ only in
their last token share a row), right-padded: decoder attention is causal, so
padding after a row's tokens never changes its logits.  The decoder starts
from the model's ``decoder_start_token_id``, as ``generate`` does.  The
estimators end each label with the end-of-sequence token for these models
(the decoder's answer is the whole label), as skorch does.

No prefix is shared between prompts here: the encoder is bidirectional, so
every token's encoding depends on the whole prompt, the text included, and
two prompts that start alike share no exact encoder state.
"""

import torch
from transformers.modeling_outputs import BaseModelOutput

from ...exceptions import ModelError
from .exact import RowBackend, padded
from .head import float32_label_logits


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
    raise ModelError(
        f"{type(model).__name__} has no decoder_start_token_id in its config, so "
        "nbllm cannot tell how its decoder starts; set model.config."
        "decoder_start_token_id"
    )


class Seq2SeqBackend(RowBackend):
    """Encoder once per prompt, labels as decoder rows, batched.

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel
    pad_free : bool
        The plain path: one prompt per pass, decoder rows of equal length
        only, no masks.
    """

    def __init__(self, loaded, pad_free=False):
        super().__init__(loaded, pad_free)
        self.start = decoder_start_id(self.model)
        pad = getattr(self.model.config, "pad_token_id", None)
        self.pad_id = pad if isinstance(pad, int) else 0

    def score(self, prompt_ids, label_ids, batch_size="auto", prefix_hint=None,
              on_batch=None, progress=None, min_saving=None):
        # Unpadded encoder inputs need one prompt per pass.
        return super().score(prompt_ids, label_ids, 1 if self.pad_free else batch_size,
                             prefix_hint, on_batch, progress, min_saving)

    def _width(self, prompt, depth):
        return max(len(prompt), depth)

    def _score_group(self, prompts, rows):
        enc_ids, enc_mask = padded(prompts, self.device, self.pad_id)
        encoder_kwargs = {} if self.pad_free else {"attention_mask": enc_mask}
        hidden = self.model.get_encoder()(input_ids=enc_ids, **encoder_kwargs)[0]
        self.forward_passes += 1
        pairs = [(p, s) for p in range(len(prompts)) for s in range(len(rows.stems))]
        dec_rows = [[self.start] + rows.stems[s] for _, s in pairs]
        owner = torch.tensor([p for p, _ in pairs], device=self.device)

        def run(indices):
            dec_ids, dec_mask = padded([dec_rows[i] for i in indices], self.device,
                                       self.pad_id)
            mine = owner[torch.tensor(indices, device=self.device)]
            extra = {}
            if not self.pad_free:
                extra = {"attention_mask": enc_mask[mine], "decoder_attention_mask": dec_mask}
            with float32_label_logits(self.model, rows.columns):
                logits = self.model(
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden[mine]),
                    decoder_input_ids=dec_ids, use_cache=False, **extra,
                ).logits
            self.forward_passes += 1
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            starts = torch.zeros(len(indices), dtype=torch.long, device=self.device)
            return rows.picked(logprobs, starts)

        return rows.totals(self._in_passes(dec_rows, run), len(prompts))
