"""Data files shipped with vestis: CLIP's BPE vocabulary (MIT licence, (c) OpenAI 2021) and XLM-R's
precompiled SentencePiece normaliser (``xlmr_precompiled_charsmap.bin.gz``: the ``precompiled_charsmap``
of intfloat/multilingual-e5-small's tokenizer.json, MIT licence; used by :mod:`vestis.models.multilingual_e5`)."""
