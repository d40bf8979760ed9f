"""The modality registry: one spec per modality, one family description per family."""
