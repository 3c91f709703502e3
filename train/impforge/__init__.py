"""ImpForge: automated red-teaming that forges implicit joint-modal samples (stage 1 retrieval, stage 2 RL rewriting).

Modules: ``config`` (settings, default.json), ``embedding`` (cached sentence embeddings), ``keywords``,
``retrieval`` (image-text alignment + ranking), ``benign_check`` (stage 1); ``text_judge``, ``rewards``,
``policy`` (LoRA + value head), ``ppo`` (stage 2); ``records`` (triples, resumable logs), ``templates``
(benign and incitement texts), ``pipeline`` and ``cli`` (``crossguard forge``).
"""
