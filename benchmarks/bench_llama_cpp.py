"""nbllm against llama.cpp (llama-cpp-python) on the same GGUF file, tweets and labels.

    HF_HUB_OFFLINE=1 python benchmarks/bench_llama_cpp.py [-n 128] [--prompt default|skorch]

llama.cpp is what most CPU users reach for.  It runs the embedded GGUF file as
it is (Q4_1 weights, its own CPU kernels); nbllm runs the de-quantized copy in
its default dtype.  Both score the very same token ids (nbllm's prompt ids and
label ids; the vocabulary is the GGUF file's), by the label's log-likelihood:

* llama.cpp, used the way its Python API allows: one sequence at a time, the
  KV cache of the tokens shared with the previous prompt kept (so the
  template's shared prefix is computed once), logits of the last position
  only, and for a label of k tokens its first k - 1 tokens evaluated after
  the prompt one by one; log-softmax in float64 on the host;
* nbllm: ``predict_proba`` with the result cache off.

It prints both times, the ratio, and how far the probabilities are apart
(llama.cpp's quantized weights are not nbllm's de-quantized ones, so they
are close, not equal).

llama-cpp-python 0.3.36, built from source here, crashes (SIGSEGV in
``ggml_backend_amx_mul_mat``) on any batch of more than one token when its
AMX weight repacking is on, as it is by default on a CPU with AMX.  The
benchmark therefore loads the model with ``use_extra_bufts=False`` (llama.cpp's
AVX-512 kernels, no repacking); ``--extra-bufts`` turns it back on.

llama.cpp runs in a child process that never imports torch: two OpenMP
runtimes in one process (torch's and llama.cpp's) wait on each other's
spinning threads, which made llama.cpp 50x slower in a first version.
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def llama_cpp_logprobs(llm, prompts, label_ids):
    """log P(label | prompt) for each prompt and label, with llama.cpp.

    Only the last position's logits are computed per call (``logits_all``
    off: the LM head over every prompt position would cost as much again as
    the model); a label's later tokens are evaluated one call each.
    """
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()

    def last_logits():
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,))

    def log_softmax(row):
        row = np.asarray(row, dtype=np.float64)
        top = row.max()
        return row - top - np.log(np.exp(row - top).sum())

    out = np.empty((len(prompts), len(label_ids)))
    for p, prompt in enumerate(prompts):
        have = llm.input_ids[:llm.n_tokens].tolist()
        common = 0
        while common < min(len(have), len(prompt) - 1) and have[common] == prompt[common]:
            common += 1
        llm.n_tokens = common  # eval() drops the KV cache beyond this point
        llm.eval(prompt[common:])
        first = log_softmax(last_logits())
        for j, label in enumerate(label_ids):
            total = first[label[0]]
            llm.n_tokens = len(prompt)
            for previous, token in zip(label[:-1], label[1:]):
                llm.eval([previous])
                total += log_softmax(last_logits())[token]
            out[p, j] = total
    return out


def load_llama(path, threads, extra_bufts):
    """A llama_cpp.Llama on ``path``, with llama.cpp's extra buffer types
    (weight repacking, AMX) on or off."""
    import llama_cpp
    import llama_cpp.llama as high_level

    real = llama_cpp.llama_model_default_params

    def params():
        p = real()
        p.use_extra_bufts = extra_bufts
        return p

    # Llama() builds its model parameters from this function and offers no
    # argument for the field.
    high_level.llama_cpp.llama_model_default_params = params
    try:
        return llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=threads,
                               logits_all=False, verbose=False)
    finally:
        high_level.llama_cpp.llama_model_default_params = real


def llama_cpp_child(job):
    """The child's side: load llama.cpp, score the job's token ids, time it."""
    import json

    with open(job) as fh:
        task = json.load(fh)
    llm = load_llama(task["path"], task["threads"], task["extra_bufts"])
    llama_cpp_logprobs(llm, task["prompts"][:2], task["labels"])  # warm-up
    start = time.perf_counter()
    logprobs = llama_cpp_logprobs(llm, task["prompts"], task["labels"])
    seconds = time.perf_counter() - start
    with open(job, "w") as fh:
        json.dump({"seconds": seconds, "logprobs": logprobs.tolist()}, fh)


def run_llama_cpp(path, prompts, labels, threads, extra_bufts):
    """(seconds, logprobs) of llama.cpp on the token ids, in a fresh process."""
    import json
    import subprocess
    import sys
    import tempfile

    import numpy as np

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"path": path, "prompts": prompts, "labels": labels, "threads": threads,
                   "extra_bufts": extra_bufts}, fh)
    try:
        subprocess.run([sys.executable, __file__, "--child", fh.name], check=True)
        with open(fh.name) as out:
            result = json.load(out)
    finally:
        os.unlink(fh.name)
    return result["seconds"], np.array(result["logprobs"])


def main():
    import sys

    if sys.argv[1:2] == ["--child"]:
        return llama_cpp_child(sys.argv[2])
    import numpy as np
    import torch
    from skorch.llm.prompts import DEFAULT_PROMPT_ZERO_SHOT

    from nbllm import ZeroShotClassifier
    from nbllm.engine.loading.embedded import embedded_model_path
    from nbllm.tools.tweets import load_tweets

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--prompt", choices=("default", "skorch"), default="default")
    parser.add_argument("--labels", default="negative,positive")
    parser.add_argument("--dtype", default="auto", help="nbllm's dtype")
    parser.add_argument("--extra-bufts", action="store_true",
                        help="keep llama.cpp's weight repacking (AMX); crashes here")
    args = parser.parse_args()

    labels = args.labels.split(",")
    texts = load_tweets(args.n, split="eval", random_state=11)["text"].tolist()
    prompt = None if args.prompt == "default" else DEFAULT_PROMPT_ZERO_SHOT
    clf = ZeroShotClassifier(prompt=prompt, use_chat_template=False if prompt else "auto",
                             dtype=args.dtype, use_caching=False,
                             progress=False).fit(None, labels)
    prompts = clf.prompt_token_ids(texts)
    label_ids = clf.label_ids_  # in the order of clf.classes_, as predict_proba
    clf.predict_proba(texts[:2])  # the self-check and the first pass's warm-up

    threads = torch.get_num_threads()
    t_theirs, theirs = run_llama_cpp(str(embedded_model_path("smollm2-135m")), prompts,
                                     label_ids, threads, args.extra_bufts)
    start = time.perf_counter()
    ours = clf.predict_proba(texts)
    t_ours = time.perf_counter() - start

    p_theirs = np.exp(theirs - theirs.max(1, keepdims=True))
    p_theirs /= p_theirs.sum(1, keepdims=True)
    diff = float(np.abs(p_theirs - ours).max())
    same = float((p_theirs.argmax(1) == ours.argmax(1)).mean())
    tokens = sum(len(p) for p in prompts)
    print(f"{len(texts)} tweets, {args.prompt} prompt, labels {labels}, {threads} threads; "
          f"nbllm {str(clf.loaded_.dtype).replace('torch.', '')}, "
          f"llama.cpp Q4_1 (the GGUF file); {tokens} prompt tokens")
    print(f"llama.cpp: {t_theirs:.2f} s   nbllm: {t_ours:.2f} s   "
          f"nbllm is {t_theirs / t_ours:.2f}x llama.cpp's speed")
    print(f"max |dp| {diff:.3f}, same prediction for {same:.3f} of the tweets")


if __name__ == "__main__":
    main()
