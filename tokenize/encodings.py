"""tiktoken encodings, obtained and verified offline (installed as `slimpajama.tokenize.encodings`).

`tokenize/` is a namespace package on purpose: a regular package named `tokenize` at the repository root would
shadow the standard library's `tokenize` module (see DESIGN.md).
"""

GPT2_ENCODING = "r50k_base"  # BTLM's tokenizer: GPT-2 BPE, vocab 50257
GPT2_EOS_ID = 50256
