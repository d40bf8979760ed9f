"""Data: multimodal masking, pre-tokenisation, sequence serialisation and synthetic scenes."""
