"""The recipe: a complete, executable fine-tuning plan, with the reason for every decision."""
