"""The 4M encoder-decoder, its task heads, and the processor that turns raw data into its modality dict."""
