"""Chained any-to-any generation: schedules, decoding schemes, recipes and the generate mixin."""
