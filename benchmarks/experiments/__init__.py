"""Micro-experiments that quantify a proposed engine change beside the current code path."""
