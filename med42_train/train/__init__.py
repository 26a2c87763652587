"""Training stages (SFT, DPO) on FSDP2 through TRL, and the validated Hugging Face export they end with."""
