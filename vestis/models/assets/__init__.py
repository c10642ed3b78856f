"""Data files shipped with vestis: CLIP's BPE vocabulary (MIT licence, (c) OpenAI 2021)."""
