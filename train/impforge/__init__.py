"""ImpForge: automated red-teaming that forges implicit joint-modal samples (stage 1 retrieval, stage 2 RL rewriting)."""
