"""VQ models: the VQ-VAEs and diffusion-decoder VQ-VAEs (DiVAE) that turn image-like modalities into tokens."""
