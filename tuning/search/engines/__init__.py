"""Tuning engines: each one drives the same trial code over the same search space.

An engine is one module here exposing ``run(...)``; Optuna is the first.
"""
