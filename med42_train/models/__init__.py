"""Tokenizer, chat format and base models (the embedded demo model, or a hub/local Llama 3)."""
