"""Training side: offline backbones, image pool, ImpForge red-teaming, CrossGuard models and training."""
