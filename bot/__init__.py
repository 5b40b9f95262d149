"""imagine-bot core: platform-agnostic image generation, quotas and conversations."""
