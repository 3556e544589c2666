"""Texts in, label log-probabilities out: the engine's text-level boundary.

:class:`TextScorer` takes texts, a prompt renderer and the labels' token ids,
and streams log P(label | prompt) back as rows finish.  On the way it

* renders and tokenises each prompt, cutting a text that does not fit the
  model's context (as ``truncation`` says, keeping the template and labels
  whole, with one warning that counts the cut texts);
* looks each prompt up in the result cache: first by its rendered text
  (memory only, before any tokenizing, so a rerun costs a hash per text),
  then by its token ids (memory, then disk), and scores duplicate prompts
  once;
* hands the rest to :class:`~nbllm.engine.scoring.scorer.LabelScorer` in chunks, so a
  100k-row job never holds every prompt's token ids at once, and stores each
  finished batch in the cache (an interrupted job resumes from it);
* shows one progress bar for the whole call.

It also generates the model's free continuation of a prompt (previews).
"""

import numpy as np

from ... import options
from ...exceptions import PromptError, TextsError
from .result_cache import result_cache, result_key, text_result_key
from ...warnings_to_user import warn
from .. import status

# Prompts are tokenized and scored this many at a time.
CHUNK = 2048
# With progress='auto', a bar shows once a call has run this many seconds.
PROGRESS_DELAY = 1.0


class ProgressBar:
    """One tqdm bar with counts for a whole call, however many chunks it scores.

    With ``policy='auto'`` the bar is there for any call that scores, but
    tqdm shows it only once the call has run for :data:`PROGRESS_DELAY`
    seconds: quick calls stay quiet, slow ones say how far they are.
    """

    def __init__(self, policy, total):
        self.policy, self.total, self.done, self.bar = policy, total, 0, None

    def start(self):
        """Show the bar (once per call; a later chunk's start keeps it)."""
        if self.policy is False or self.bar is not None:
            return
        from tqdm.auto import tqdm

        delay = PROGRESS_DELAY if self.policy == "auto" else 0
        self.bar = tqdm(total=self.total, initial=self.done, desc="nbllm", unit="text",
                        delay=delay)

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _cutting():
    """The truncation choices that cut a text, as a message suggests them."""
    option = options.TRUNCATION
    return f"{option.name}=" + options.spoken([c for c in option.choices if c != "error"])


