"""Renderers: terminal, JSON, JUnit XML. They format; they never compute."""
