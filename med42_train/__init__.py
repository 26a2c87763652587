"""med42_train: reproduce and extend the Med42-v2 clinical LLM recipe (data, SFT, DPO, eval)."""

__version__ = "0.1.0"