class TextScorer:
    """Scores texts under one loaded model with one way of prompting.

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel
    use_chat_template : bool
        Whether prompts are chat messages (then the tokenizer adds no special
        tokens of its own: the template has them).
    truncation : str
        One of ``options.TRUNCATION.choices`` (see the classifiers' docs).
    use_caching : bool
    disk_cache : nbllm.engine.scoring.result_cache.DiskCache or None
    batch_size : int or 'auto'
    min_saving : int or None
        The prompt tree's span threshold for this scorer's calls (None: the
        engine's default, :data:`~nbllm.engine.scoring.prompt_tree.MIN_SAVING`).

    Attributes
    ----------
    hits, misses : int
        Result-cache lookups of this scorer's calls (with ``use_caching``).
    """

    def __init__(self, loaded, *, use_chat_template, truncation=options.TRUNCATION.default,
                 use_caching=options.USE_CACHING.default, disk_cache=None,
                 batch_size=options.BATCH_SIZE.default, min_saving=None):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.special = not use_chat_template
        self.truncation = truncation
        self.use_caching = use_caching
        self.disk_cache = disk_cache
        self.batch_size = batch_size
        self.min_saving = min_saving
        self.hits = self.misses = 0

    # ------------------------------------------------------------ encoding
    def encode(self, texts, renderer, label_ids, positions=None):
        """Token ids of each prompt, cutting texts that do not fit the context.

        Parameters
        ----------
        texts : list of str
        renderer : nbllm.engine.scoring.prompts.PromptRenderer or PerTextRenderer
        label_ids : list of list of int
            The continuations to be scored (the longest must fit too).
        positions : sequence of int, optional
            The texts' positions in the caller's input, for error messages.

        Raises
        ------
        ValueError
            With ``truncation='error'``, naming how many texts do not fit and
            the first one's position; or when the template alone leaves no
            room for any text.
        """
        return self._encode(texts, renderer, label_ids, positions)[0]

    def _encode(self, texts, renderer, label_ids, positions=None, rendered=None):
        """:meth:`encode`, plus the set of rows whose text was cut."""
        renderers = renderer.for_texts(texts)
        if rendered is None:
            rendered = [r.render(t) for r, t in zip(renderers, texts)]
        ids = self.tokenizer(rendered, add_special_tokens=self.special)["input_ids"]
        context = self.loaded.context_length
        limit = context - max(len(i) for i in label_ids)
        too_long = [i for i, row in enumerate(ids) if len(row) > limit]
        if too_long and self.truncation == "error":
            first = too_long[0]
            raise TextsError(
                f"{len(too_long)} sample(s) do not fit the model's context of {context} "
                f"tokens; the first, at position "
                f"{first if positions is None else positions[first]}, needs "
                f"{len(ids[first])} prompt tokens plus "
                f"{context - limit} for the longest label.  Shorten the texts or "
                f"use {_cutting()}"
            )
        for i in too_long:
            ids[i] = self._truncate(texts[i], renderers[i], limit)
        if too_long:
            where = {"right": "at the end", "left": "at the start",
                     "middle": "in the middle"}[self.truncation]
            warn(
                f"{len(too_long)} sample(s) did not fit the model's context of "
                f"{context} tokens; their text was cut {where} so that the prompt "
                "template and the labels fit"
            )
        return [list(r) for r in ids], set(too_long)

    def _truncate(self, text, renderer, limit):
        encode = lambda s: self.tokenizer(s, add_special_tokens=self.special)["input_ids"]
        base = len(encode(renderer.render("")))
        if base >= limit:
            context = self.loaded.context_length
            raise PromptError(
                f"The prompt template takes {base} tokens and the longest label "
                f"{context - limit}, which leaves no room for the text in the model's "
                f"context of {context} tokens; shorten the prompt or use fewer examples"
            )
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(0, limit - base - 1)
        while True:
            ids = encode(renderer.render(self._cut(text_ids, keep)))
            if len(ids) <= limit or keep == 0:
                return ids
            # Re-tokenizing at the cut can merge differently; step back and retry.
            keep = max(0, keep - max(4, len(ids) - limit))

    def _cut(self, text_ids, keep):
        """The text of ``keep`` of its tokens, taken as ``truncation`` says."""
        decode = self.tokenizer.decode
        if self.truncation == "right":
            return decode(text_ids[:keep])
        if self.truncation == "left":
            return decode(text_ids[len(text_ids) - keep:]) if keep else ""
        # 'middle': keep both ends, marked where the text was cut.
        head = max(0, (keep - 1) // 2)
        tail = max(0, keep - 1 - head)
        return (decode(text_ids[:head]) + "\u2026"
                + (decode(text_ids[len(text_ids) - tail:]) if tail else ""))

    # ------------------------------------------------------------- scoring
    def score(self, texts, renderer, label_ids, on_rows=None,
              progress=options.PROGRESS.default, positions=None):
        """log P(label | prompt) for each text and label, using the result cache.

        Parameters
        ----------
        texts : list of str
        renderer : the prompt renderer (see :meth:`encode`)
        label_ids : list of list of int
        on_rows : callable or None
            Called as ``on_rows(rows, logprobs)`` whenever results for some
            texts are ready (cached rows first, then per batch).  It may raise
            to stop the run; finished batches stay in the cache.
        progress : {'auto', True, False}
        positions : sequence of int, optional
            Where each text sits in the caller's data (error messages).

        Returns
        -------
        numpy.ndarray of shape (len(texts), len(label_ids)), float64
        """
        from .scorer import LabelScorer

        out = np.empty((len(texts), len(label_ids)), dtype=np.float64)
        head = self.tokenizer(renderer.head(), add_special_tokens=self.special)["input_ids"]
        scorer = LabelScorer(self.loaded)
        bar = ProgressBar(progress, len(texts))
        where = range(len(texts)) if positions is None else positions
        try:
            for start in range(0, len(texts), CHUNK):

                def report(rows, values, start=start):
                    rows = start + np.asarray(rows, dtype=np.int64)
                    out[rows] = values
                    bar.update(len(rows))
                    if on_rows is not None:
                        on_rows(rows, values)

                self._score_chunk(texts[start:start + CHUNK], renderer, label_ids, head,
                                  scorer, report, bar, where[start:start + CHUNK])
        finally:
            bar.close()
        return out

    def _text_keys(self, texts, renderer, label_ids):
        """The rendered prompts and their text-level cache keys."""
        rendered = [r.render(t) for r, t in zip(renderer.for_texts(texts), texts)]
        # What turns a rendered prompt into token ids besides the model
        # (whose tokenizer the fingerprint covers): special tokens and the
        # truncation mode.
        how = f"{self.special}|{self.truncation}"
        fp = self.loaded.fingerprint
        return rendered, [text_result_key(fp, how, p, label_ids) for p in rendered]

    def _score_chunk(self, texts, renderer, label_ids, head, scorer, report, bar,
                     positions):
        """Score one chunk; ``report(rows, logprobs)`` receives every row.

        With caching, prompts whose rendered text was scored before are
        answered before tokenizing; the rest go through
        :meth:`_score_tokens`.
        """
        if not self.use_caching:
            return self._score_tokens(texts, renderer, label_ids, head, scorer, report,
                                      bar, positions)
        rendered, text_keys = self._text_keys(texts, renderer, label_ids)
        found = result_cache.peek_many(text_keys)
        done = [i for i, value in enumerate(found) if value is not None]
        if done:
            self.hits += len(done)
            report(done, np.stack([found[i] for i in done]))
        rest = [i for i, value in enumerate(found) if value is None]
        if not rest:
            return

        def report_rest(rows, values):
            report([rest[r] for r in rows], values)

        self._score_tokens([texts[i] for i in rest], renderer, label_ids, head, scorer,
                           report_rest, bar, [positions[i] for i in rest],
                           rendered=[rendered[i] for i in rest],
                           text_keys=[text_keys[i] for i in rest])

    def _score_tokens(self, texts, renderer, label_ids, head, scorer, report, bar,
                      positions, rendered=None, text_keys=None):
        """Tokenize, look up by token ids, score what is left, store it."""
        ids, cut = self._encode(texts, renderer, label_ids, positions, rendered)
        keys = [result_key(self.loaded.fingerprint, row, label_ids) for row in ids]
        if text_keys is not None:
            # A cut text is always tokenized again, so its warning repeats.
            text_of = {}
            for i, (key, text_key) in enumerate(zip(keys, text_keys)):
                if i not in cut:
                    text_of.setdefault(key, []).append(text_key)
        found = (result_cache.get_many(keys, disk=self.disk_cache) if self.use_caching
                 else [None] * len(keys))
        rows_of = {}  # key -> rows with that prompt; duplicates are scored once
        for i, (key, value) in enumerate(zip(keys, found)):
            if value is None:
                rows_of.setdefault(key, []).append(i)
        done = [i for i, value in enumerate(found) if value is not None]
        if self.use_caching:
            self.hits += len(done)
            self.misses += len(keys) - len(done)
        if done:
            if text_keys is not None:
                result_cache.put_text_many((t, keys[i]) for i in done
                                           for t in text_of.get(keys[i], []))
            report(done, np.stack([found[i] for i in done]))
        if not rows_of:
            return
        todo = list(rows_of)
        status.report(f"scoring {len(todo)} text(s)\u2026")

        def on_batch(indices, values):
            batch_keys = [todo[j] for j in indices]
            if self.use_caching:
                result_cache.put_many(batch_keys, values, disk=self.disk_cache)
                if text_keys is not None:
                    result_cache.put_text_many(
                        (t, k) for k in batch_keys for t in text_of.get(k, []))
            counts = [len(rows_of[k]) for k in batch_keys]
            report([r for k in batch_keys for r in rows_of[k]],
                   np.repeat(values, counts, axis=0))

        scorer.score(
            [ids[rows_of[k][0]] for k in todo], label_ids, self.batch_size, head,
            on_batch=on_batch, progress=lambda n_batches, n: bar.start(),
            min_saving=self.min_saving,
        )

    # ---------------------------------------------------------- generation
    def generate(self, text, renderer, label_ids, max_new_tokens=20):
        """The model's free, greedy continuation of the rendered prompt (cut,
        if needed, as for scoring ``label_ids``)."""
        import torch

        loaded = self.loaded
        ids = self.encode([text], renderer, label_ids)[0]
        input_ids = torch.tensor([ids], device=loaded.device)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = loaded.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        # An encoder-decoder model returns the decoder's sequence only.
        new = out[0] if loaded.model.config.is_encoder_decoder else out[0, len(ids):]
        return tok.decode(new, skip_special_tokens=True)
