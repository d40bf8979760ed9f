"""The 4M models: the encoder-decoder and its processor (`fourm/`), the VQ models (`fourm_vq/`), shared layers."""
